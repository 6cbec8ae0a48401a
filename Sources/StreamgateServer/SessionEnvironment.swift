import Logging
import NIOPosix
import StreamgateCore

/// What every connection of a node shares.
struct SessionEnvironment: Sendable {
    let configuration: GatewayConfiguration
    let backend: KafkaBackend
    let registry: ConnectionRegistry
    /// Runs blocking Kafka look-ups (watermarks, metadata), never on an event loop.
    let blockingPool: NIOThreadPool
    /// Runs time-start searches (several reads each), apart from the quick look-ups.
    let searchPool: NIOThreadPool
    /// Whether the node is draining.
    let lifecycle: GatewayLifecycle
    let decoder: ClientFrameDecoder
    /// Verifies tokens; `nil` when the node runs without authentication.
    let verifier: TokenVerifier?
    let handshakePolicy: HandshakePolicy
    /// The per-loop sweeps that keep every connection's deadlines.
    let sweepers: LoopSweepers
    /// Bytes of fragmented messages being assembled, node-wide.
    let assemblyBudget: AssemblyBudget
    /// Where affinity channels live (PROTOCOL §9).
    let placement: ClusterPlacement
    /// The node's metrics (the backend's: the delivery path counts into them too).
    var metrics: GatewayMetrics { backend.metrics }
    let logger: Logger
}
