import NIOCore
import NIOHTTP1

/// Sends the HTTP upgrade request when the socket connects, and turns any answer other than `101` into
/// a ``StreamgateClientError`` (the upgrade handler in front of it passes such answers on).
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let head: HTTPRequestHead
    private let upgraded: EventLoopPromise<String?>

    init(head: HTTPRequestHead, upgraded: EventLoopPromise<String?>) {
        self.head = head
        self.upgraded = upgraded
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let response) = unwrapInboundIn(data) else { return }
        upgraded.fail(
            StreamgateClientError(
                code: .upgradeRefused, message: "the server refused the WebSocket upgrade: \(response.status)",
                status: Int(response.status.code), location: response.headers.first(name: "Location")))
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        upgraded.fail(StreamgateClientError(code: .connectFailed, message: "WebSocket handshake failed: \(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(
            StreamgateClientError(code: .connectFailed, message: "the connection closed during the handshake"))
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension UpgradeRequestHandler: Sendable {}
