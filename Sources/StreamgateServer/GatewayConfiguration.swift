import NIOCore
import StreamgateCore
import StreamgateKafka

/// Everything a gateway node needs to run. CLI flags and environment variables map onto it in one place
/// (the `serve` command).
public struct GatewayConfiguration: Sendable {
    /// Address to listen on.
    public var host = "127.0.0.1"
    /// Port to listen on; 0 picks a free one.
    public var port = 8080
    /// This node's id, written into every record as `sg-node`.
    public var nodeID = "node-1"
    /// Kafka bootstrap servers; `nil` runs an embedded in-memory development Kafka.
    public var brokers: String?
    /// Partitions of the default topic in the embedded development Kafka.
    public var embeddedPartitions = 12
    /// Namespace → topic routing.
    public var namespaces = NamespaceMap()
    /// Largest publish payload. 256 KiB: large enough for documents and images' metadata, small enough that
    /// one client cannot fill the producer's queue alone.
    public var maxMessageBytes = 256 * 1024
    /// Largest WebSocket message; a larger one closes the connection with 1009. 1 MiB leaves room for a
    /// maximal payload in base64 plus the frame's own fields.
    public var maxFrameBytes = 1024 * 1024
    /// Producer `linger.ms`: 1 ms batches concurrent publishes without adding visible latency.
    public var lingerMilliseconds = 1
    /// Outbound bytes queued for one connection at which its subscriptions pause (they resume, from where
    /// they stopped, once half of it is written). 4 MiB absorbs bursts of thousands of small messages.
    public var slowConsumerBytes = 4 * 1024 * 1024
    /// How long a connection with queued output may make no write progress (its client stopped reading)
    /// before it is closed with 4008. 10 s rides out a stalled mobile link; a reading client never hits it.
    public var slowConsumerSeconds = 10.0
    /// How long a close may wait for the peer before the gateway closes the TCP connection itself, so that a
    /// closed connection never pins its descriptor, buffers or subscriptions. 5 s is generous for a close
    /// handshake on any link.
    public var closeTimeoutSeconds = 5.0
    /// Publishes awaiting Kafka's report per connection before the gateway stops reading from that socket.
    public var maxInFlightPerConnection = 4096
    /// Payload bytes awaiting Kafka's report per connection before the gateway stops reading from that
    /// socket: 8 MiB is 32 maximal payloads, so one connection cannot fill the producer's queue alone.
    public var maxInFlightBytesPerConnection = 8 * 1024 * 1024
    /// Channels one connection may subscribe to at once (`limit_exceeded` beyond).
    public var maxSubscriptionsPerConnection = 1000
    /// Start look-ups one connection may have running at once; later subscribes wait their turn, so one
    /// client cannot occupy the look-up threads.
    public var maxConcurrentResolutionsPerConnection = 2
    /// How often Kafka metadata (reachability, partition counts) is refreshed.
    public var metadataRefreshSeconds = 5.0
    /// How long a drain waits for in-flight publishes before failing them.
    public var drainSeconds = 10
    /// Extra librdkafka properties (`--kafka key=value`), applied to every Kafka client.
    public var kafkaProperties: [String: String] = [:]

    // MARK: Edge: TLS, tokens, origins, liveness, limits

    /// PEM certificate chain and private key; `nil` serves plain text. SIGHUP reloads both files.
    public var tls: TLSFiles?
    /// HMAC secret for HS256/384/512 tokens (the file's bytes, one trailing newline stripped).
    public var jwtSecretFile: String?
    /// JWKS document (path or http(s) URL) for RS/PS/ES/EdDSA tokens, keys selected by `kid`.
    public var jwks: String?
    /// How often a JWKS is fetched again; a failed fetch keeps the last good keys. 5 min follows key
    /// rotation within minutes at no measurable cost.
    public var jwksRefreshSeconds = 300.0
    /// Required `iss`, when set.
    public var jwtIssuer: String?
    /// Required `aud` member, when set.
    public var jwtAudience: String?
    /// Namespaces anyone may subscribe to, without a token or a permission.
    public var publicNamespaces: Set<String> = []
    /// Origins allowed to upgrade (`*` = any); `nil` checks no origin. Requests without `Origin` pass.
    public var allowedOrigins: [String]?
    /// How long a connection without a header token has to send its `auth` frame (4001 after).
    public var authTimeoutSeconds = 5.0
    /// How often the gateway pings each connection: 25 s keeps NAT and proxy mappings (often 30–60 s) open.
    public var pingIntervalSeconds = 25.0
    /// How long a connection may stay silent after a ping before it is closed with 4000.
    public var pingTimeoutSeconds = 20.0
    /// How long a request head may take to arrive (and a keep-alive connection may idle between requests).
    public var handshakeTimeoutSeconds = 10.0
    /// Open WebSocket connections per node; upgrades beyond get 503. 20 000 is what one node is sized for.
    public var maxConnections = 20_000
    /// Publishes per second per connection, sustained (`rate_limited` beyond the burst).
    public var publishRatePerSecond = 1000.0
    /// Publishes a connection may send at once above the sustained rate.
    public var publishBurst = 2000

    /// Bytes of fragmented messages being assembled, all connections together; beyond, 1013. 256 MiB lets
    /// 256 connections each hold a maximal message half-sent.
    public var maxAssemblingBytes = 256 * 1024 * 1024

    // MARK: Cluster: placement of affinity channels (PROTOCOL §9)

    /// etcd client URLs (`http://host:2379`); `nil` runs the node alone, without affinity namespaces.
    public var etcdEndpoints: [String]?
    /// Where the node keeps its keys in etcd.
    public var etcdPrefix = "/streamgate"
    /// The URL clients reach this node at (`wss://server2.example.com`): what redirects, `locate` and `moved`
    /// point at. `nil`: `ws(s)://host:port` as bound.
    public var publicURL: String?
    /// The node's etcd lease. It renews every quarter of it and stops serving affinity partitions three
    /// quarters after its last successful renewal was sent, before etcd can expire it; others take over at
    /// the latest one TTL after a crash. 10 s: failover within seconds, while a GC pause or a slow etcd
    /// write (well under a second) never costs the lease.
    public var leaseTTLSeconds = 10
    /// Spans of publishes and deliveries: none, or one log line per span.
    public enum TracingMode: String, Sendable, CaseIterable { case off, log }
    public var tracing = TracingMode.off

    /// How often each event loop sweeps its connections' deadlines: a quarter of the shortest one, between
    /// 50 ms and 1 s.
    var sweepInterval: TimeAmount {
        let shortest = min(pingIntervalSeconds, pingTimeoutSeconds, authTimeoutSeconds, handshakeTimeoutSeconds)
        return .milliseconds(Int64(max(50, min(1000, shortest * 250))))
    }

    /// Whether clients must present a token.
    public var authenticationEnabled: Bool { jwtSecretFile != nil || jwks != nil }

    public init() {}

    /// The configuration shared by all the gateway's Kafka clients.
    func kafkaConfiguration(bootstrap: String) -> KafkaConfiguration {
        var configuration = KafkaConfiguration(["bootstrap.servers": bootstrap, "client.id": "streamgate-\(nodeID)"])
        for (key, value) in kafkaProperties { configuration[key] = value }
        return configuration
    }
}

/// Where a node's certificate chain and private key live (PEM).
public struct TLSFiles: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}
