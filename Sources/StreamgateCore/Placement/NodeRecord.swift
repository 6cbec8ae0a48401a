/// What a node writes under its key `P/nodes/{id}`: where clients reach it, and how loaded it is.
///
/// JSON: `{"url":"wss://server2.example.test:8443","connections":12,"started":1733250000000}`. Decoding
/// ignores fields it does not know, so that a newer node's record stays readable by an older node.
public struct NodeRecord: Codable, Sendable, Hashable {
    /// The node's public URL (what redirects, `locate` and `moved` point at), without a path.
    public var url: String
    /// Its WebSocket connections, as last reported.
    public var connections: Int
    /// When the node started, in milliseconds since 1970.
    public var started: Int64

    /// - Parameters:
    ///   - url: the node's public URL.
    ///   - connections: its WebSocket connections.
    ///   - started: when it started, in milliseconds since 1970.
    public init(url: String, connections: Int, started: Int64) {
        self.url = url
        self.connections = connections
        self.started = started
    }
}
