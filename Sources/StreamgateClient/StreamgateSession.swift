import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import StreamgateCore

/// A connection to a gateway that survives disconnects: it reconnects with jittered exponential backoff,
/// resumes every subscription from the offset after the last record it delivered (so nothing is missed or
/// repeated), and sends again, with the same `msgId`, every publish that was not answered.
///
/// ```swift
/// let session = StreamgateSession(host: "gw.example.com", port: 443)
/// session.start()
/// _ = try await session.subscribe("doc:42", from: .earliest)
/// let ack = try await session.publish(channel: "doc:42", payload: .json(#"{"hello":"world"}"#))
/// for await event in session.events {
///     if case .record(let channel, let offset, let frame) = event { print(channel, offset, frame.text) }
/// }
/// ```
///
/// A publish gets a `msgId` when it has none, and keeps it across reconnects: if the gateway stored it but the
/// answer was lost, the retry is stored again under the same `msgId` (PROTOCOL §6: deduplicate by it).
/// Authentication refusals (close 4001 unauthorized, 4003 forbidden) end the session instead of looping.
/// Call ``close()`` when done.
public final class StreamgateSession: Sendable {
    /// What happened, in order.
    public enum Event: Sendable {
        /// A connection is open (`attempt` 1 for the first, more after reconnects) and every subscription
        /// has been resumed.
        case connected(attempt: Int)
        /// The connection ended.
        case disconnected(CloseInfo)
        /// The next connection attempt starts after `delay`.
        case reconnecting(attempt: Int, delay: Duration)
        /// A record of a subscribed channel, delivered once, in offset order.
        case record(channel: String, offset: Int64, frame: ServerFrame)
        /// Records `from..<to` of `channel` will not come (retention overtook the position, repartitioning).
        case gap(channel: String, SubscribeReply.Gap)
        /// The session ended: closed by ``close()``, or refused for good (authentication).
        case ended(CloseInfo?)
    }

    /// Delays between connection attempts: doubling from `minimum` to `maximum`, each a random time in
    /// its upper half.
    public struct Backoff: Sendable {
        public var minimum: Duration = .milliseconds(100)
        public var maximum: Duration = .seconds(5)
        public init() {}

        func delay(attempt: Int) -> Duration {
            let doubled = minimum * (1 << min(max(attempt - 1, 0), 20))
            let ceiling = min(doubled, maximum)
            let milliseconds = Double(ceiling.components.seconds) * 1000
                + Double(ceiling.components.attoseconds) / 1e15
            return .milliseconds(Int64(milliseconds * Double.random(in: 0.5...1.0)))
        }
    }

    private struct Subscription {
        var start: SubscribeStart
        /// The next offset to deliver, once known (from `subscribed` or the last record).
        var next: Int64?
        /// The latest `subscribed` answer (its partition is where `next` counts).
        var reply: SubscribeReply?
    }

    private struct State {
        var subscriptions: [String: Subscription] = [:]
        var connection: StreamgateConnection?
        var waiting: [CheckedContinuation<StreamgateConnection?, Never>] = []
        var closed = false
        var attempt = 0
    }

    /// Everything the session reports; it finishes once the session ends.
    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let host: String
    private let port: Int
    private let configuration: StreamgateConnection.Configuration
    private let backoff: Backoff
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox(State())
    private let runner = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public init(host: String, port: Int, configuration: StreamgateConnection.Configuration = .init(),
                backoff: Backoff = .init(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.configuration = configuration
        self.backoff = backoff
        self.group = group
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
    }

    /// Starts connecting (and reconnecting) in the background.
    public func start() {
        runner.withLockedValue { runner in
            guard runner == nil else { return }
            runner = Task { await self.run() }
        }
    }

    /// Subscribes `channel`; after a reconnect it resumes from the record after the last one delivered.
    /// Waits for a connection.
    @discardableResult
    public func subscribe(_ channel: String, from start: SubscribeStart = .latest) async throws -> SubscribeReply {
        while true {
            guard let connection = await currentConnection() else { throw Self.ended }
            // Registered only once this connection's resume is over (it is the current one), so that the resume
            // does not subscribe it too; registered before the request, so that its first records count.
            let current = state.withLockedValue { state -> Bool in
                guard state.connection === connection else { return false }
                state.subscriptions[channel] = Subscription(start: start)
                return true
            }
            guard current else { continue }
            do {
                let reply = try await connection.subscribe(channel: channel, from: start)
                accept(reply)
                return reply
            } catch let error as StreamgateClientError where error.code == .connectionClosed {
                // The next connection's resume subscribes it; its answer is this request's.
                guard await currentConnection() != nil else { throw Self.ended }
                if let reply = state.withLockedValue({ $0.subscriptions[channel]?.reply }) { return reply }
            } catch {
                state.withLockedValue { _ = $0.subscriptions.removeValue(forKey: channel) }
                throw error
            }
        }
    }

    /// Stops following `channel`.
    public func unsubscribe(_ channel: String) async throws {
        state.withLockedValue { _ = $0.subscriptions.removeValue(forKey: channel) }
        guard let connection = state.withLockedValue({ $0.connection }) else { return }
        try await connection.unsubscribe(channel: channel)
    }

    /// Publishes and waits for the ack; a publish the connection lost before its answer is sent again, with
    /// the same `msgId`, on the next connection. A `nack` with `persisted: "unknown"` is retried the same
    /// way; other refusals are thrown.
    public func publish(channel: String, payload: PublishPayload, msgId: String? = nil) async throws -> PublishAck {
        let id = msgId ?? UUID().uuidString.lowercased()
        while true {
            guard let connection = await currentConnection() else { throw Self.ended }
            do {
                return try await connection.publish(channel: channel, payload: payload, msgId: id)
            } catch let error as StreamgateClientError where error.code == .connectionClosed {
                continue
            } catch let error as StreamgateClientError where error.code == .nack && error.persisted == "unknown" {
                try await Task.sleep(for: backoff.minimum)
                continue
            }
        }
    }

    /// Ends the session: closes the connection and stops reconnecting.
    public func close() async {
        let (connection, waiting) = state.withLockedValue { state in
            state.closed = true
            defer { state.waiting.removeAll() }
            return (state.connection, state.waiting)
        }
        for waiter in waiting { waiter.resume(returning: nil) }
        if let connection { await connection.close() }
        await runner.withLockedValue { $0 }?.value
    }

    // MARK: - The connection loop

    private static let ended = StreamgateClientError(code: .connectionClosed, message: "the session has ended")

    private func currentConnection() async -> StreamgateConnection? {
        await withCheckedContinuation { continuation in
            let ready = state.withLockedValue { state -> (StreamgateConnection?, Bool) in
                if state.closed { return (nil, true) }
                if let connection = state.connection { return (connection, true) }
                state.waiting.append(continuation)
                return (nil, false)
            }
            if ready.1 { continuation.resume(returning: ready.0) }
        }
    }

    private func run() async {
        var failures = 0
        var lastClose: CloseInfo?
        while !state.withLockedValue({ $0.closed }) {
            if failures > 0 {
                let delay = backoff.delay(attempt: failures)
                continuation.yield(.reconnecting(attempt: failures, delay: delay))
                try? await Task.sleep(for: delay)
                if state.withLockedValue({ $0.closed }) { break }
            }
            let connection: StreamgateConnection
            do {
                connection = try await StreamgateConnection.connect(
                    host: host, port: port, configuration: configuration, group: group,
                    onFrame: { [weak self] frame in self?.received(frame) })
            } catch {
                failures += 1
                continue
            }
            guard await resume(on: connection) else {
                failures += 1
                _ = await connection.close()
                continue
            }
            failures = 0
            let (attempt, waiting) = state.withLockedValue { state in
                state.attempt += 1
                state.connection = connection
                defer { state.waiting.removeAll() }
                return (state.attempt, state.waiting)
            }
            continuation.yield(.connected(attempt: attempt))
            for waiter in waiting { waiter.resume(returning: connection) }
            let info = await connection.closeInfo()
            lastClose = info
            state.withLockedValue { $0.connection = nil }
            continuation.yield(.disconnected(info))
            if info.serverCode == CloseCode.unauthorized || info.serverCode == CloseCode.forbidden { break }
            failures = 1
        }
        let waiting = state.withLockedValue { state in
            state.closed = true
            defer { state.waiting.removeAll() }
            return state.waiting
        }
        for waiter in waiting { waiter.resume(returning: nil) }
        continuation.yield(.ended(lastClose))
        continuation.finish()
    }

    /// Subscribes again every channel, from the record after the last one delivered.
    private func resume(on connection: StreamgateConnection) async -> Bool {
        let subscriptions = state.withLockedValue { $0.subscriptions }
        for (channel, subscription) in subscriptions {
            let start: SubscribeStart = subscription.next.map { .offset($0, partition: subscription.reply?.partition) }
                ?? subscription.start
            do {
                accept(try await connection.subscribe(channel: channel, from: start))
            } catch {
                return false
            }
        }
        return true
    }

    private func accept(_ reply: SubscribeReply) {
        state.withLockedValue { state in
            guard var subscription = state.subscriptions[reply.channel] else { return }
            // A later `next` (records delivered before this answer was read) stands; a move to another
            // partition starts over.
            let moved = subscription.reply.map { $0.partition != reply.partition } ?? false
            if moved || subscription.next.map({ reply.offset > $0 }) ?? true {
                subscription.next = reply.offset
            }
            subscription.reply = reply
            state.subscriptions[reply.channel] = subscription
        }
        if let gap = reply.gap { continuation.yield(.gap(channel: reply.channel, gap)) }
    }

    /// On the connection's event loop, in order: records advance their subscription, once each.
    private func received(_ frame: ServerFrame) {
        guard frame.kind == .message || frame.kind == .gap, let fields = try? frame.fields(),
              let channel = fields.channel
        else { return }
        if frame.kind == .gap {
            if let gap = fields.gap { continuation.yield(.gap(channel: channel, gap)) }
            return
        }
        guard let offset = fields.offset else { return }
        let fresh = state.withLockedValue { state -> Bool in
            guard var subscription = state.subscriptions[channel] else { return false }
            if let next = subscription.next, offset < next { return false }  // already delivered
            subscription.next = offset + 1
            state.subscriptions[channel] = subscription
            return true
        }
        if fresh { continuation.yield(.record(channel: channel, offset: offset, frame: frame)) }
    }
}
