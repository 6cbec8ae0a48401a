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

    public init() {}

    /// The configuration shared by all the gateway's Kafka clients.
    func kafkaConfiguration(bootstrap: String) -> KafkaConfiguration {
        var configuration = KafkaConfiguration(["bootstrap.servers": bootstrap, "client.id": "streamgate-\(nodeID)"])
        for (key, value) in kafkaProperties { configuration[key] = value }
        return configuration
    }
}
