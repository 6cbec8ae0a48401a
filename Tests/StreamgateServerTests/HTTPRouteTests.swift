import NIOHTTP1
import StreamgateCore
import Testing

@testable import StreamgateServer

@Suite struct HTTPRouteTests {
    static func head(_ uri: String, method: HTTPMethod = .GET, headers: [(String, String)] = [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
    ]) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    static func status(_ route: HTTPRoute) -> HTTPResponseStatus? {
        if case .websocket(.failure(let rejection)) = route { return rejection.status }
        return nil
    }

    @Test func plainRoutes() {
        let namespaces = NamespaceMap()
        if case .health = HTTPRoute.classify(Self.head("/healthz"), namespaces: namespaces) {} else { Issue.record("healthz") }
        if case .ready = HTTPRoute.classify(Self.head("/readyz"), namespaces: namespaces) {} else { Issue.record("readyz") }
        if case .notFound = HTTPRoute.classify(Self.head("/nope"), namespaces: namespaces) {} else { Issue.record("404") }
    }

    /// Routing of WebSocket paths; the handshake rules themselves are HandshakeRulesTests'.
    @Test func upgradesAreCheckedBeforeAnyFrame() {
        let namespaces = NamespaceMap(routes: ["doc": NamespaceRoute(topic: "docs")])
        #expect(Self.status(HTTPRoute.classify(Self.head("/v1/ws/bad%20name"), namespaces: namespaces)) == .badRequest)
        #expect(Self.status(HTTPRoute.classify(Self.head("/v1/ws/news:1"), namespaces: namespaces)) == .notFound)
        #expect(Self.status(HTTPRoute.classify(Self.head("/v1/ws/doc:1?from=yesterday"), namespaces: namespaces)) == .badRequest)
        #expect(Self.status(HTTPRoute.classify(Self.head("/v1/ws", headers: []), namespaces: namespaces)) == .upgradeRequired)
        guard case .websocket(.success(let target)) = HTTPRoute.classify(
            Self.head("/v1/ws/doc:1?from=7", headers: [("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", "streamgate.v1")]),
            namespaces: namespaces)
        else {
            Issue.record("a good bound upgrade was refused")
            return
        }
        guard case .bound(let channel, let start) = target else {
            Issue.record("not bound")
            return
        }
        #expect(channel == ChannelName("doc:1"))
        #expect(start == .offset(7, partition: nil))
    }
}
