import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ServiceLifecycle
import StreamgateCore
import StreamgateKafka

#if canImport(Glibc)
import Glibc
#endif

/// A gateway node's edge as a service: it binds, serves WebSocket and HTTP clients until a graceful
/// shutdown, then drains (stops accepting, answers in-flight publishes, closes clients with 1001). Kafka is
/// the ``KafkaBackend``'s, a service of its own that outlives the drain (``GatewayNode/services``).
public final class GatewayServer: Service {
    private let configuration: GatewayConfiguration
    private let backend: KafkaBackend
    private let logger: Logger
    private let onListening: @Sendable (String, Int) -> Void

    /// - Parameters:
    ///   - onListening: called once bound, with the host and the actual port.
    public init(configuration: GatewayConfiguration, backend: KafkaBackend, logger: Logger,
                onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) {
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let configuration = self.configuration
        let backend = self.backend
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        let searchPool = NIOThreadPool(numberOfThreads: 2)
        searchPool.start()
        logger.warning("ANONYMOUS ACCESS: authentication is not enabled; every client publishes as \"anonymous\"")
        let environment = SessionEnvironment(
            configuration: configuration, backend: backend, registry: ConnectionRegistry(), blockingPool: pool,
            searchPool: searchPool, lifecycle: GatewayLifecycle(), decoder: ClientFrameDecoder(maxPayloadBytes: configuration.maxMessageBytes), logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let server: any Channel
        do {
            server = try await Self.bootstrap(group: group, environment: environment)
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
            try await group.shutdownGracefully()
            try await pool.shutdownGracefully()
            try await searchPool.shutdownGracefully()
            throw error
        }
        let port = server.localAddress?.port ?? configuration.port
        logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        onListening(configuration.host, port)

        try? await gracefulShutdown()

        logger.info("draining", metadata: ["connections": "\(environment.registry.count)"])
        environment.lifecycle.beginDrain()
        try? await server.close()
        await drain(environment)
        try await group.shutdownGracefully()
        try await pool.shutdownGracefully()
        try await searchPool.shutdownGracefully()
        logger.info("stopped")
    }

    /// Stops reading from clients, waits for their in-flight publishes to be answered (failing them after
    /// the drain time), then closes every client with 1001.
    private func drain(_ environment: SessionEnvironment) async {
        let registry = environment.registry
        registry.broadcast(.beginDrain)
        if await !registry.inFlight.waitForZero(timeout: .seconds(configuration.drainSeconds)) {
            logger.warning("drain time is over; failing in-flight publishes", metadata: ["in_flight": "\(registry.inFlight.value)"])
            environment.backend.producer.purge()
            _ = await registry.inFlight.waitForZero(timeout: .seconds(5))
        }
        registry.broadcast(.closeForDrain)
        _ = await registry.waitUntilEmpty(timeout: .seconds(3))
    }

    private static func bootstrap(group: any EventLoopGroup, environment: SessionEnvironment) -> ServerBootstrap {
        let configuration = environment.configuration
        let slow = configuration.slowConsumerBytes
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // The socket's own buffer stays small: data waits in each connection's outbox, where a close can
            // drop it instead of queueing behind it.
            .childChannelOption(.writeBufferWaterMark, value: .init(low: min(slow / 4, 32 * 1024), high: min(slow / 2, 128 * 1024)))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configurePipeline(channel, environment: environment)
                }
            }
    }

    private static func configurePipeline(_ channel: any Channel, environment: SessionEnvironment) throws {
        let configuration = environment.configuration
        let namespaces = configuration.namespaces
        let httpHandler = HTTPGatewayHandler(environment: environment)
        let boundHTTPHandler = NIOLoopBound(httpHandler, eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                guard case .websocket(.success(let accepted)) = HTTPRoute.classify(head, namespaces: namespaces),
                    !environment.lifecycle.isDraining
                else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                var headers = HTTPHeaders()
                if let subprotocol = accepted.subprotocol { headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    guard case .websocket(.success(let accepted)) = HTTPRoute.classify(head, namespaces: namespaces) else {
                        throw HTTPRoute.Rejection(status: .badRequest, message: "upgrade no longer valid")
                    }
                    let (bound, start): (ChannelName?, StartPosition) =
                        switch accepted.target {
                        case .multiplexed: (nil, .latest)
                        case .bound(let channel, let start): (channel, start)
                        }
                    try channel.pipeline.syncOperations.addHandlers([
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096,
                            maxAccumulatedFrameSize: configuration.maxFrameBytes),
                        WebSocketSession(environment: environment, connectionID: ConnectionID.next(),
                                         boundChannel: bound, boundStart: start),
                    ])
                }
            })
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(boundHTTPHandler.value, promise: nil)
            }))
        try channel.pipeline.syncOperations.addHandler(httpHandler)
    }
}

/// Connection ids: unique per process start, short, and safe in headers and logs.
enum ConnectionID {
    private static let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private static let counter = ProcessCounter()

    static func next() -> String { "\(prefix)-\(String(counter.next(), radix: 36))" }
}
