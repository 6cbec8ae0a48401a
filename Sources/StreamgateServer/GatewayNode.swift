import Logging
import NIOPosix
import ServiceLifecycle

/// A whole node: its services in the order a service group must run them.
public enum GatewayNode {
    /// The Kafka backend, the edge, and — in a cluster — the placement. The group shuts them down in reverse
    /// order: the placement hands its affinity partitions to their next owners first (their clients move
    /// while everything still runs), then the edge drains while the backend still produces and delivers;
    /// then the backend flushes and stops.
    ///
    /// Blocking: opens the Kafka handles (and the development cluster without brokers).
    public static func services(configuration: GatewayConfiguration, logger: Logger,
                                onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) throws
        -> [any Service]
    {
        let backend = try KafkaBackend(configuration: configuration, logger: logger)
        guard configuration.etcdEndpoints != nil else {
            let server = GatewayServer(configuration: configuration, backend: backend, logger: logger, onListening: onListening)
            return [backend, server]
        }
        let placement = ClusterPlacement(clustered: configuration)
        let registry = ConnectionRegistry()
        let server = GatewayServer(configuration: configuration, backend: backend, placement: placement,
                                   registry: registry, logger: logger, onListening: onListening)
        let membership = PlacementService(configuration: configuration, placement: placement, backend: backend,
                                          registry: registry, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                          logger: logger)
        return [backend, server, membership]
    }
}
