import Foundation
import NIOCore
import NIOHTTP1
import StreamgateCore

/// Answers the plain HTTP requests: health, readiness, and refused or misdirected WebSocket requests.
/// Readiness answers from state the backend keeps fresh (no Kafka request per probe); while the node drains
/// it answers 503, upgrades are refused with 503, and idle keep-alive connections are closed.
final class HTTPGatewayHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let environment: SessionEnvironment
    private var route: HTTPRoute?
    /// The request's `Origin`, when a browser sent it (answered for CORS on the JSON routes).
    private var origin: String?
    private var keepAlive = true
    private var inRequest = false

    init(environment: SessionEnvironment) {
        self.environment = environment
    }

    func handlerAdded(context: ChannelHandlerContext) {
        environment.registry.add(ObjectIdentifier(self), context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        environment.registry.remove(ObjectIdentifier(self))
    }

    func channelInactive(context: ChannelHandlerContext) {
        environment.registry.remove(ObjectIdentifier(self))
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case SessionEvent.beginDrain, SessionEvent.closeForDrain:
            keepAlive = false
            if !inRequest { context.close(promise: nil) }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            inRequest = true
            route = HTTPRoute.classify(head, namespaces: environment.configuration.namespaces)
            origin = head.headers.first(name: "origin")
            keepAlive = head.isKeepAlive && !environment.lifecycle.isDraining
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
            if environment.lifecycle.isDraining {
                send(context: context, status: .serviceUnavailable, body: "draining\n")
            } else if let reason = environment.backend.readiness() {
                send(context: context, status: .serviceUnavailable, body: reason + "\n")
            } else {
                send(context: context, status: .ok, body: "ready\n")
            }
        case .websocket(.failure(let rejection)):
            send(context: context, status: rejection.status, body: rejection.message + "\n")
        case .websocket(.success) where environment.lifecycle.isDraining:
            send(context: context, status: .serviceUnavailable, body: "draining: connect to another node\n")
        case .websocket(.success):
            // Only reached when the upgrader declined a request this handler would accept (a bad key or version).
            send(context: context, status: .badRequest, body: "invalid WebSocket handshake\n")
        case .locate(.failure(let rejection)):
            send(context: context, status: rejection.status, body: rejection.message + "\n")
        case .locate(.success(let (channel, route))):
            if let location = environment.placement.locate(channel, route: route) {
                sendJSON(context: context, status: .ok, location)
            } else {
                send(context: context, status: .serviceUnavailable, body: "no node serves \(channel) right now; try again shortly\n",
                     extra: [("Retry-After", "1")])
            }
        case .cluster:
            sendJSON(context: context, status: .ok,
                     environment.placement.snapshot(localConnections: environment.registry.webSocketCount))
        case .metrics:
            send(context: context, status: .ok, bytes: MetricsScrape.exposition(environment),
                 contentType: "text/plain; version=0.0.4; charset=utf-8")
        case .asset(let asset):
            send(context: context, status: .ok, bytes: asset.bytes, contentType: asset.contentType,
                 extra: [("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")])
        case .notFound:
            send(context: context, status: .notFound, body: "not found\n")
        }
    }

    private func sendJSON(context: ChannelHandlerContext, status: HTTPResponseStatus, _ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        send(context: context, status: status, body: body + "\n", contentType: "application/json")
    }

    private func send(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String,
                      extra: [(String, String)] = [], contentType: String = "text/plain; charset=utf-8") {
        send(context: context, status: status, buffer: context.channel.allocator.buffer(string: body), extra: extra,
             contentType: contentType)
    }

    private func send(context: ChannelHandlerContext, status: HTTPResponseStatus, bytes: [UInt8], contentType: String,
                      extra: [(String, String)] = []) {
        send(context: context, status: status, buffer: context.channel.allocator.buffer(bytes: bytes), extra: extra,
             contentType: contentType)
    }

    private func send(context: ChannelHandlerContext, status: HTTPResponseStatus, buffer: ByteBuffer,
                      extra: [(String, String)], contentType: String) {
        var headers = extra
        if status == .upgradeRequired {
            headers += [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                        ("Sec-WebSocket-Protocol", HandshakeRules.subprotocol)]
        }
        // Browsers read `locate` from pages of other origins: allowed origins (any, without an allowlist)
        // may read the answers; they carry no credentials.
        if let origin, environment.handshakePolicy.allows(origin: origin) {
            headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        }
        inRequest = false
        HTTPReply.send(context, status: status, body: buffer, headers: headers, keepAlive: keepAlive, contentType: contentType)
    }
}

@available(*, unavailable)
extension HTTPGatewayHandler: Sendable {}
