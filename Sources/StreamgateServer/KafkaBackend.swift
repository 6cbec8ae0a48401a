import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka

/// The gateway's Kafka side: producer, delivery hub, look-ups, and — without brokers — an embedded
/// development cluster.
final class KafkaBackend: Sendable {
    let producer: KafkaProducer
    let hub: DeliveryHub
    let lookup: KafkaPartitionLookup
    let resolver: StartResolver
    let embeddedCluster: KafkaMockCluster?
    let bootstrap: String
    private let partitionCounts = NIOLockedValueBox([String: Int]())
    private let logger: Logger

    init(configuration: GatewayConfiguration, logger: Logger) throws {
        self.logger = logger
        if let brokers = configuration.brokers {
            self.embeddedCluster = nil
            self.bootstrap = brokers
        } else {
            let cluster = try KafkaMockCluster(brokerCount: 1)
            for topic in configuration.namespaces.topics {
                try cluster.createTopic(topic, partitions: configuration.embeddedPartitions)
            }
            self.embeddedCluster = cluster
            self.bootstrap = cluster.bootstrapServers
        }
        var kafka = configuration.kafkaConfiguration(bootstrap: bootstrap)
        var producerConfiguration = kafka
        producerConfiguration["linger.ms"] = producerConfiguration["linger.ms"] ?? String(configuration.lingerMilliseconds)
        producerConfiguration["message.timeout.ms"] = producerConfiguration["message.timeout.ms"] ?? "30000"
        producerConfiguration["allow.auto.create.topics"] = "false"
        self.producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        kafka["fetch.error.backoff.ms"] = kafka["fetch.error.backoff.ms"] ?? "100"
        // Real brokers answer a fetch as soon as data arrives; the development cluster only after this wait,
        // so it bounds delivery latency there (and the cost of a read that reaches the end). 10 ms costs an
        // idle broker about 100 small requests a second per reader.
        kafka["fetch.wait.max.ms"] = kafka["fetch.wait.max.ms"] ?? "10"
        self.lookup = try KafkaPartitionLookup(configuration: kafka)
        let hub = try DeliveryHub(configuration: kafka, lookup: lookup, logger: logger)
        self.hub = hub
        self.resolver = StartResolver(lookup: lookup, cachedWatermarks: { hub.cachedWatermarks($0) })
    }

    /// The partition count of `topic`, cached once known. Blocking on the first call.
    func partitionCount(topic: String) throws -> Int {
        if let known = partitionCounts.withLockedValue({ $0[topic] }) { return known }
        let count = try producer.partitionCount(topic: topic, timeoutMilliseconds: 5000)
        partitionCounts.withLockedValue { $0[topic] = count }
        return count
    }

    /// Whether Kafka answers and the producer is healthy. Blocking.
    func readiness() -> String? {
        if let fatal = producer.fatal { return "producer failed: \(fatal)" }
        if let error = producer.checkReachable(timeoutMilliseconds: 2000) { return "Kafka unreachable: \(error)" }
        return nil
    }

    /// Stops reading, flushes the producer (failing what cannot be delivered), and releases everything.
    /// Blocking.
    func shutdown(flushMilliseconds: Int32) {
        hub.shutdown()
        producer.shutdown(timeoutMilliseconds: flushMilliseconds)
        lookup.shutdown()
        embeddedCluster?.shutdown()
    }
}
