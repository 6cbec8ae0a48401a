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
        if case .metrics = HTTPRoute.classify(Self.head("/metrics"), namespaces: namespaces) {} else { Issue.record("metrics") }
    }

    /// The console page and the browser client come from the binary, whole.
    @Test func staticAssets() {
        let namespaces = NamespaceMap()
        for (path, expected) in [("/", StaticAsset.consolePage), ("/index.html", .consolePage),
                                 ("/console.js", .consoleScript), ("/v1/client.js", .client)] {
            guard case .asset(let asset) = HTTPRoute.classify(Self.head(path, headers: []), namespaces: namespaces) else {
                Issue.record("\(path) is not an asset")
                continue
            }
            #expect(asset == expected)
            #expect(asset.bytes.count > 1000, "\(path) is \(asset.bytes.count) bytes")
        }
        #expect(String(decoding: StaticAsset.consolePage.bytes, as: UTF8.self).contains("/v1/client.js")
                || String(decoding: StaticAsset.consoleScript.bytes, as: UTF8.self).contains("/v1/client.js"))
        #expect(String(decoding: StaticAsset.client.bytes, as: UTF8.self).contains("export"))
        if case .notFound = HTTPRoute.classify(Self.head("/v1/client.d.ts", headers: []), namespaces: namespaces) {} else {
            Issue.record("only the three files are served")
        }
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
