import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// Frames waiting to be written to one WebSocket connection, from any thread.
///
/// Producers (Kafka reader threads, delivery reports, the connection itself) append; the first append
/// after a flush schedules one flush on the connection's event loop, which writes everything queued with
/// a single `flush()` — many frames per system call under load. A connection whose queued bytes pass
/// the slow-consumer limit is closed with 4008 instead of growing without bound.
final class ConnectionOutbox: Sendable {
    private struct State {
        var frames: [ByteBuffer] = []
        var queuedBytes = 0
        var flushScheduled = false
        var closed = false
    }

    private let channel: any Channel
    private let slowConsumerBytes: Int
    private let state = NIOLockedValueBox(State())

    init(channel: any Channel, slowConsumerBytes: Int) {
        self.channel = channel
        self.slowConsumerBytes = slowConsumerBytes
    }

    var eventLoop: any EventLoop { channel.eventLoop }

    /// Queues a text frame. Returns `false` once the outbox is closed.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        let schedule: Bool? = state.withLockedValue { state in
            guard !state.closed else { return nil }
            state.frames.append(frame)
            state.queuedBytes += frame.readableBytes
            guard !state.flushScheduled else { return false }
            state.flushScheduled = true
            return true
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

    /// Stops accepting frames; what is queued is still written by a pending flush.
    func close() {
        state.withLockedValue { $0.closed = true }
    }

    /// Writes everything queued. On the event loop.
    func flush() {
        channel.eventLoop.preconditionInEventLoop()
        let (frames, bytes) = state.withLockedValue { state -> ([ByteBuffer], Int) in
            defer {
                state.frames.removeAll(keepingCapacity: true)
                state.queuedBytes = 0
                state.flushScheduled = false
            }
            return (state.frames, state.queuedBytes)
        }
        guard !frames.isEmpty, channel.isActive else { return }
        if !channel.isWritable, bytes > 0 {
            slowConsumer()
            return
        }
        for frame in frames {
            channel.write(WebSocketFrame(fin: true, opcode: .text, data: frame), promise: nil)
        }
        channel.flush()
    }

    private func slowConsumer() {
        close()
        channel.pipeline.fireUserInboundEventTriggered(SlowConsumerEvent())
    }
}

/// Fired into the pipeline when a connection cannot keep up; the session closes it with 4008.
struct SlowConsumerEvent: Sendable {}
