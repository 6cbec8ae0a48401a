import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import StreamgateCore
import StreamgateServer
import UnixSignals

/// `streamgate serve`: a gateway node. Flags, then `STREAMGATE_*` environment variables, then the
/// configuration file's `settings`, then defaults.
struct ServeCommand: AsyncParsableCommand {
    /// Every default comes from the configuration type, defined once there.
    private static let defaults = GatewayConfiguration()
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a gateway node (an embedded development Kafka when no brokers are given).",
        discussion: """
            Every flag has an environment variable, STREAMGATE_ and its name in upper case with _ for - \
            (STREAMGATE_MAX_CONNECTIONS), and a key of the same name in the "settings" object of the --config file \
            (STREAMGATE_CONFIG): a flag beats the environment, which beats the file. When listening, one line \
            `listening on HOST:PORT` goes to standard output.
            """)

    @Option(help: "Kafka bootstrap servers, HOST:PORT[,…]. Omitted: embedded in-memory development Kafka.")
    var brokers: String?
    @Option(help: "Address to listen on (default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on, 0 for any free port (default 8080).") var port: Int?
    @Option(name: .customLong("node-id"), help: "This node's id, written into records as sg-node.") var nodeID: String?
    @Option(help: "JSON file: \"namespaces\" (channels to topics) and \"settings\" (any flag by its name).") var config: String?
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

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve wss:// and https:// (with --tls-key). SIGHUP reloads it.")
    var tlsCertificate: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("jwt-secret-file"), help: "HMAC secret for HS256/384/512 tokens (at least 32 bytes). Enables authentication.")
    var jwtSecretFile: String?
    @Option(help: "JWKS file or http(s) URL for RS/PS/ES/EdDSA tokens, keys by kid. Enables authentication.")
    var jwks: String?
    @Option(name: .customLong("jwks-refresh"), help: "Seconds between JWKS fetches; a failed one keeps the last good keys (default \(Int(Self.defaults.jwksRefreshSeconds))).")
    var jwksRefresh: Double?
    @Option(name: .customLong("jwt-issuer"), help: "Required iss claim.") var jwtIssuer: String?
    @Option(name: .customLong("jwt-audience"), help: "Required aud claim member.") var jwtAudience: String?
    @Option(name: .customLong("auth-timeout"), help: "Seconds a connection without a header token has to send its auth frame (default \(Self.defaults.authTimeoutSeconds)).")
    var authTimeout: Double?
    @Option(name: .customLong("public-namespace"), help: "Namespace anyone may subscribe to without a token (repeatable).")
    var publicNamespaces: [String] = []
    @Option(name: .customLong("allowed-origin"), help: "Origin allowed to upgrade, * for any (repeatable); others get 403.")
    var allowedOrigins: [String] = []
    @Option(name: .customLong("ping-interval"), help: "Seconds between server pings (default \(Self.defaults.pingIntervalSeconds)).")
    var pingInterval: Double?
    @Option(name: .customLong("ping-timeout"), help: "Seconds of silence after a ping before closing with 4000 (default \(Self.defaults.pingTimeoutSeconds)).")
    var pingTimeout: Double?
    @Option(name: .customLong("handshake-timeout"), help: "Seconds a request head may take (default \(Self.defaults.handshakeTimeoutSeconds)).")
    var handshakeTimeout: Double?
    @Option(name: .customLong("max-connections"), help: "Open WebSocket connections per node; beyond, 503 (default \(Self.defaults.maxConnections)).")
    var maxConnections: Int?
    @Option(name: .customLong("publish-rate"), help: "Publishes per second per connection (default \(Int(Self.defaults.publishRatePerSecond))).")
    var publishRate: Double?
    @Option(name: .customLong("publish-burst"), help: "Publishes a connection may send at once above the rate (default \(Self.defaults.publishBurst)).")
    var publishBurst: Int?
    @Option(help: "etcd client URLs, http://HOST:2379[,…]: join the cluster (placement of affinity namespaces).")
    var etcd: String?
    @Option(name: .customLong("etcd-prefix"), help: "Key prefix of the cluster in etcd (default \(Self.defaults.etcdPrefix)).")
    var etcdPrefix: String?
    @Option(name: .customLong("public-url"), help: "This node's URL for clients, wss://serverN.example.com (needed with --etcd).")
    var publicURL: String?
    @Option(name: .customLong("lease-ttl"), help: "Seconds of the node's etcd lease: a crashed node's partitions move within it (default \(Self.defaults.leaseTTLSeconds)).")
    var leaseTTL: Int?
    @Option(help: "Log level (default info).") var logLevel: Logger.Level?
    @Option(help: "Spans of publishes and deliveries: off, or log (one info line per span, W3C trace context) (default off).")
    var tracing: String?

    /// Every setting: a flag, `STREAMGATE_<NAME>` in the environment, or a key of the configuration file's
    /// `settings` object (flag > environment > file > default).
    static let settingNames: Set<String> = [
        "brokers", "host", "port", "node-id", "max-message-bytes", "max-frame-bytes", "linger-ms",
        "slow-consumer-bytes", "slow-consumer-seconds", "close-timeout-seconds", "max-in-flight", "max-in-flight-bytes",
        "max-subscriptions", "drain-seconds", "dev-partitions", "kafka", "tls-cert", "tls-key", "jwt-secret-file", "jwks",
        "jwks-refresh", "jwt-issuer", "jwt-audience", "auth-timeout", "public-namespace", "allowed-origin",
        "ping-interval", "ping-timeout", "handshake-timeout", "max-connections", "publish-rate", "publish-burst", "etcd",
        "etcd-prefix", "public-url", "lease-ttl", "log-level", "tracing",
    ]

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let file = try configurationFile(environment: environment)
        let settings = try SettingsSource(names: Self.settingNames, environment: environment, configurationFile: file)
        let level = try logLevel ?? settings.string("log-level").map { text in
            guard let level = Logger.Level(rawValue: text) else {
                throw ValidationError("log-level is one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \(text)")
            }
            return level
        } ?? .info
        let logger = LogSetup.bootstrap(level: level)
        let configuration = try makeConfiguration(settings: settings, file: file)
        let services = try GatewayNode.services(configuration: configuration, logger: logger) { host, port in
            StandardOutput.line("listening on \(host):\(port)")
        }
        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) },
                                 gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    static func validateCluster(_ configuration: GatewayConfiguration) throws {
        let affinity = configuration.namespaces.affinityTopics
        guard let endpoints = configuration.etcdEndpoints else {
            if !affinity.isEmpty {
                throw ValidationError("mode \"affinity\" needs the cluster's placement: pass --etcd http://HOST:2379 (and --public-url), or use \"fanout\"")
            }
            return
        }
        for endpoint in endpoints where !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
            throw ValidationError("--etcd takes http(s)://HOST:PORT URLs, got \(endpoint)")
        }
        guard let url = configuration.publicURL, url.hasPrefix("ws://") || url.hasPrefix("wss://") else {
            throw ValidationError("--etcd needs --public-url ws(s)://…: the URL clients reach this node at")
        }
        guard PlacementKeys.isValidNodeID(configuration.nodeID) else {
            throw ValidationError("--node-id must be 1-64 of [A-Za-z0-9._-] in a cluster, got \(configuration.nodeID)")
        }
        guard configuration.leaseTTLSeconds >= 2 else { throw ValidationError("--lease-ttl must be at least 2 seconds") }
        guard configuration.etcdPrefix.hasPrefix("/") else { throw ValidationError("--etcd-prefix must start with /") }
    }

    /// The configuration file (`--config` or `STREAMGATE_CONFIG`), read once.
    private func configurationFile(environment: [String: String]) throws -> Data? {
        guard let path = config ?? environment["STREAMGATE_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("cannot read the configuration file \(path): \(error.localizedDescription)")
        }
    }

    /// The configuration: each setting from its flag, else from `settings` (environment, then `file`).
    func makeConfiguration(settings: SettingsSource, file: Data?) throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        configuration.brokers = try brokers ?? settings.string("brokers")
        configuration.host = try host ?? settings.string("host") ?? configuration.host
        if let port = try port ?? settings.int("port") { configuration.port = port }
        configuration.nodeID = try nodeID ?? settings.string("node-id") ?? ProcessInfo.processInfo.hostName
        if let file, try NamespaceMap.hasNamespaces(json: file) {
            configuration.namespaces = try NamespaceMap.parse(json: file)
        }
        if let endpoints = try etcd ?? settings.string("etcd"), !endpoints.isEmpty {
            configuration.etcdEndpoints = endpoints.split(separator: ",").map { String($0) }
        }
        configuration.etcdPrefix = try etcdPrefix ?? settings.string("etcd-prefix") ?? configuration.etcdPrefix
        configuration.publicURL = try publicURL ?? settings.string("public-url")
        configuration.leaseTTLSeconds = try leaseTTL ?? settings.int("lease-ttl") ?? configuration.leaseTTLSeconds
        if let mode = try tracing ?? settings.string("tracing") {
            guard let parsed = GatewayConfiguration.TracingMode(rawValue: mode) else {
                throw ValidationError("tracing is off or log, got \(mode)")
            }
            configuration.tracing = parsed
        }
        try Self.validateCluster(configuration)
        configuration.maxMessageBytes = try maxMessageBytes ?? settings.int("max-message-bytes") ?? configuration.maxMessageBytes
        configuration.maxFrameBytes = try maxFrameBytes ?? settings.int("max-frame-bytes") ?? configuration.maxFrameBytes
        guard configuration.maxMessageBytes > 0, configuration.maxFrameBytes >= configuration.maxMessageBytes else {
            throw ValidationError("--max-frame-bytes must be at least --max-message-bytes, both positive")
        }
        configuration.lingerMilliseconds = try lingerMs ?? settings.int("linger-ms") ?? configuration.lingerMilliseconds
        configuration.slowConsumerBytes = try slowConsumerBytes ?? settings.int("slow-consumer-bytes") ?? configuration.slowConsumerBytes
        configuration.slowConsumerSeconds = try slowConsumerSeconds ?? settings.double("slow-consumer-seconds") ?? configuration.slowConsumerSeconds
        configuration.closeTimeoutSeconds = try closeTimeoutSeconds ?? settings.double("close-timeout-seconds") ?? configuration.closeTimeoutSeconds
        configuration.maxInFlightPerConnection = try maxInFlight ?? settings.int("max-in-flight") ?? configuration.maxInFlightPerConnection
        configuration.maxInFlightBytesPerConnection = try maxInFlightBytes ?? settings.int("max-in-flight-bytes") ?? configuration.maxInFlightBytesPerConnection
        configuration.maxSubscriptionsPerConnection = try maxSubscriptions ?? settings.int("max-subscriptions") ?? configuration.maxSubscriptionsPerConnection
        configuration.drainSeconds = try drainSeconds ?? settings.int("drain-seconds") ?? configuration.drainSeconds
        configuration.embeddedPartitions = try devPartitions ?? settings.int("dev-partitions") ?? configuration.embeddedPartitions
        guard configuration.slowConsumerBytes > 0, configuration.slowConsumerSeconds > 0,
            configuration.closeTimeoutSeconds > 0, configuration.maxInFlightPerConnection > 0,
            configuration.maxInFlightBytesPerConnection > 0, configuration.maxSubscriptionsPerConnection > 0
        else { throw ValidationError("limits and time-outs must be positive") }
        switch (try tlsCertificate ?? settings.string("tls-cert"), try tlsKey ?? settings.string("tls-key")) {
        case (let certificate?, let key?): configuration.tls = TLSFiles(certificatePath: certificate, keyPath: key)
        case (nil, nil): break
        default: throw ValidationError("--tls-cert and --tls-key go together")
        }
        configuration.jwtSecretFile = try jwtSecretFile ?? settings.string("jwt-secret-file")
        configuration.jwks = try jwks ?? settings.string("jwks")
        configuration.jwksRefreshSeconds = try jwksRefresh ?? settings.double("jwks-refresh") ?? configuration.jwksRefreshSeconds
        configuration.jwtIssuer = try jwtIssuer ?? settings.string("jwt-issuer")
        configuration.jwtAudience = try jwtAudience ?? settings.string("jwt-audience")
        configuration.authTimeoutSeconds = try authTimeout ?? settings.double("auth-timeout") ?? configuration.authTimeoutSeconds
        configuration.publicNamespaces = Set(try publicNamespaces.isEmpty ? settings.list("public-namespace") : publicNamespaces)
        let origins = try allowedOrigins.isEmpty ? settings.list("allowed-origin") : allowedOrigins
        configuration.allowedOrigins = origins.isEmpty ? nil : origins
        configuration.pingIntervalSeconds = try pingInterval ?? settings.double("ping-interval") ?? configuration.pingIntervalSeconds
        configuration.pingTimeoutSeconds = try pingTimeout ?? settings.double("ping-timeout") ?? configuration.pingTimeoutSeconds
        configuration.handshakeTimeoutSeconds = try handshakeTimeout ?? settings.double("handshake-timeout") ?? configuration.handshakeTimeoutSeconds
        configuration.maxConnections = try maxConnections ?? settings.int("max-connections") ?? configuration.maxConnections
        configuration.publishRatePerSecond = try publishRate ?? settings.double("publish-rate") ?? configuration.publishRatePerSecond
        configuration.publishBurst = try publishBurst ?? settings.int("publish-burst") ?? configuration.publishBurst
        guard configuration.jwksRefreshSeconds > 0, configuration.authTimeoutSeconds > 0,
            configuration.pingIntervalSeconds > 0, configuration.pingTimeoutSeconds > 0,
            configuration.handshakeTimeoutSeconds > 0, configuration.maxConnections > 0,
            configuration.publishRatePerSecond > 0, configuration.publishBurst > 0
        else { throw ValidationError("time-outs, intervals, rates and limits must be positive") }
        for property in try kafkaProperties.isEmpty ? settings.list("kafka") : kafkaProperties {
            let parts = property.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--kafka takes key=value, got \(property)") }
            configuration.kafkaProperties[String(parts[0])] = String(parts[1])
        }
        return configuration
    }
}
