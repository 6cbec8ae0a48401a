import CRDKafka
import Logging

/// librdkafka's in-memory mock cluster: real Kafka-protocol brokers on loopback, for development and tests.
///
/// It keeps data in memory only, has no replication, and prunes each partition's oldest data past about
/// 5 MiB, which moves the log-start offset.
///
/// - Important: `@unchecked Sendable` because the cluster runs on librdkafka's own threads and its
///   functions are thread-safe. Call ``shutdown()`` once.
public final class KafkaMockCluster: @unchecked Sendable {
    private let owner: OpaquePointer
    private let cluster: OpaquePointer

    /// The brokers' `bootstrap.servers` list (loopback addresses).
    public let bootstrapServers: String

    /// Starts `brokerCount` brokers on loopback ports chosen by the system.
    public init(brokerCount: Int) throws {
        let conf = try KafkaConfiguration(["log_level": "3"]).makeNative()
        self.owner = try makeKafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf)
        guard let cluster = rd_kafka_mock_cluster_new(owner, Int32(brokerCount)) else {
            rd_kafka_destroy(owner)
            throw KafkaError.invalidArgument("cannot start a mock cluster with \(brokerCount) brokers")
        }
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Creates a topic (the mock answers no CreateTopics request).
    public func createTopic(_ name: String, partitions: Int) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, message: "creating topic \(name)") }
    }

    /// Stops the brokers and frees the cluster.
    public func shutdown() {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(owner)
    }
}
