import ArgumentParser
import Logging
import ServiceLifecycle
import StreamgateCore
import StreamgateKafka
import UnixSignals

/// `streamgate dev-kafka`: the in-memory development cluster in its own process.
struct DevKafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-kafka",
        abstract: "Run an in-memory development Kafka (not durable). Prints the bootstrap list as the first line.")

    @Option(help: "Number of brokers.") var brokerCount = 3
    @Option(help: "Partitions of the default topic streamgate.events.") var partitions = 12
    @Option(name: .customLong("topic"), help: "Another topic to create, NAME[:PARTITIONS] (repeatable).")
    var topics: [String] = []
    @Option(help: "Log level.") var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = LogSetup.bootstrap(level: logLevel)
        guard brokerCount >= 1, partitions >= 1 else { throw ValidationError("broker count and partitions must be positive") }
        // The default topic, then the others; a --topic naming the default topic sets its partitions.
        var created: [(name: String, partitions: Int)] = [(NamespaceMap.defaultTopic, partitions)]
        for topic in topics {
            let parts = topic.split(separator: ":", maxSplits: 1)
            let count = parts.count == 2 ? Int(parts[1]) : partitions
            guard let count, count >= 1, let name = parts.first, !name.isEmpty else {
                throw ValidationError("--topic takes NAME[:PARTITIONS], got \(topic)")
            }
            if let index = created.firstIndex(where: { $0.name == name }) {
                created[index].partitions = count
            } else {
                created.append((String(name), count))
            }
        }
        let cluster = try KafkaMockCluster(brokerCount: brokerCount)
        for topic in created { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        StandardOutput.line(cluster.bootstrapServers)
        logger.warning("development Kafka: \(brokerCount) in-memory brokers at \(cluster.bootstrapServers) — NOT DURABLE")
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: WaitForShutdown())], gracefulShutdownSignals: [.sigterm, .sigint],
                                 logger: logger))
        try await group.run()
        cluster.shutdown()
    }
}

/// A service that only waits for the graceful-shutdown signal.
struct WaitForShutdown: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}
