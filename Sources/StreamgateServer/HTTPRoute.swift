import Foundation
import NIOHTTP1
import StreamgateCore

/// What an HTTP request asks of the gateway, decided from its head alone (so the WebSocket upgrader and
/// the plain HTTP handler agree).
enum HTTPRoute {
    /// What a WebSocket upgrade opens.
    enum Target {
        case multiplexed
        case bound(ChannelName, StartPosition)
    }

    /// Why a request is refused.
    struct Rejection: Error {
        var status: HTTPResponseStatus
        var message: String
    }

    case health
    case ready
    case websocket(Result<Target, Rejection>)
    /// `GET /v1/locate/{channel}`: where the channel is served (PROTOCOL §9).
    case locate(Result<(ChannelName, NamespaceRoute), Rejection>)
    /// `GET /v1/cluster`: the nodes and what they own.
    case cluster
    /// `GET /metrics`: Prometheus text format.
    case metrics
    /// The console page and the browser client, from the binary.
    case asset(StaticAsset)
    case notFound

    static func classify(_ head: HTTPRequestHead, namespaces: NamespaceMap) -> HTTPRoute {
        let (path, query) = split(head.uri)
        switch path {
        case "/healthz": return .health
        case "/readyz": return .ready
        case "/v1/ws": return .websocket(websocket(head, target: .multiplexed))
        case "/v1/cluster": return .cluster
        case "/metrics": return .metrics
        case "/", "/index.html": return .asset(.consolePage)
        case "/console.js": return .asset(.consoleScript)
        case "/v1/client.js": return .asset(.client)
        default:
            if path.hasPrefix("/v1/locate/") {
                return .locate(channel(String(path.dropFirst("/v1/locate/".count)), namespaces: namespaces))
            }
            guard path.hasPrefix("/v1/ws/") else { return .notFound }
            let channel: ChannelName
            switch Self.channel(String(path.dropFirst("/v1/ws/".count)), namespaces: namespaces) {
            case .failure(let rejection): return .websocket(.failure(rejection))
            case .success(let (named, _)): channel = named
            }
            var start = StartPosition.latest
            if let from = query.first(where: { $0.name == "from" })?.value {
                guard let parsed = StartPosition(queryValue: from) else {
                    return .websocket(.failure(Rejection(status: .badRequest,
                        message: "from must be latest, earliest, an offset or an RFC 3339 time")))
                }
                start = parsed
            }
            return .websocket(websocket(head, target: .bound(channel, start)))
        }
    }

    private static func channel(_ raw: String, namespaces: NamespaceMap) -> Result<(ChannelName, NamespaceRoute), Rejection> {
        guard let decoded = raw.removingPercentEncoding, let channel = ChannelName(decoded) else {
            return .failure(Rejection(status: .badRequest, message: "invalid channel name: 1 to 200 bytes of [A-Za-z0-9._~:@/-]"))
        }
        guard let route = namespaces.route(for: channel) else {
            return .failure(Rejection(status: .notFound,
                message: "unknown_namespace: namespace \"\(channel.namespace)\" is not configured"))
        }
        return .success((channel, route))
    }

    /// The query of `uri` as sent (for a redirect that keeps it), `nil` without one.
    static func rawQuery(_ uri: String) -> String? {
        guard let mark = uri.firstIndex(of: "?") else { return nil }
        let query = String(uri[uri.index(after: mark)...])
        return query.isEmpty ? nil : query
    }

    /// The handshake rules (method, headers, key, version, subprotocol, query tokens) are ``HandshakeRules``,
    /// which the handshake gate checks before any route; what is left here is a plain request to a WebSocket
    /// path.
    private static func websocket(_ head: HTTPRequestHead, target: Target) -> Result<Target, Rejection> {
        guard head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
            return .failure(Rejection(status: .upgradeRequired, message: "this endpoint speaks WebSocket only"))
        }
        return .success(target)
    }

    private static func split(_ uri: String) -> (path: String, query: [(name: String, value: String)]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, []) }
        let path = String(uri[..<mark])
        let query = uri[uri.index(after: mark)...].split(separator: "&").map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            return (name, value)
        }
        return (path, query)
    }
}
