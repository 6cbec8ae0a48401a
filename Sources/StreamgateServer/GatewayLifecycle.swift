import Synchronization

/// Where the node is in its life, read by every connection (readiness and upgrades refuse while draining).
final class GatewayLifecycle: Sendable {
    private let drainingFlag = Atomic<Bool>(false)

    /// Whether the node stopped taking new work.
    var isDraining: Bool { drainingFlag.load(ordering: .acquiring) }

    func beginDrain() { drainingFlag.store(true, ordering: .releasing) }
}
