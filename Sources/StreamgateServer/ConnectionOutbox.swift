import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// Frames waiting to be written to one WebSocket connection, from any thread, with flow control.
///
/// Producers (Kafka reader threads, delivery reports, the connection itself) append; the first append
/// after a flush schedules one flush on the connection's event loop, which writes what the socket takes
/// (while the channel is writable) with a single `flush()` — many frames per system call under load.
///
/// Records are *offered*: once `pauseBytes` are queued, an offer is refused and the delivery hub pauses
/// that subscription where it stopped; when the queue falls below half of that, the paused subscriptions
/// are handed to `resume` and catch up from Kafka. Memory per connection stays bounded and a client that
/// reads slowly is paced, never dropped. A client that stops reading — queued output and no write
/// progress for `stallTimeout` — is reported once through `onStall` (the session closes it with 4008).
final class ConnectionOutbox: Sendable {
    private struct State {
        init(now: NIODeadline) { self.lastProgress = now }
        var frames = CircularBuffer<ByteBuffer>()
        var queuedBytes = 0
        var flushScheduled = false
        var closed = false
        var paused: [Subscription] = []
        var lastProgress: NIODeadline
        var stallCheckScheduled = false
        var flushing = false
        var flushAgain = false
        /// Control frames waiting for the socket: one of each at most, a newer one replaces an older one, so
        /// a client that pings and never reads cannot grow the queue (RFC 6455 §5.5.3 lets a pong answer
        /// only the latest ping).
        var pendingPong: ByteBuffer?
        var pendingPing: ByteBuffer?
        /// Set by ``finish(with:then:)``: nothing more is queued, and this runs once the queue is written.
        var sealed = false
        var whenWritten: (@Sendable () -> Void)?
    }

    private let channel: any Channel
    private let pauseBytes: Int
    private let stallTimeout: TimeAmount
    private let resume: @Sendable ([Subscription]) -> Void
    private let onStall: @Sendable () -> Void
    private let framesSent: CoreMetrics.Counter?
    private let state: NIOLockedValueBox<State>

    /// - Parameters:
    ///   - pauseBytes: queued bytes at which record offers are refused.
    ///   - stallTimeout: how long queued output may see no write progress before `onStall`.
    ///   - resume: called on the event loop with the subscriptions to resume.
    ///   - onStall: called once on the event loop when the client stopped reading.
    init(channel: any Channel, pauseBytes: Int, stallTimeout: TimeAmount,
         resume: @escaping @Sendable ([Subscription]) -> Void, onStall: @escaping @Sendable () -> Void,
         framesSent: CoreMetrics.Counter? = nil) {
        self.framesSent = framesSent
        self.channel = channel
        self.pauseBytes = pauseBytes
        self.stallTimeout = stallTimeout
        self.resume = resume
        self.onStall = onStall
        self.state = NIOLockedValueBox(State(now: channel.eventLoop.now))
    }

    var eventLoop: any EventLoop { channel.eventLoop }

    /// Fires `event` into the connection's pipeline, on its event loop.
    func notify(_ event: any Sendable) {
        let channel = self.channel
        channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(event) }
    }

    /// Bytes queued and not yet handed to the channel.
    var queuedBytes: Int { state.withLockedValue { $0.queuedBytes } }

    /// Queues a control frame (a reply, a `subscribed`, a gap): always taken while open. Returns `false`
    /// once the outbox is closed.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        let schedule: Bool? = state.withLockedValue { state in
            guard !state.closed, !state.sealed else { return nil }
            return Self.append(frame, to: &state)
        }
        guard let schedule else { return false }
        if schedule { channel.eventLoop.execute { self.flush() } }
        return true
    }

    /// Queues a frame built from bytes.
    @discardableResult
    func enqueue(bytes: [UInt8]) -> Bool {
        enqueue(channel.allocator.buffer(bytes: bytes))
    }

    /// Queues a pong answering the client's latest ping (replacing one not yet written).
    func pong(_ payload: ByteBuffer) {
        setControl { $0.pendingPong = payload }
    }

    /// Queues a ping to the client (replacing one not yet written).
    func ping(_ payload: ByteBuffer) {
        setControl { $0.pendingPing = payload }
    }

    private func setControl(_ set: (inout State) -> Void) {
        let schedule = state.withLockedValue { state -> Bool in
            guard !state.closed else { return false }
            set(&state)
            guard !state.flushScheduled else { return false }
            state.flushScheduled = true
            return true
        }
        if schedule { channel.eventLoop.execute { self.flush() } }
    }

    /// Offers a record frame for `subscription`. Refused (`false`) when the queue is full or closed; the
    /// caller then pauses the subscription, and it is handed to `resume` once there is room again.
    func offer(_ frame: ByteBuffer, for subscription: Subscription) -> Bool {
        let schedule: Bool? = state.withLockedValue { state in
            guard !state.closed, !state.sealed else { return nil }
            guard state.queuedBytes < pauseBytes else {
                state.paused.append(subscription)
                return nil
            }
            return Self.append(frame, to: &state)
        }
        guard let schedule else { return false }
        if schedule { channel.eventLoop.execute { self.flush() } }
        return true
    }

    private static func append(_ frame: ByteBuffer, to state: inout State) -> Bool {
        state.frames.append(frame)
        state.queuedBytes += frame.readableBytes
        guard !state.flushScheduled else { return false }
        state.flushScheduled = true
        return true
    }

    /// Queues `frame` as the last one: nothing is accepted after it, and `then` runs on the event loop once
    /// everything queued, `frame` included, has been handed to the channel (a hand-off's `moved` must follow
    /// every record already queued, and the close must follow it). A client that stops reading meanwhile is
    /// still reported through `onStall`.
    func finish(with frame: ByteBuffer, then: @escaping @Sendable () -> Void) {
        let schedule: Bool? = state.withLockedValue { state in
            guard !state.closed, !state.sealed else { return nil }
            state.sealed = true
            state.whenWritten = then
            return Self.append(frame, to: &state)
        }
        guard let schedule else { return }
        if schedule { channel.eventLoop.execute { self.flush() } }
    }

    /// Stops accepting frames and drops what is queued (a close must not wait behind it).
    func close() {
        state.withLockedValue { state in
            state.closed = true
            state.whenWritten = nil
            state.frames.removeAll()
            state.queuedBytes = 0
            state.paused.removeAll()
            state.pendingPong = nil
            state.pendingPing = nil
        }
    }

    /// Writes what the channel takes. On the event loop; also called when the channel becomes writable.
    func flush() {
        channel.eventLoop.preconditionInEventLoop()
        guard channel.isActive else { return }
        let reentered = state.withLockedValue { state -> Bool in
            defer { state.flushing = true }
            state.flushScheduled = false
            if state.flushing { state.flushAgain = true }
            return state.flushing
        }
        // A writability change fired from inside our own write or flush: the outer call goes round again.
        guard !reentered else { return }
        var wrote = false
        var framesWritten = 0
        repeat {
            var wroteThisRound = false
            let control = state.withLockedValue { state -> (pong: ByteBuffer?, ping: ByteBuffer?) in
                guard channel.isWritable else { return (nil, nil) }
                defer { state.pendingPong = nil; state.pendingPing = nil }
                return (state.pendingPong, state.pendingPing)
            }
            if let pong = control.pong {
                channel.write(WebSocketFrame(fin: true, opcode: .pong, data: pong), promise: nil)
                wroteThisRound = true
            }
            if let ping = control.ping {
                channel.write(WebSocketFrame(fin: true, opcode: .ping, data: ping), promise: nil)
                wroteThisRound = true
            }
            // One frame at a time outside the lock: a write can fire writability changes into the pipeline.
            while channel.isWritable, let frame = state.withLockedValue({ state -> ByteBuffer? in
                guard let frame = state.frames.popFirst() else { return nil }
                state.queuedBytes -= frame.readableBytes
                return frame
            }) {
                channel.write(WebSocketFrame(fin: true, opcode: .text, data: frame), promise: nil)
                framesWritten += 1
                wroteThisRound = true
            }
            if wroteThisRound { channel.flush() }
            wrote = wrote || wroteThisRound
        } while state.withLockedValue({ state in
            defer { state.flushAgain = false }
            return state.flushAgain
        })
        if framesWritten > 0 { framesSent?.increment(by: framesWritten) }
        var toResume: [Subscription] = []
        var written: (@Sendable () -> Void)?
        let now = channel.eventLoop.now
        let checkStall = state.withLockedValue { state -> Bool in
            state.flushing = false
            if state.frames.isEmpty, let then = state.whenWritten {
                state.whenWritten = nil
                written = then
            }
            if wrote || state.frames.isEmpty { state.lastProgress = now }
            if !state.paused.isEmpty, state.queuedBytes < pauseBytes / 2 {
                toResume = state.paused
                state.paused.removeAll()
            }
            guard !state.frames.isEmpty, !state.stallCheckScheduled else { return false }
            state.stallCheckScheduled = true
            return true
        }
        if !toResume.isEmpty { resume(toResume) }
        if checkStall { scheduleStallCheck(after: stallTimeout) }
        written?()
    }

    private func scheduleStallCheck(after delay: TimeAmount) {
        channel.eventLoop.scheduleTask(in: delay) { self.checkStall() }
    }

    private func checkStall() {
        let now = channel.eventLoop.now
        let verdict: (stalled: Bool, recheck: TimeAmount?) = state.withLockedValue { state in
            guard !state.closed, !state.frames.isEmpty else {
                state.stallCheckScheduled = false
                return (false, nil)
            }
            let idle = now - state.lastProgress
            if idle >= stallTimeout { return (true, nil) }
            return (false, stallTimeout - idle)
        }
        if verdict.stalled {
            close()
            onStall()
        } else if let recheck = verdict.recheck {
            scheduleStallCheck(after: recheck)
        }
    }
}
