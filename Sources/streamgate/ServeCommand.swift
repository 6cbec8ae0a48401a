import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import StreamgateCore
import StreamgateServer
import UnixSignals

/// `streamgate serve`: a gateway node. Flags, then `STREAMGATE_*` environment variables, then defaults.
struct ServeCommand: AsyncParsableCommand {
    /// Every default comes from the configuration type, defined once there.
    private static let defaults = GatewayConfiguration()
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a gateway node (an embedded development Kafka when no brokers are given).",
        discussion: """
            Environment: STREAMGATE_BROKERS, STREAMGATE_HOST, STREAMGATE_PORT, STREAMGATE_NODE_ID, STREAMGATE_CONFIG \
            mirror the flags. When listening, one line `listening on HOST:PORT` goes to standard output.
            """)

    @Option(help: "Kafka bootstrap servers, HOST:PORT[,…]. Omitted: embedded in-memory development Kafka.")
    var brokers: String?
    @Option(help: "Address to listen on (default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on, 0 for any free port (default 8080).") var port: Int?
    @Option(name: .customLong("node-id"), help: "This node's id, written into records as sg-node.") var nodeID: String?
    @Option(help: "JSON file mapping namespaces to topics.") var config: String?
    @Option(help: "Largest publish payload in bytes (default \(Self.defaults.maxMessageBytes)).") var maxMessageBytes: Int?
    @Option(help: "Largest WebSocket message in bytes; larger closes with 1009 (default \(Self.defaults.maxFrameBytes)).")
    var maxFrameBytes: Int?
    @Option(help: "Producer linger.ms (default \(Self.defaults.lingerMilliseconds)).") var lingerMs: Int?
    @Option(help: "Outbound bytes queued per connection at which its subscriptions pause until half is written (default \(Self.defaults.slowConsumerBytes)).")
    var slowConsumerBytes: Int?
    @Option(help: "Seconds a connection with queued output may make no write progress before it is closed with 4008 (default \(Self.defaults.slowConsumerSeconds)).")
    var slowConsumerSeconds: Double?
    @Option(help: "Seconds a close may wait for the peer before the TCP connection is closed (default \(Self.defaults.closeTimeoutSeconds)).")
    var closeTimeoutSeconds: Double?
    @Option(help: "Publishes awaiting Kafka per connection before reading pauses (default \(Self.defaults.maxInFlightPerConnection)).")
    var maxInFlight: Int?
    @Option(help: "Payload bytes awaiting Kafka per connection before reading pauses (default \(Self.defaults.maxInFlightBytesPerConnection)).")
    var maxInFlightBytes: Int?
    @Option(help: "Subscriptions per connection (default \(Self.defaults.maxSubscriptionsPerConnection)).")
    var maxSubscriptions: Int?
    @Option(help: "Seconds a drain waits for in-flight publishes (default \(Self.defaults.drainSeconds)).") var drainSeconds: Int?
    @Option(help: "Partitions per topic of the embedded development Kafka (default \(Self.defaults.embeddedPartitions)).")
    var devPartitions: Int?
    @Option(name: .customLong("kafka"), help: "Extra librdkafka property key=value (repeatable).")
    var kafkaProperties: [String] = []
    @Option(help: "Log level.") var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = LogSetup.bootstrap(level: logLevel)
        let configuration = try makeConfiguration(environment: ProcessInfo.processInfo.environment)
        let services = try GatewayNode.services(configuration: configuration, logger: logger) { host, port in
            StandardOutput.line("listening on \(host):\(port)")
        }
        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) },
                                 gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    func makeConfiguration(environment: [String: String]) throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        configuration.brokers = brokers ?? environment["STREAMGATE_BROKERS"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.host = host ?? environment["STREAMGATE_HOST"] ?? configuration.host
        if let port = port ?? environment["STREAMGATE_PORT"].flatMap({ Int($0) }) { configuration.port = port }
        configuration.nodeID = nodeID ?? environment["STREAMGATE_NODE_ID"] ?? ProcessInfo.processInfo.hostName
        if let path = config ?? environment["STREAMGATE_CONFIG"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            configuration.namespaces = try NamespaceMap.parse(json: data)
            if configuration.namespaces.routes?.values.contains(where: { $0.mode == .affinity }) == true {
                throw ValidationError("mode \"affinity\" needs placement, which this build does not provide yet; use \"fanout\"")
            }
        }
        configuration.maxMessageBytes = maxMessageBytes ?? configuration.maxMessageBytes
        configuration.maxFrameBytes = maxFrameBytes ?? configuration.maxFrameBytes
        guard configuration.maxMessageBytes > 0, configuration.maxFrameBytes >= configuration.maxMessageBytes else {
            throw ValidationError("--max-frame-bytes must be at least --max-message-bytes, both positive")
        }
        configuration.lingerMilliseconds = lingerMs ?? configuration.lingerMilliseconds
        configuration.slowConsumerBytes = slowConsumerBytes ?? configuration.slowConsumerBytes
        configuration.slowConsumerSeconds = slowConsumerSeconds ?? configuration.slowConsumerSeconds
        configuration.closeTimeoutSeconds = closeTimeoutSeconds ?? configuration.closeTimeoutSeconds
        configuration.maxInFlightPerConnection = maxInFlight ?? configuration.maxInFlightPerConnection
        configuration.maxInFlightBytesPerConnection = maxInFlightBytes ?? configuration.maxInFlightBytesPerConnection
        configuration.maxSubscriptionsPerConnection = maxSubscriptions ?? configuration.maxSubscriptionsPerConnection
        configuration.drainSeconds = drainSeconds ?? configuration.drainSeconds
        configuration.embeddedPartitions = devPartitions ?? configuration.embeddedPartitions
        guard configuration.slowConsumerBytes > 0, configuration.slowConsumerSeconds > 0,
            configuration.closeTimeoutSeconds > 0, configuration.maxInFlightPerConnection > 0,
            configuration.maxInFlightBytesPerConnection > 0, configuration.maxSubscriptionsPerConnection > 0
        else { throw ValidationError("limits and time-outs must be positive") }
        for property in kafkaProperties {
            let parts = property.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--kafka takes key=value, got \(property)") }
            configuration.kafkaProperties[String(parts[0])] = String(parts[1])
        }
        return configuration
    }
}
