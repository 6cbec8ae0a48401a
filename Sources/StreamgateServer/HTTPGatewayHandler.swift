import NIOCore
import NIOHTTP1
import NIOPosix

/// Answers the plain HTTP requests: health, readiness, and refused or misdirected WebSocket requests.
final class HTTPGatewayHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let environment: SessionEnvironment
    private var route: HTTPRoute?
    private var keepAlive = true

    init(environment: SessionEnvironment) {
        self.environment = environment
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            route = HTTPRoute.classify(head, namespaces: environment.configuration.namespaces)
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            guard let route else { return }
            self.route = nil
            respond(context: context, route: route)
        }
    }

    private func respond(context: ChannelHandlerContext, route: HTTPRoute) {
        switch route {
        case .health:
            send(context: context, status: .ok, body: "ok\n")
        case .ready:
            let backend = environment.backend
            let handler = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            environment.blockingPool.runIfActive(eventLoop: context.eventLoop) { backend.readiness() }
                .whenComplete { result in
                    let (this, context) = handler.value
                    switch result {
                    case .success(nil): this.send(context: context, status: .ok, body: "ready\n")
                    case .success(let reason?): this.send(context: context, status: .serviceUnavailable, body: reason + "\n")
                    case .failure(let error): this.send(context: context, status: .serviceUnavailable, body: "\(error)\n")
                    }
                }
        case .websocket(.failure(let rejection)):
            send(context: context, status: rejection.status, body: rejection.message + "\n")
        case .websocket(.success):
            // Only reached when the upgrader declined a request this handler would accept (a bad key or version).
            send(context: context, status: .badRequest, body: "invalid WebSocket handshake\n")
        case .notFound:
            send(context: context, status: .notFound, body: "not found\n")
        }
    }

    private func send(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if status == .upgradeRequired {
            headers.add(name: "Upgrade", value: "websocket")
            headers.add(name: "Sec-WebSocket-Protocol", value: HTTPRoute.subprotocol)
        }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let keepAlive = self.keepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension HTTPGatewayHandler: Sendable {}
