import Dispatch
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import StreamgateCore
import StreamgateKafka

/// The gateway's Kafka side: producer, delivery hub, look-ups, and — without brokers — an embedded
/// development cluster.
///
/// A service with an ordered life: creating it opens the handles and starts no thread; ``run()`` starts the
/// producer's report thread and the readers, refreshes metadata until a graceful shutdown, then stops
/// reading, flushes the producer and releases everything. Put it before the ``GatewayServer`` in the
/// service group: the group shuts services down in reverse order, so the server's drain (which still
/// produces and delivers) is over before the backend stops.
///
/// Metadata the edge needs on every subscribe or probe is kept here and refreshed by ``refresh()`` (called
/// periodically by the server): partition counts — so a topic that grows partitions moves its channels'
/// subscriptions instead of silently reading the old partition — and Kafka's reachability, so `/readyz`
/// costs no request.
public final class KafkaBackend: Service, Sendable {
    let producer: KafkaProducer
    let hub: DeliveryHub
    let lookup: KafkaPartitionLookup
    let resolver: StartResolver
    let embeddedCluster: KafkaMockCluster?
    /// The node's metrics (`GET /metrics`).
    let metrics: GatewayMetrics
    /// Spans of publishes and deliveries, when `--tracing log`.
    let tracer: LogTracer?
    let bootstrap: String
    private let partitionCounts = NIOLockedValueBox([String: Int]())
    private let reachability = NIOLockedValueBox<String?>("not checked yet")
    private let logger: Logger
    private let refreshInterval: Duration
    private let flushMilliseconds: Int32
    /// Where the blocking calls of ``run()`` go: never the cooperative pool.
    private let blocking = DispatchQueue(label: "streamgate.backend")

    /// Opens the Kafka handles (and creates the development cluster without brokers). Blocking.
    public init(configuration: GatewayConfiguration, logger: Logger) throws {
        self.logger = logger
        let metrics = GatewayMetrics()
        self.metrics = metrics
        let tracer = configuration.tracing == .log ? LogTracer(logger: logger) : nil
        self.tracer = tracer
        self.refreshInterval = .seconds(configuration.metadataRefreshSeconds)
        self.flushMilliseconds = Int32(configuration.drainSeconds * 1000)
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
        let hub = try DeliveryHub(configuration: kafka, lookup: lookup, metrics: metrics, tracer: tracer, logger: logger)
        self.hub = hub
        self.resolver = StartResolver(lookup: lookup, known: { hub.knownPosition($0) })
    }

    public func run() async throws {
        if embeddedCluster != nil {
            logger.warning(
                "DEVELOPMENT MODE: embedded in-memory Kafka at \(bootstrap) — NOT DURABLE, data is lost on exit; pass --brokers for a real cluster")
        }
        producer.start()
        hub.start()
        await onBlockingQueue { self.refresh() }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.refreshInterval)
                guard !Task.isCancelled else { break }
                await self.onBlockingQueue { self.refresh() }
            }
        }
        await onBlockingQueue { self.shutdown(flushMilliseconds: self.flushMilliseconds) }
    }

    private func onBlockingQueue(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            blocking.async {
                work()
                continuation.resume()
            }
        }
    }

    /// The partition count of `topic`, cached once known (``refresh()`` follows changes). Blocking on the
    /// first call for a topic.
    func partitionCount(topic: String) throws -> Int {
        if let known = partitionCounts.withLockedValue({ $0[topic] }) { return known }
        let count = try producer.partitionCount(topic: topic, timeoutMilliseconds: 5000)
        partitionCounts.withLockedValue { $0[topic] = $0[topic] ?? count }
        return count
    }

    /// Asks Kafka for the metadata the edge relies on: whether it answers, and the partition counts of the
    /// topics in use. A topic that grew moves the subscriptions whose channel now lives in another partition
    /// (their sessions re-subscribe from the earliest offset of the new partition and announce
    /// `repartitioned`). Blocking; run it periodically off event loops.
    func refresh() {
        let unreachable = producer.checkReachable(timeoutMilliseconds: 2000).map { "Kafka unreachable: \($0)" }
        reachability.withLockedValue { $0 = unreachable }
        guard unreachable == nil else { return }
        for topic in partitionCounts.withLockedValue({ Array($0.keys) }) {
            guard let count = try? producer.partitionCount(topic: topic, timeoutMilliseconds: 2000) else { continue }
            let previous = partitionCounts.withLockedValue { counts in
                defer { counts[topic] = count }
                return counts[topic]
            }
            guard let previous, count != previous else { continue }
            logger.notice("topic partition count changed; moving the subscriptions it affects", metadata: [
                "kafka.topic": "\(topic)", "partitions.before": "\(previous)", "partitions.after": "\(count)",
            ])
            for subscription in hub.subscriptions(topic: topic) {
                let partition = Murmur2Partitioner.partition(for: subscription.channel.value.utf8, partitionCount: count)
                if partition != subscription.partition {
                    subscription.outbox.notify(SubscriptionMovedEvent(subscription: subscription))
                }
            }
        }
    }

    /// Why the node is not ready, or `nil`: from the last ``refresh()`` and local state only (no request).
    func readiness() -> String? {
        if let fatal = producer.fatal { return "producer failed: \(fatal)" }
        if let unreachable = reachability.withLockedValue({ $0 }) { return unreachable }
        let stalled = hub.stalledPartitions(longerThan: .seconds(10))
        if !stalled.isEmpty {
            return "readers stalled on \(stalled.map { "\($0.topic)/\($0.partition)" }.joined(separator: ", "))"
        }
        return nil
    }

    /// Stops reading, flushes the producer (failing what cannot be delivered), and releases everything.
    /// Blocking.
    private func shutdown(flushMilliseconds: Int32) {
        hub.shutdown()
        producer.shutdown(timeoutMilliseconds: flushMilliseconds)
        lookup.shutdown()
        embeddedCluster?.shutdown()
    }
}
