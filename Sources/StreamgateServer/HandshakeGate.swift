import NIOCore
import NIOHTTP1
import StreamgateCore

/// What the gate admitted for the upgrade of this connection: read by the WebSocket upgrader.
final class UpgradeAdmission {
    struct Admitted {
        var target: HTTPRoute.Target
        var subprotocol: String?
        /// The header token's identity; `nil` without one (the client may still send an `auth` frame).
        var identity: SessionStateMachine.Identity?
        /// The partition of a bound affinity channel this node serves.
        var affinity: PartitionKey?
    }

    var admitted: Admitted?
    /// Whether this connection holds a WebSocket place that no session has taken over yet.
    var holdsPlace = false
    /// The affinity channel whose peer place this connection holds, until a session takes it over.
    var heldPeer: ChannelName?
}

/// Decides every request head before the upgrader sees it: the RFC 6455 handshake rules and the origin
/// allowlist (``HandshakeRules``), the route, draining and the connection limit, and the header token —
/// verified off the event loop while the request is held. A refused upgrade is answered here, with its
/// status (400, 401 with `WWW-Authenticate`, 403, 404, 405, 426 with `Sec-WebSocket-Version`, 503), and the
/// connection closed; an admitted one goes on to the upgrader with what was decided in ``UpgradeAdmission``.
final class HandshakeGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private enum State {
        case idle
        case forwarding
        case holding([HTTPServerRequestPart])
        case refused
    }

    /// Largest body a plain request may carry (it is ignored).
    static let maxBodyBytes = 1024

    private let environment: SessionEnvironment
    private let admission: UpgradeAdmission
    private var state = State.idle
    /// Heads seen on this connection: only the first may upgrade (later ones never reach the upgrader).
    private var heads = 0

    init(environment: SessionEnvironment, admission: UpgradeAdmission) {
        self.environment = environment
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.refused, _):
            return
        case (.holding(var parts), _):
            parts.append(part)
            state = .holding(parts)
        case (_, .head(let head)):
            decide(head, context: context)
        case (_, .end):
            state = .idle
            context.fireChannelRead(data)
        case (_, .body):
            context.fireChannelRead(data)
        }
    }

    private func decide(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        heads += 1
        let configuration = environment.configuration
        let verdict = HandshakeRules.evaluate(HandshakeHead(head), policy: environment.handshakePolicy)
        let request: WebSocketRequest
        switch verdict {
        case .refuse(let refusal):
            return refuse(context, status: refusal.status, refusal.message, headers: refusal.headers.map { ($0.name, $0.value) })
        case .plainHTTP:
            // No route reads a body; a small one is tolerated (and ignored), so the head bounds stay exact.
            if head.headers.contains(name: "transfer-encoding")
                || head.headers[canonicalForm: "content-length"].contains(where: { Int($0).map { $0 > Self.maxBodyBytes } ?? true })
            {
                return refuse(context, status: 413, "request bodies over \(Self.maxBodyBytes) bytes are not accepted")
            }
            state = .forwarding
            return context.fireChannelRead(wrapInboundOut(.head(head)))
        case .webSocket(let webSocket):
            request = webSocket
        }
        guard heads == 1 else {
            return refuse(context, status: 400, "a WebSocket upgrade must be the first request of its connection")
        }
        guard case .websocket(let routed) = HTTPRoute.classify(head, namespaces: configuration.namespaces) else {
            state = .forwarding
            return context.fireChannelRead(wrapInboundOut(.head(head)))
        }
        let target: HTTPRoute.Target
        switch routed {
        case .failure(let rejection): return refuse(context, status: Int(rejection.status.code), rejection.message)
        case .success(let accepted): target = accepted
        }
        if environment.lifecycle.isDraining {
            return refuse(context, status: 503, "draining: connect to another node")
        }
        var affinity: PartitionKey?
        if case .bound(let channel, _) = target, let route = configuration.namespaces.route(for: channel),
            route.mode == .affinity
        {
            switch environment.placement.decide(channel, topic: route.topic) {
            case .serveHere(let partition):
                affinity = partition
            case .redirect(let base):
                let location = ClusterPlacement.boundURL(base: base, channel: channel, query: HTTPRoute.rawQuery(head.uri))
                return refuse(context, status: 302, "\(channel) is served at \(location)", headers: [("Location", location)])
            case .unavailable(let reason):
                return refuse(context, status: 503, "\(reason); try again shortly", headers: [("Retry-After", "1")])
            }
        }
        guard let verifier = environment.verifier else {
            return admit(head, target: target, subprotocol: request.subprotocol, identity: nil, affinity: affinity,
                         context: context)
        }
        switch request.authorization {
        case .none:
            admit(head, target: target, subprotocol: request.subprotocol, identity: nil, affinity: affinity, context: context)
        case .invalid:
            refuse(context, status: 401, "invalid token: the Authorization header must be: Bearer <token>",
                   headers: [("WWW-Authenticate", #"Bearer error="invalid_token""#)])
        case .bearer(let token):
            state = .holding([.head(head)])
            let gate = NIOLoopBound(self, eventLoop: context.eventLoop)
            let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            Task {
                let result = await verifier.verify(token)
                eventLoop.execute {
                    gate.value.verified(result, target: target, subprotocol: request.subprotocol, affinity: affinity,
                                        context: boundContext.value)
                }
            }
        }
    }

    private func verified(_ result: Result<VerifiedToken, TokenRejection>, target: HTTPRoute.Target,
                          subprotocol: String?, affinity: PartitionKey?, context: ChannelHandlerContext) {
        guard case .holding(let parts) = state, context.channel.isActive else { return }
        switch result {
        case .failure(let rejection):
            refuse(context, status: 401, "invalid token: \(rejection.reason)",
                   headers: [("WWW-Authenticate", #"Bearer error="invalid_token""#)])
        case .success(let identity):
            if case .bound(let channel, _) = target,
                !SessionStateMachine.maySubscribe(channel, identity: identity, authRequired: true,
                                                  publicNamespaces: environment.configuration.publicNamespaces)
            {
                return refuse(context, status: 403, "the token does not allow subscribing to \(channel)")
            }
            guard takePlace(context, target: target, affinity: affinity) else { return }
            admission.admitted = .init(target: target, subprotocol: subprotocol, identity: identity, affinity: affinity)
            state = .forwarding
            for part in parts {
                if case .end = part { state = .idle }
                context.fireChannelRead(wrapInboundOut(part))
            }
        }
    }

    private func admit(_ head: HTTPRequestHead, target: HTTPRoute.Target, subprotocol: String?,
                       identity: SessionStateMachine.Identity?, affinity: PartitionKey?, context: ChannelHandlerContext) {
        guard takePlace(context, target: target, affinity: affinity) else { return }
        admission.admitted = .init(target: target, subprotocol: subprotocol, identity: identity, affinity: affinity)
        state = .forwarding
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    /// Reserves the connection's WebSocket place — and, for an affinity channel, one of its peer places —
    /// before the upgrade, so concurrent upgrades cannot overshoot the limits; the session takes them over,
    /// or they are given back when the connection closes without one.
    private func takePlace(_ context: ChannelHandlerContext, target: HTTPRoute.Target, affinity: PartitionKey?) -> Bool {
        guard !admission.holdsPlace else { return true }
        let registry = environment.registry
        let members = environment.placement.members
        guard registry.reserveWebSocket(limit: environment.configuration.maxConnections) else {
            refuse(context, status: 503, "connection limit reached: try another node or later")
            return false
        }
        if affinity != nil, case .bound(let channel, _) = target {
            let limit = environment.configuration.namespaces.route(for: channel)?.maxPeers
            guard members.reservePeer(channel, limit: limit) else {
                registry.releaseWebSocket()
                refuse(context, status: 429, "\(channel) has its \(limit ?? 0) peers already; try again later",
                       headers: [("Retry-After", "1")])
                return false
            }
            admission.heldPeer = channel
        }
        admission.holdsPlace = true
        let admission = NIOLoopBound(self.admission, eventLoop: context.eventLoop)
        context.channel.closeFuture.whenComplete { _ in
            if let peer = admission.value.heldPeer {
                admission.value.heldPeer = nil
                members.releasePeer(peer)
            }
            guard admission.value.holdsPlace else { return }
            admission.value.holdsPlace = false
            registry.releaseWebSocket()
        }
        return true
    }

    private func refuse(_ context: ChannelHandlerContext, status: Int, _ message: String, headers: [(String, String)] = []) {
        environment.metrics.refused(status: status)
        state = .refused
        HTTPReply.send(context, status: HTTPResponseStatus(statusCode: status), body: message + "\n", headers: headers,
                       keepAlive: false)
    }
}

extension HandshakeHead {
    init(_ head: HTTPRequestHead) {
        self.init(method: head.method.rawValue, versionMajor: head.version.major, versionMinor: head.version.minor,
                  uri: head.uri, headers: head.headers.map { (name: $0.name, value: $0.value) })
    }
}
