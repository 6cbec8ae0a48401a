import NIOCore
import NIOWebSocket

/// The event-loop half of a ``StreamgateConnection``: writes request frames (flushing once per batch),
/// matches replies to requests by id, keeps the publish window, answers pings, and hands every other frame
/// to the observer.
///
/// Everything here runs on the channel's event loop; the connection reaches it through `NIOLoopBound`.
final class StreamgateConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    typealias PublishCompletion = @Sendable (Result<PublishAck, StreamgateClientError>) -> Void
    typealias SubscribeCompletion = @Sendable (Result<SubscribeReply, StreamgateClientError>) -> Void
    typealias UnsubscribeCompletion = @Sendable (Result<Void, StreamgateClientError>) -> Void

    /// Where frames that answer no request of this library go.
    enum Observer {
        case handler(@Sendable (ServerFrame) -> Void)
        case stream(AsyncStream<ServerFrame>.Continuation)
    }

    private enum Pending {
        case publish(PublishCompletion)
        case subscribe(SubscribeCompletion)
        case unsubscribe(UnsubscribeCompletion)
    }

    private struct WaitingPublish {
        var id: Int64
        var frame: ByteBuffer
        var completion: PublishCompletion
    }

    private let observer: Observer
    private let publishWindow: Int
    private let closedPromise: EventLoopPromise<CloseInfo>
    private var context: ChannelHandlerContext?
    private var pending: [Int64: Pending] = [:]
    private var waiting = CircularBuffer<WaitingPublish>()
    private var publishesInFlight = 0
    private var nextID: Int64 = 1
    private var unflushed = false
    private var flushScheduled = false
    private var reading = false
    private var maskingKeys = MaskingKeySource()
    private var closeSent = false
    private var serverClose: (code: UInt16?, reason: String)?
    private var failure: (any Error)?

    init(observer: Observer, publishWindow: Int, closedPromise: EventLoopPromise<CloseInfo>) {
        self.observer = observer
        self.publishWindow = max(1, publishWindow)
        self.closedPromise = closedPromise
    }

    /// Publishes not yet answered, including those waiting for room in the window.
    var outstandingPublishes: Int { publishesInFlight + waiting.count }

    // MARK: - Requests (on the event loop)

    func publish(channel: String?, payload: PublishPayload, msgId: String?, completion: @escaping PublishCompletion) {
        guard let context, !closeSent, serverClose == nil else { return completion(.failure(closedError())) }
        let id = takeID()
        let frame = ClientFrameEncoder.publish(
            id: id, channel: channel, payload: payload, msgId: msgId,
            allocator: context.channel.allocator)
        if publishesInFlight < publishWindow, waiting.isEmpty {
            sendPublish(WaitingPublish(id: id, frame: frame, completion: completion))
        } else {
            waiting.append(WaitingPublish(id: id, frame: frame, completion: completion))
        }
    }

    func subscribe(channel: String, from: SubscribeStart, completion: @escaping SubscribeCompletion) {
        guard let context, !closeSent, serverClose == nil else { return completion(.failure(closedError())) }
        let id = takeID()
        pending[id] = .subscribe(completion)
        write(ClientFrameEncoder.subscribe(id: id, channel: channel, from: from, allocator: context.channel.allocator))
    }

    func unsubscribe(channel: String, completion: @escaping UnsubscribeCompletion) {
        guard let context, !closeSent, serverClose == nil else { return completion(.failure(closedError())) }
        let id = takeID()
        pending[id] = .unsubscribe(completion)
        write(ClientFrameEncoder.unsubscribe(id: id, channel: channel, allocator: context.channel.allocator))
    }

    /// Sends frame text as given (the caller chooses ids; its replies go to the observer).
    func sendRaw(_ bytes: some Sequence<UInt8>) {
        guard let context, !closeSent else { return }
        write(ClientFrameEncoder.raw(bytes, allocator: context.channel.allocator))
    }

    /// Sends a close frame; the server's answer (or a time-out) closes the socket.
    func close(code: UInt16, reason: String) {
        guard let context, !closeSent else { return }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeString(reason)
        writeFrame(
            WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(using: &maskingKeys), data: data))
        flushNow()
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(3)) { channel.close(promise: nil) }
        if serverClose != nil { context.close(promise: nil) }
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = error }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        reading = true
        switch frame.opcode {
        case .text:
            received(ServerFrame(bytes: frame.unmaskedData))
        case .ping:
            writeFrame(
                WebSocketFrame(
                    fin: true, opcode: .pong, maskKey: .random(using: &maskingKeys), data: frame.unmaskedData))
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            let reason = data.readString(length: data.readableBytes) ?? ""
            serverClose = (code, reason)
            if closeSent {
                context.close(promise: nil)
            } else {
                closeSent = true
                var echo = context.channel.allocator.buffer(capacity: 2)
                if let code { echo.writeInteger(code) }
                let masked = WebSocketFrame(
                    fin: true, opcode: .connectionClose, maskKey: .random(using: &maskingKeys), data: echo)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(masked)).whenComplete { _ in channel.close(promise: nil) }
            }
        case .binary:
            failure =
                failure ?? StreamgateClientError(code: .protocolViolation, message: "binary frame from the server")
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if unflushed { flushNow() }
        context.fireChannelReadComplete()
    }

    // MARK: - Replies

    private func received(_ frame: ServerFrame) {
        switch frame.kind {
        case .ack, .nack, .error, .subscribed, .unsubscribed:
            guard !pending.isEmpty, let fields = try? frame.fields(), case .int(let id)? = fields.id,
                let request = pending.removeValue(forKey: id)
            else { return deliver(frame) }
            answer(request, id: id, kind: frame.kind, fields: fields)
        default:
            deliver(frame)
        }
    }

    private func answer(_ request: Pending, id: Int64, kind: ServerFrame.Kind, fields: ServerFrame.Fields) {
        let failure: StreamgateClientError? =
            switch kind {
            case .nack:
                StreamgateClientError(
                    code: .nack, message: fields.message ?? "nack", serverCode: fields.code,
                    persisted: fields.persisted)
            case .error:
                StreamgateClientError(code: .serverError, message: fields.message ?? "error", serverCode: fields.code)
            default: nil
            }
        switch request {
        case .publish(let completion):
            publishesInFlight -= 1
            if let failure {
                completion(.failure(failure))
            } else if kind == .ack, let partition = fields.partition {
                completion(.success(PublishAck(id: id, partition: partition, offset: fields.offset)))
            } else {
                completion(
                    .failure(StreamgateClientError(code: .protocolViolation, message: "unexpected answer to a publish"))
                )
            }
            sendWaiting()
        case .subscribe(let completion):
            if let failure {
                completion(.failure(failure))
            } else if kind == .subscribed, let channel = fields.channel, let partition = fields.partition,
                let offset = fields.offset, let head = fields.head
            {
                completion(
                    .success(
                        SubscribeReply(
                            channel: channel, partition: partition, offset: offset, head: head,
                            recovered: fields.recovered ?? true, gap: fields.gap)))
            } else {
                completion(
                    .failure(
                        StreamgateClientError(code: .protocolViolation, message: "unexpected answer to a subscribe")))
            }
        case .unsubscribe(let completion):
            if let failure {
                completion(.failure(failure))
            } else if kind == .unsubscribed {
                completion(.success(()))
            } else {
                completion(
                    .failure(
                        StreamgateClientError(code: .protocolViolation, message: "unexpected answer to an unsubscribe"))
                )
            }
        }
    }

    private func deliver(_ frame: ServerFrame) {
        switch observer {
        case .handler(let handler): handler(frame)
        case .stream(let continuation): continuation.yield(frame)
        }
    }

    // MARK: - Writing

    private func takeID() -> Int64 {
        defer { nextID += 1 }
        return nextID
    }

    private func sendPublish(_ publish: WaitingPublish) {
        publishesInFlight += 1
        pending[publish.id] = .publish(publish.completion)
        write(publish.frame)
    }

    private func sendWaiting() {
        while publishesInFlight < publishWindow, let next = waiting.popFirst() {
            sendPublish(next)
        }
    }

    private func write(_ text: ByteBuffer) {
        writeFrame(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(using: &maskingKeys), data: text))
    }

    /// Writes without flushing; one flush follows at the end of the current read batch or event-loop tick.
    private func writeFrame(_ frame: WebSocketFrame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        unflushed = true
        guard !reading, !flushScheduled else { return }
        flushScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            handler.value.flushScheduled = false
            if handler.value.unflushed { handler.value.flushNow() }
        }
    }

    private func flushNow() {
        unflushed = false
        context?.flush()
    }

    // MARK: - Ending

    private func closedError() -> StreamgateClientError {
        StreamgateClientError(
            code: .connectionClosed, message: serverClose?.reason ?? failure.map { "\($0)" } ?? "connection closed",
            closeCode: serverClose?.code)
    }

    private func finish() {
        guard context != nil else { return }
        let error = closedError()
        let requests = pending
        let queued = waiting
        pending.removeAll()
        waiting.removeAll()
        publishesInFlight = 0
        closeSent = true
        for request in requests.values {
            switch request {
            case .publish(let completion): completion(.failure(error))
            case .subscribe(let completion): completion(.failure(error))
            case .unsubscribe(let completion): completion(.failure(error))
            }
        }
        for publish in queued { publish.completion(.failure(error)) }
        if case .stream(let continuation) = observer { continuation.finish() }
        closedPromise.succeed(
            CloseInfo(
                serverCode: serverClose?.code, reason: serverClose?.reason ?? "",
                error: failure.map { "\($0)" }))
        context = nil
    }
}

@available(*, unavailable)
extension StreamgateConnectionHandler: Sendable {}
