import NIOCore
import NIOWebSocket
import StreamgateCore
import Synchronization

/// Bytes of fragmented messages being assembled, all connections together: many connections holding
/// half-sent large messages must not exhaust the node. Over the budget, a connection is closed with 1013.
final class AssemblyBudget: Sendable {
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Reserves `bytes`; `false` (nothing reserved) when that would exceed the budget.
    func reserve(_ bytes: Int) -> Bool {
        if used.wrappingAdd(bytes, ordering: .relaxed).newValue <= limit { return true }
        used.wrappingSubtract(bytes, ordering: .relaxed)
        return false
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.wrappingSubtract(bytes, ordering: .relaxed)
    }
}

/// A violation of RFC 6455 §5 or of the message limits, fired into the pipeline for the session to close
/// with `code`.
struct FrameViolationEvent: Sendable {
    let code: UInt16
    let reason: String
}

/// Frames the connection received, fragments included: counted by the frame guard (which sees every
/// frame), read at each sweep by the session, which pings and times out silent peers. A count, not a time:
/// no clock read per frame; the sweep's own time is precise enough for time-outs of seconds.
final class InboundActivity {
    var frames: UInt64 = 0
}

/// Checks every frame against ``InboundFrameRules`` — masking, reserved bits and opcodes, fragmentation,
/// UTF-8 (incrementally, failing fast across fragments), close payloads, message size and fragment count —
/// and hands the session whole messages and control frames. The first violation is reported as a
/// ``FrameViolationEvent``; after it only the peer's close frame goes on.
final class WebSocketFrameGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private var rules: InboundFrameRules
    private let budget: AssemblyBudget
    private let activity: InboundActivity
    private var assembling: ByteBuffer?
    private var assemblingIsText = false
    private var reserved = 0
    private var failed = false

    init(maxMessageBytes: Int, maxFragments: Int, budget: AssemblyBudget, activity: InboundActivity) {
        self.rules = InboundFrameRules(maxMessageBytes: maxMessageBytes, maxFragments: maxFragments)
        self.budget = budget
        self.activity = activity
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseAssembly()
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseAssembly()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !failed else {
            // The session waits for the peer's answer to its close; nothing else is read any more.
            if frame.opcode == .connectionClose, frame.length <= 125 {
                context.fireChannelRead(wrapInboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
            }
            return
        }
        activity.frames &+= 1
        let header = WebSocketFrameHeader(
            fin: frame.fin, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3,
            opcode: UInt8(webSocketOpcode: frame.opcode), masked: frame.maskKey != nil, length: frame.length)
        let disposition: FrameDisposition
        switch rules.admit(header) {
        case .failure(let violation): return fail(violation, context: context)
        case .success(let admitted): disposition = admitted
        }
        switch disposition {
        case .ping, .pong:
            context.fireChannelRead(data)
        case .close:
            let payload = frame.unmaskedData
            let parsed = payload.withUnsafeReadableBytes { ClosePayloadRules.parse($0) }
            if case .failure(let violation) = parsed { return fail(violation, context: context) }
            context.fireChannelRead(wrapInboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
        case .messageStart(let isText):
            var payload = frame.unmaskedData
            if let violation = consume(payload, fin: frame.fin) { return fail(violation, context: context) }
            if frame.fin {
                context.fireChannelRead(wrapInboundOut(WebSocketFrame(fin: true, opcode: isText ? .text : .binary, data: payload)))
                return
            }
            guard reserve(payload.readableBytes) else { return busy(context) }
            assemblingIsText = isText
            var buffer = context.channel.allocator.buffer(capacity: payload.readableBytes)
            buffer.writeBuffer(&payload)
            assembling = buffer
        case .messageContinuation:
            var payload = frame.unmaskedData
            if let violation = consume(payload, fin: frame.fin) { return fail(violation, context: context) }
            guard reserve(payload.readableBytes) else { return busy(context) }
            assembling?.writeBuffer(&payload)
            guard frame.fin, let message = assembling else { return }
            assembling = nil
            releaseAssembly()
            context.fireChannelRead(wrapInboundOut(WebSocketFrame(fin: true, opcode: assemblingIsText ? .text : .binary,
                                                                  data: message)))
        }
    }

    private func consume(_ payload: ByteBuffer, fin: Bool) -> FrameViolation? {
        payload.withUnsafeReadableBytes { rules.consume($0, fin: fin) }
    }

    private func reserve(_ bytes: Int) -> Bool {
        guard budget.reserve(bytes) else { return false }
        reserved += bytes
        return true
    }

    private func releaseAssembly() {
        assembling = nil
        budget.release(reserved)
        reserved = 0
    }

    private func busy(_ context: ChannelHandlerContext) {
        fail(FrameViolation(closeCode: CloseCode.tryAgainLater, reason: "server busy: too many large messages in progress"),
             context: context)
    }

    private func fail(_ violation: FrameViolation, context: ChannelHandlerContext) {
        failed = true
        releaseAssembly()
        context.fireUserInboundEventTriggered(FrameViolationEvent(code: violation.closeCode, reason: violation.reason))
    }
}
