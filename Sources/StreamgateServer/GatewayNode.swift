import Logging
import ServiceLifecycle

/// A whole node: its services in the order a service group must run them.
public enum GatewayNode {
    /// The Kafka backend, then the edge. The group shuts them down in reverse order: the edge drains first,
    /// while the backend still produces and delivers; then the backend flushes and stops.
    ///
    /// Blocking: opens the Kafka handles (and the development cluster without brokers).
    public static func services(configuration: GatewayConfiguration, logger: Logger,
                                onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) throws
        -> [any Service]
    {
        let backend = try KafkaBackend(configuration: configuration, logger: logger)
        let server = GatewayServer(configuration: configuration, backend: backend, logger: logger, onListening: onListening)
        return [backend, server]
    }
}
