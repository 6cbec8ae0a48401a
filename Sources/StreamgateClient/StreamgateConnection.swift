import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A client connection to a Streamgate gateway speaking `streamgate.v1` over WebSocket.
///
/// Requests can be made from any thread or task. Frames are written without a flush and flushed once per
/// event-loop tick (or once per read batch), so many requests leave in one system call. Many connections can
/// share one `EventLoopGroup`.
///
/// Frames that answer a request made with ``publish(channel:payload:msgId:)``, ``subscribe(channel:from:)`` or
/// ``unsubscribe(channel:)`` complete that request; every other frame (messages, gaps, replies to
/// ``sendRaw(_:)`` …) goes to the frame handler given to ``connect(host:port:path:configuration:group:onFrame:)``,
/// or, without one, to ``frames``.
///
/// ```swift
/// let connection = try await StreamgateConnection.connect(host: "127.0.0.1", port: 8080)
/// let ack = try await connection.publish(channel: "doc:42", payload: .json(#"{"hello":"world"}"#))
/// _ = try await connection.subscribe(channel: "doc:42", from: .offset(ack.offset!))
/// for await frame in connection.frames where frame.kind == .message { print(frame.text) }
/// ```
///
/// - Important: call ``close(code:reason:)`` when done; a connection is not closed when the last reference
///   goes away.
public final class StreamgateConnection: Sendable {
    public typealias FrameHandler = @Sendable (ServerFrame) -> Void
    typealias Handler = StreamgateConnectionHandler

    /// The event loop this connection's I/O and callbacks run on.
    public let eventLoop: any EventLoop
    /// The subprotocol the server selected, `nil` when it selected none.
    public let subprotocol: String?
    /// Frames that answer no request of this library, when no frame handler was given; it finishes when the
    /// connection closes. Buffering is unbounded: a consumer must keep up.
    public let frames: AsyncStream<ServerFrame>

    private let channel: any Channel
    private let handler: NIOLoopBound<Handler>
    private let inbox: NIOLockedValueBox<[@Sendable (Handler) -> Void]>
    private let closed: EventLoopFuture<CloseInfo>

    private init(
        channel: any Channel, handler: NIOLoopBound<Handler>, subprotocol: String?,
        frames: AsyncStream<ServerFrame>, closed: EventLoopFuture<CloseInfo>
    ) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.handler = handler
        self.subprotocol = subprotocol
        self.frames = frames
        self.closed = closed
        self.inbox = NIOLockedValueBox([])
    }

    /// Opens a connection: TCP, then the WebSocket upgrade offering `streamgate.v1`.
    ///
    /// - Parameters:
    ///   - host: the gateway's address.
    ///   - port: the gateway's port.
    ///   - path: `/v1/ws` (multiplexed) or `/v1/ws/{channel}?from=…` (bound to one channel).
    ///   - configuration: window, limits and headers.
    ///   - group: the event loops to run on; load generators share one group among many connections.
    ///   - onFrame: called on the connection's event loop for each frame that answers no request of this
    ///     library, in order. It must not block. When `nil`, such frames go to ``frames``.
    /// - Throws: ``StreamgateClientError`` with code `connectFailed` or `upgradeRefused`.
    public static func connect(
        host: String, port: Int, path: String = "/v1/ws", configuration: Configuration = Configuration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, onFrame: FrameHandler? = nil
    ) async throws -> StreamgateConnection {
        let eventLoop = group.next()
        let upgraded = eventLoop.makePromise(of: String?.self)
        let closedPromise = eventLoop.makePromise(of: CloseInfo.self)
        let (frames, continuation) = AsyncStream.makeStream(of: ServerFrame.self, bufferingPolicy: .unbounded)
        let observer: Handler.Observer
        if let onFrame {
            observer = .handler(onFrame)
            continuation.finish()
        } else {
            observer = .stream(continuation)
        }
        let handlerBox = NIOLockedValueBox<NIOLoopBound<Handler>?>(nil)
        let head = upgradeRequestHead(host: host, port: port, path: path, configuration: configuration)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(configuration.connectTimeoutSeconds))
            .channelOption(.socketOption(.tcp_nodelay), value: configuration.noDelay ? 1 : 0)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let request = UpgradeRequestHandler(head: head, upgraded: upgraded)
                    let boundRequest = NIOLoopBound(request, eventLoop: channel.eventLoop)
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: configuration.maxFrameBytes, automaticErrorHandling: true
                    ) { channel, response in
                        channel.eventLoop.makeCompletedFuture {
                            let selected = response.headers.first(name: "Sec-WebSocket-Protocol")
                            if let selected, !configuration.subprotocols.contains(selected) {
                                throw StreamgateClientError(
                                    code: .protocolViolation,
                                    message: "the server selected subprotocol \(selected), not offered")
                            }
                            let handler = Handler(
                                observer: observer, publishWindow: configuration.publishWindow,
                                closedPromise: closedPromise)
                            try channel.pipeline.syncOperations.addHandlers([
                                NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16,
                                    maxAccumulatedFrameSize: configuration.maxFrameBytes),
                                handler,
                            ])
                            handlerBox.withLockedValue { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                            upgraded.succeed(selected)
                        }.flatMapErrorThrowing { error in
                            upgraded.fail(error)
                            throw error
                        }
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(boundRequest.value, promise: nil)
                            }
                        ))
                    try channel.pipeline.syncOperations.addHandler(request)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            upgraded.fail(error)
            closedPromise.succeed(CloseInfo(serverCode: nil, reason: "", error: "\(error)"))
            continuation.finish()
            throw StreamgateClientError(code: .connectFailed, message: "cannot connect to \(host):\(port): \(error)")
        }
        let subprotocol: String?
        do {
            subprotocol = try await upgraded.futureResult.get()
        } catch {
            channel.close(promise: nil)
            closedPromise.succeed(CloseInfo(serverCode: nil, reason: "", error: "\(error)"))
            continuation.finish()
            throw error
        }
        let handler = handlerBox.withLockedValue { $0 }!
        return StreamgateConnection(
            channel: channel, handler: handler, subprotocol: subprotocol, frames: frames,
            closed: closedPromise.futureResult)
    }

    private static func upgradeRequestHead(host: String, port: Int, path: String, configuration: Configuration)
        -> HTTPRequestHead
    {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        if !configuration.subprotocols.isEmpty {
            headers.add(name: "Sec-WebSocket-Protocol", value: configuration.subprotocols.joined(separator: ", "))
        }
        for header in configuration.headers { headers.add(name: header.name, value: header.value) }
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
    }

    // MARK: - Requests

    /// Publishes a payload and waits for the gateway's answer.
    ///
    /// At most ``Configuration/publishWindow`` publishes are on the wire; later ones wait in the client.
    /// Cancelling the task does not withdraw a publish that was sent.
    ///
    /// - Parameters:
    ///   - channel: the channel; `nil` on a connection bound to one channel.
    ///   - payload: JSON text or binary bytes.
    ///   - msgId: an idempotency key stored with the record (`sg-msg-id`).
    /// - Returns: the record's partition and offset.
    /// - Throws: ``StreamgateClientError`` — `nack` (see `persisted`), `serverError`, or `connectionClosed`.
    public func publish(channel: String?, payload: PublishPayload, msgId: String? = nil) async throws -> PublishAck {
        try await withCheckedThrowingContinuation { continuation in
            publish(channel: channel, payload: payload, msgId: msgId) { continuation.resume(with: $0) }
        }
    }

    /// Publishes a payload and calls `completion` on the connection's event loop with the gateway's answer.
    /// Windowed like ``publish(channel:payload:msgId:)``; calling it from the event loop (e.g. from a
    /// completion) sends without a thread hop.
    public func publish(
        channel: String?, payload: PublishPayload, msgId: String? = nil,
        completion: @escaping @Sendable (Result<PublishAck, StreamgateClientError>) -> Void
    ) {
        perform { $0.publish(channel: channel, payload: payload, msgId: msgId, completion: completion) }
    }

    /// Subscribes to a channel and waits for `subscribed`; messages then arrive as frames of kind `.message`.
    ///
    /// - Throws: ``StreamgateClientError`` — `serverError` (such as `already_subscribed` or `unknown_namespace`)
    ///   or `connectionClosed`.
    public func subscribe(channel: String, from: SubscribeStart = .latest) async throws -> SubscribeReply {
        try await withCheckedThrowingContinuation { continuation in
            perform { $0.subscribe(channel: channel, from: from) { continuation.resume(with: $0) } }
        }
    }

    /// Unsubscribes from a channel and waits for `unsubscribed`.
    public func unsubscribe(channel: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            perform { $0.unsubscribe(channel: channel) { continuation.resume(with: $0.mapError { $0 }) } }
        }
    }

    /// Sends a text frame as given. Replies to it go to the frame handler or ``frames``.
    public func send(text: String) {
        perform { $0.sendRaw(text.utf8) }
    }

    /// Sends bytes as one text frame, as given (they must be UTF-8 JSON for the gateway to accept them).
    public func sendRaw(_ bytes: [UInt8]) {
        perform { $0.sendRaw(bytes) }
    }

    /// Sends a close frame and waits until the connection has closed (the server answers, or 3 s pass).
    @discardableResult
    public func close(code: UInt16 = 1000, reason: String = "") async -> CloseInfo {
        perform { $0.close(code: code, reason: reason) }
        return await closeInfo()
    }

    /// Waits until the connection has closed, for whatever reason, and says how.
    public func closeInfo() async -> CloseInfo {
        (try? await closed.get()) ?? CloseInfo(serverCode: nil, reason: "", error: "unknown")
    }

    /// Calls `callback` once the connection has closed, for whatever reason (on the event loop).
    public func onClose(_ callback: @escaping @Sendable (CloseInfo) -> Void) {
        closed.whenSuccess(callback)
    }

    /// Publishes sent or waiting, not yet answered. On the event loop only.
    public func outstandingPublishes() -> Int {
        handler.value.outstandingPublishes
    }

    /// Runs `operation` on the event loop: at once when already there, else queued with others and run in one
    /// event-loop task, whose writes are flushed together.
    private func perform(_ operation: @escaping @Sendable (Handler) -> Void) {
        if eventLoop.inEventLoop {
            operation(handler.value)
            return
        }
        let first = inbox.withLockedValue { inbox in
            inbox.append(operation)
            return inbox.count == 1
        }
        guard first else { return }
        let handler = self.handler
        let inbox = self.inbox
        eventLoop.execute {
            let operations = inbox.withLockedValue { inbox in
                defer { inbox.removeAll(keepingCapacity: true) }
                return inbox
            }
            for operation in operations { operation(handler.value) }
        }
    }
}
