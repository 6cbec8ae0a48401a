extension StreamgateConnection {
    /// How a connection is opened and paced. Every default is chosen for a well-behaved application;
    /// load generators raise ``publishWindow``.
    public struct Configuration: Sendable {
        /// Publishes sent and not yet answered before further publishes wait in the client. 64 keeps a
        /// connection busy across a Kafka round trip (about 1–5 ms) without queueing in the gateway, whose own
        /// per-connection limit is in the thousands.
        public var publishWindow = 64
        /// Largest server message accepted. The gateway's largest frame is a 256 KiB payload in base64 plus its
        /// fields; 4 MiB leaves room for a server configured with larger payloads.
        public var maxFrameBytes = 4 << 20
        /// Subprotocols offered; the gateway speaks `streamgate.v1`.
        public var subprotocols = ["streamgate.v1"]
        /// Extra headers on the upgrade request, such as `Authorization: Bearer …`.
        public var headers: [(name: String, value: String)] = []
        /// Time allowed for TCP connect.
        public var connectTimeoutSeconds: Int64 = 10
        /// Disables Nagle's algorithm, so a lone request is not delayed; batching comes from write coalescing.
        public var noDelay = true

        public init() {}
    }
}
