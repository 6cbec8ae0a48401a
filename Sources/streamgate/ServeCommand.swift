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
            Environment: STREAMGATE_BROKERS, STREAMGATE_HOST, STREAMGATE_PORT, STREAMGATE_NODE_ID, STREAMGATE_CONFIG, \
            STREAMGATE_ETCD, STREAMGATE_PUBLIC_URL mirror the flags. When listening, one line `listening on HOST:PORT` goes to standard output.
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

    func makeConfiguration(environment: [String: String]) throws -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        configuration.brokers = brokers ?? environment["STREAMGATE_BROKERS"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.host = host ?? environment["STREAMGATE_HOST"] ?? configuration.host
        if let port = port ?? environment["STREAMGATE_PORT"].flatMap({ Int($0) }) { configuration.port = port }
        configuration.nodeID = nodeID ?? environment["STREAMGATE_NODE_ID"] ?? ProcessInfo.processInfo.hostName
        if let path = config ?? environment["STREAMGATE_CONFIG"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            configuration.namespaces = try NamespaceMap.parse(json: data)
        }
        if let endpoints = (etcd ?? environment["STREAMGATE_ETCD"]).flatMap({ $0.isEmpty ? nil : $0 }) {
            configuration.etcdEndpoints = endpoints.split(separator: ",").map { String($0) }
        }
        configuration.etcdPrefix = etcdPrefix ?? configuration.etcdPrefix
        configuration.publicURL = publicURL ?? environment["STREAMGATE_PUBLIC_URL"]
        configuration.leaseTTLSeconds = leaseTTL ?? configuration.leaseTTLSeconds
        try Self.validateCluster(configuration)
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
        switch (tlsCertificate, tlsKey) {
        case (let certificate?, let key?): configuration.tls = TLSFiles(certificatePath: certificate, keyPath: key)
        case (nil, nil): break
        default: throw ValidationError("--tls-cert and --tls-key go together")
        }
        configuration.jwtSecretFile = jwtSecretFile
        configuration.jwks = jwks
        configuration.jwksRefreshSeconds = jwksRefresh ?? configuration.jwksRefreshSeconds
        configuration.jwtIssuer = jwtIssuer
        configuration.jwtAudience = jwtAudience
        configuration.authTimeoutSeconds = authTimeout ?? configuration.authTimeoutSeconds
        configuration.publicNamespaces = Set(publicNamespaces)
        configuration.allowedOrigins = allowedOrigins.isEmpty ? nil : allowedOrigins
        configuration.pingIntervalSeconds = pingInterval ?? configuration.pingIntervalSeconds
        configuration.pingTimeoutSeconds = pingTimeout ?? configuration.pingTimeoutSeconds
        configuration.handshakeTimeoutSeconds = handshakeTimeout ?? configuration.handshakeTimeoutSeconds
        configuration.maxConnections = maxConnections ?? configuration.maxConnections
        configuration.publishRatePerSecond = publishRate ?? configuration.publishRatePerSecond
        configuration.publishBurst = publishBurst ?? configuration.publishBurst
        guard configuration.jwksRefreshSeconds > 0, configuration.authTimeoutSeconds > 0,
            configuration.pingIntervalSeconds > 0, configuration.pingTimeoutSeconds > 0,
            configuration.handshakeTimeoutSeconds > 0, configuration.maxConnections > 0,
            configuration.publishRatePerSecond > 0, configuration.publishBurst > 0
        else { throw ValidationError("time-outs, intervals, rates and limits must be positive") }
        for property in kafkaProperties {
            let parts = property.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--kafka takes key=value, got \(property)") }
            configuration.kafkaProperties[String(parts[0])] = String(parts[1])
        }
        return configuration
    }
}
