import Logging
import NIOPosix
import StreamgateCore

/// What every connection of a node shares.
struct SessionEnvironment: Sendable {
    let configuration: GatewayConfiguration
    let backend: KafkaBackend
    let registry: ConnectionRegistry
    /// Runs blocking Kafka look-ups and reader assignment, never on an event loop.
    let blockingPool: NIOThreadPool
    let decoder: ClientFrameDecoder
    let logger: Logger
}
