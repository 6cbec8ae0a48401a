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
    case websocket(Result<(target: Target, subprotocol: String?), Rejection>)
    case notFound

    static let subprotocol = "streamgate.v1"

    static func classify(_ head: HTTPRequestHead, namespaces: NamespaceMap) -> HTTPRoute {
        let (path, query) = split(head.uri)
        switch path {
        case "/healthz": return .health
        case "/readyz": return .ready
        case "/v1/ws": return .websocket(websocket(head, target: .multiplexed, query: query))
        default:
            guard path.hasPrefix("/v1/ws/") else { return .notFound }
            let raw = String(path.dropFirst("/v1/ws/".count))
            guard let decoded = raw.removingPercentEncoding, let channel = ChannelName(decoded) else {
                return .websocket(.failure(Rejection(status: .badRequest,
                    message: "invalid channel name: 1 to 200 bytes of [A-Za-z0-9._~:@/-]")))
            }
            guard namespaces.route(for: channel) != nil else {
                return .websocket(.failure(Rejection(status: .notFound,
                    message: "unknown_namespace: namespace \"\(channel.namespace)\" is not configured")))
            }
            var start = StartPosition.latest
            if let from = query.first(where: { $0.name == "from" })?.value {
                guard let parsed = StartPosition(queryValue: from) else {
                    return .websocket(.failure(Rejection(status: .badRequest,
                        message: "from must be latest, earliest, an offset or an RFC 3339 time")))
                }
                start = parsed
            }
            return .websocket(websocket(head, target: .bound(channel, start), query: query))
        }
    }

    private static func websocket(_ head: HTTPRequestHead, target: Target, query: [(name: String, value: String)])
        -> Result<(target: Target, subprotocol: String?), Rejection>
    {
        if query.contains(where: { $0.name == "token" || $0.name == "access_token" || $0.name == "jwt" }) {
            return .failure(Rejection(status: .badRequest,
                message: "tokens in the URL are refused (they leak into logs); use the Authorization header or an auth frame"))
        }
        guard head.method == .GET else {
            return .failure(Rejection(status: .methodNotAllowed, message: "WebSocket upgrades use GET"))
        }
        let upgrade = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
        guard upgrade.contains("websocket") else {
            return .failure(Rejection(status: .upgradeRequired, message: "this endpoint speaks WebSocket only"))
        }
        let offered = head.headers[canonicalForm: "sec-websocket-protocol"].map { String($0) }
        if offered.isEmpty { return .success((target, nil)) }
        guard offered.contains(subprotocol) else {
            return .failure(Rejection(status: .badRequest,
                message: "unsupported subprotocol; this gateway speaks \(subprotocol)"))
        }
        return .success((target, subprotocol))
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
