import NIOCore

/// Bounds request heads in size and time before the HTTP decoder sees them (PROTOCOL §10): a head over
/// ``HandshakeRules/maxHeadBytes`` is answered 431; a head that is not complete within the handshake
/// timeout — counted from the connection's accept, then from the end of the previous head on a keep-alive
/// connection — closes the connection. Removed with the HTTP handlers once the connection upgrades.
///
/// No route takes a request body: the handshake gate refuses bodies over 1 KiB, and the few bytes of a
/// smaller one count towards the next head.
final class RequestHeadGuard: ChannelInboundHandler, RemovableChannelHandler, SweepMember {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let maxHeadBytes: Int
    private let timeout: TimeAmount
    private let sweepers: LoopSweepers
    private var sweeper: LoopSweeper?
    private var context: ChannelHandlerContext?
    private var headBytes = 0
    /// How much of the CR LF CR LF that ends a head was seen last.
    private var terminatorMatched = 0
    private var deadline = NIODeadline.distantFuture
    private var refused = false

    init(maxHeadBytes: Int, timeout: TimeAmount, sweepers: LoopSweepers) {
        self.maxHeadBytes = maxHeadBytes
        self.timeout = timeout
        self.sweepers = sweepers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        deadline = .now() + timeout
        let sweeper = sweepers.sweeper(for: context.eventLoop)
        sweeper.add(self)
        self.sweeper = sweeper
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweeper?.remove(self)
        sweeper = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let buffer = unwrapInboundIn(data)
        let overflow = buffer.withUnsafeReadableBytes { bytes -> Bool in
            for byte in bytes {
                headBytes += 1
                switch (terminatorMatched, byte) {
                case (0, 13), (2, 13): terminatorMatched += 1
                case (1, 10): terminatorMatched = 2
                case (3, 10):
                    terminatorMatched = 0
                    headBytes = 0
                    deadline = .now() + timeout
                case (_, 13): terminatorMatched = 1
                default: terminatorMatched = 0
                }
                if headBytes > maxHeadBytes { return true }
            }
            return false
        }
        guard overflow else {
            context.fireChannelRead(data)
            return
        }
        refused = true
        let body = "request head over \(maxHeadBytes) bytes\n"
        let response = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: response))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func sweep(now: NIODeadline) {
        guard now >= deadline, let context else { return }
        deadline = .distantFuture
        context.close(promise: nil)
    }
}
