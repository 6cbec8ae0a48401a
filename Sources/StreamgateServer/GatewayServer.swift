import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import StreamgateCore
import StreamgateKafka
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// A gateway node's edge as a service: it binds, serves WebSocket and HTTP clients until a graceful
/// shutdown, then drains (stops accepting, answers in-flight publishes, closes clients with 1001). Kafka is
/// the ``KafkaBackend``'s, a service of its own that outlives the drain (``GatewayNode/services``).
public final class GatewayServer: Service {
    private let configuration: GatewayConfiguration
    private let backend: KafkaBackend
    private let placement: ClusterPlacement
    private let registry: ConnectionRegistry
    private let logger: Logger
    private let onListening: @Sendable (String, Int) -> Void

    /// - Parameters:
    ///   - onListening: called once bound, with the host and the actual port.
    public convenience init(configuration: GatewayConfiguration, backend: KafkaBackend, logger: Logger,
                            onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) {
        self.init(configuration: configuration, backend: backend,
                  placement: ClusterPlacement(standalone: configuration), registry: ConnectionRegistry(), logger: logger,
                  onListening: onListening)
    }

    init(configuration: GatewayConfiguration, backend: KafkaBackend, placement: ClusterPlacement,
         registry: ConnectionRegistry, logger: Logger, onListening: @escaping @Sendable (String, Int) -> Void) {
        self.configuration = configuration
        self.backend = backend
        self.placement = placement
        self.registry = registry
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let configuration = self.configuration
        let backend = self.backend
        let tls = try configuration.tls.map { try TLSContextStore(files: $0) }
        let verifier = try await Self.makeVerifier(configuration, logger: logger)
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        let searchPool = NIOThreadPool(numberOfThreads: 2)
        searchPool.start()
        if verifier == nil {
            logger.warning("ANONYMOUS ACCESS: authentication is not enabled; every client publishes as \"anonymous\"")
        }
        if tls == nil {
            logger.warning("PLAIN TEXT: no --tls-cert/--tls-key; serve behind a TLS-terminating proxy or on a trusted network only")
        }
        let environment = SessionEnvironment(
            configuration: configuration, backend: backend, registry: registry, blockingPool: pool,
            searchPool: searchPool, lifecycle: GatewayLifecycle(),
            decoder: ClientFrameDecoder(maxPayloadBytes: configuration.maxMessageBytes), verifier: verifier,
            handshakePolicy: HandshakePolicy(allowedOrigins: configuration.allowedOrigins),
            sweepers: LoopSweepers(interval: configuration.sweepInterval),
            assemblyBudget: AssemblyBudget(limit: configuration.maxAssemblingBytes), placement: placement, logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let server: any Channel
        do {
            server = try await Self.bootstrap(group: group, environment: environment, tls: tls)
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
            try await group.shutdownGracefully()
            try await pool.shutdownGracefully()
            try await searchPool.shutdownGracefully()
            throw error
        }
        let port = server.localAddress?.port ?? configuration.port
        logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port)",
                                            "tls": "\(tls != nil)", "auth": "\(verifier != nil)"])
        placement.bound(host: configuration.host, port: port, tls: tls != nil)
        onListening(configuration.host, port)

        let reloads = Task { await Self.reloadOnHangUp(tls: tls, verifier: verifier, logger: logger) }
        let refresher = Task { await verifier?.runRefresh() }
        try? await gracefulShutdown()
        reloads.cancel()
        refresher.cancel()

        logger.info("draining", metadata: ["connections": "\(environment.registry.count)"])
        environment.lifecycle.beginDrain()
        try? await server.close()
        await drain(environment)
        try await group.shutdownGracefully()
        try await pool.shutdownGracefully()
        try await searchPool.shutdownGracefully()
        logger.info("stopped")
    }

    private static func makeVerifier(_ configuration: GatewayConfiguration, logger: Logger) async throws -> TokenVerifier? {
        guard configuration.authenticationEnabled else { return nil }
        return try await TokenVerifier(policy: TokenPolicy(configuration: configuration), logger: logger)
    }

    /// SIGHUP loads the certificate files and the JWKS again; open connections keep what they have.
    private static func reloadOnHangUp(tls: TLSContextStore?, verifier: TokenVerifier?, logger: Logger) async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            if let tls {
                if let error = tls.reload() {
                    logger.error("TLS reload failed; keeping the current certificate", metadata: ["error": "\(error)"])
                } else {
                    logger.notice("TLS certificate reloaded")
                }
            }
            if let verifier {
                let accepted = await verifier.reloadJWKS()
                logger.notice("token keys reloaded", metadata: ["accepted": "\(accepted)"])
            }
        }
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

    private static func bootstrap(group: any EventLoopGroup, environment: SessionEnvironment,
                                  tls: TLSContextStore?) -> ServerBootstrap {
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
                    try configurePipeline(channel, environment: environment, tls: tls)
                }
            }
    }

    /// TLS (when configured) → head bounds → HTTP/1.1 → handshake gate → upgrader → plain routes. On upgrade
    /// the HTTP handlers leave and the frame guard and the session take over.
    private static func configurePipeline(_ channel: any Channel, environment: SessionEnvironment,
                                          tls: TLSContextStore?) throws {
        let configuration = environment.configuration
        let pipeline = channel.pipeline.syncOperations
        if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls.context)) }
        let admission = NIOLoopBound(UpgradeAdmission(), eventLoop: channel.eventLoop)
        let headGuard = RequestHeadGuard(
            maxHeadBytes: HandshakeRules.maxHeadBytes,
            timeout: .milliseconds(Int64(configuration.handshakeTimeoutSeconds * 1000)), sweepers: environment.sweepers)
        let httpHandler = HTTPGatewayHandler(environment: environment)
        let boundHTTPHandler = NIOLoopBound(httpHandler, eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            // The session answers decoder errors itself, closing without resetting the connection.
            automaticErrorHandling: false,
            shouldUpgrade: { channel, _ in
                guard let admitted = admission.value.admitted else { return channel.eventLoop.makeSucceededFuture(nil) }
                var headers = HTTPHeaders()
                if let subprotocol = admitted.subprotocol { headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let admitted = admission.value.admitted else {
                        throw HTTPRoute.Rejection(status: .badRequest, message: "upgrade not admitted")
                    }
                    admission.value.admitted = nil
                    // The session gives the connection's places back when it goes.
                    admission.value.holdsPlace = false
                    admission.value.heldPeer = nil
                    let (bound, start): (ChannelName?, StartPosition) =
                        switch admitted.target {
                        case .multiplexed: (nil, .latest)
                        case .bound(let channel, let start): (channel, start)
                        }
                    let activity = InboundActivity()
                    try channel.pipeline.syncOperations.addHandlers([
                        WebSocketFrameGuard(maxMessageBytes: configuration.maxFrameBytes, maxFragments: 4096,
                                            budget: environment.assemblyBudget, activity: activity),
                        WebSocketSession(environment: environment, connectionID: ConnectionID.next(),
                                         boundChannel: bound, boundStart: start, identity: admitted.identity,
                                         affinity: admitted.affinity, activity: activity),
                    ])
                }
            })
        let responseEncoder = HTTPResponseEncoder()
        let requestDecoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        let pipelining = HTTPServerPipelineHandler()
        let errors = HTTPServerProtocolErrorHandler()
        let gate = HandshakeGate(environment: environment, admission: admission.value)
        let upgradeHandler = HTTPServerUpgradeHandler(
            upgraders: [upgrader], httpEncoder: responseEncoder,
            extraHTTPHandlers: [headGuard, requestDecoder, pipelining, errors, gate],
            upgradeCompletionHandler: { context in
                context.pipeline.syncOperations.removeHandler(boundHTTPHandler.value, promise: nil)
            })
        try pipeline.addHandlers([headGuard, responseEncoder, requestDecoder, pipelining, errors, gate, upgradeHandler,
                                  httpHandler])
    }
}

/// Connection ids: unique per process start, short, and safe in headers and logs.
enum ConnectionID {
    private static let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private static let counter = ProcessCounter()

    static func next() -> String { "\(prefix)-\(String(counter.next(), radix: 36))" }
}
