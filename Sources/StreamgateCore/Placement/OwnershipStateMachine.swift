/// This node's ownership of affinity partitions (PROTOCOL §9), decided from what etcd says (the
/// ``PlacementDirectory``), the node's lease deadline and the affinity partitions: which to claim, serve,
/// hand off and release. Pure and clock-generic; its owner performs the actions and reports back.
///
/// A partition is served iff etcd names this node its owner, this node's lease is locally valid (three
/// quarters of a TTL after the last renewal it *sent*, so always before etcd can expire it), the node does
/// not drain, and rendezvous hashing over the registered nodes still prefers it.
public struct OwnershipStateMachine<Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    public enum Action: Equatable, Sendable {
        /// Create the owner key under this node's lease, only if absent; report ``claimFinished(_:won:now:)``.
        case claim(PartitionKey)
        /// Delete the owner key if it still names this node; report ``releaseFinished(_:now:)``.
        case release(PartitionKey)
        case startServing(PartitionKey)
        /// Move the partition's connections toward `movedTo` (a node id; `nil` when none is known).
        case stopServing(PartitionKey, movedTo: String?)
    }

    public enum RouteDecision: Equatable, Sendable {
        case serveHere
        case redirect(nodeID: String, url: String)
        case unavailable
    }

    public let nodeID: String
    public let leaseTTL: Duration
    public private(set) var serving: Set<PartitionKey> = []
    public private(set) var draining = false
    private var deadline: Instant?
    private var leaseHeld = false
    private var directory: PlacementDirectory?
    private var partitions: Set<PartitionKey> = []
    private var claiming: Set<PartitionKey> = []
    private var releasing: Set<PartitionKey> = []
    private var released: Set<PartitionKey> = []
    /// Claims lost to another node, with the directory's revision then: not tried again until a newer
    /// directory shows the partition unowned.
    private var lost: [PartitionKey: Int64] = [:]

    public init(nodeID: String, leaseTTL: Duration) {
        self.nodeID = nodeID
        self.leaseTTL = leaseTTL
    }

    /// How often the lease is renewed.
    public var renewInterval: Duration { leaseTTL / 4 }

    /// How long after a renewal was sent the node may serve.
    public var localValidity: Duration { leaseTTL * 3 / 4 }

    public func isLeaseValid(now: Instant) -> Bool { deadline.map { now < $0 } ?? false }

    /// The partitions etcd names this node the owner of.
    public var owned: Set<PartitionKey> {
        Set(directory?.owners.filter { $0.value == nodeID }.map(\.key) ?? [])
    }

    /// Whether a drain is over: nothing served, claimed, being released or still owned.
    public var drained: Bool {
        draining && serving.isEmpty && claiming.isEmpty && releasing.isEmpty && owned.subtracting(released).isEmpty
    }

    // MARK: - Inputs

    public mutating func leaseGranted(sentAt: Instant) -> [Action] {
        leaseHeld = true
        deadline = sentAt.advanced(by: localValidity)
        lost.removeAll()
        return evaluate(now: sentAt)
    }

    public mutating func leaseRenewed(sentAt: Instant) -> [Action] {
        guard leaseHeld else { return [] }
        let candidate = sentAt.advanced(by: localValidity)
        if deadline.map({ candidate > $0 }) ?? true { deadline = candidate }
        return evaluate(now: sentAt)
    }

    /// etcd says the lease is gone: everything stops at once.
    public mutating func leaseLost() -> [Action] {
        leaseHeld = false
        deadline = nil
        claiming.removeAll()
        releasing.removeAll()
        released.removeAll()
        return evaluate(valid: false)
    }

    public mutating func directoryChanged(_ directory: PlacementDirectory, now: Instant) -> [Action] {
        self.directory = directory
        return evaluate(now: now)
    }

    public mutating func partitionsChanged(_ all: Set<PartitionKey>, now: Instant) -> [Action] {
        partitions = all
        return evaluate(now: now)
    }

    public mutating func claimFinished(_ partition: PartitionKey, won: Bool, now: Instant) -> [Action] {
        claiming.remove(partition)
        if !won { lost[partition] = directory?.revision ?? 0 }
        return evaluate(now: now)
    }

    public mutating func claimFailed(_ partition: PartitionKey, now: Instant) -> [Action] {
        claiming.remove(partition)
        return evaluate(now: now)
    }

    public mutating func releaseFinished(_ partition: PartitionKey, now: Instant) -> [Action] {
        releasing.remove(partition)
        released.insert(partition)
        return evaluate(now: now)
    }

    public mutating func tick(now: Instant) -> [Action] { evaluate(now: now) }

    /// Hand off everything and claim nothing more.
    public mutating func drain(now: Instant) -> [Action] {
        draining = true
        return evaluate(now: now)
    }

    /// Where an upgrade for `partition` goes at `now` (checked against the deadline even before a tick).
    public func decision(for partition: PartitionKey, now: Instant) -> RouteDecision {
        if serving.contains(partition), isLeaseValid(now: now) { return .serveHere }
        if let owner = directory?.owners[partition], owner != nodeID, let url = directory?.nodes[owner]?.url {
            return .redirect(nodeID: owner, url: url)
        }
        return .unavailable
    }

    // MARK: - Rules

    private mutating func evaluate(now: Instant) -> [Action] { evaluate(valid: isLeaseValid(now: now)) }

    private mutating func evaluate(valid: Bool) -> [Action] {
        guard let directory else {
            return serving.sorted().map { serving.remove($0); return .stopServing($0, movedTo: nil) }
        }
        let registered = leaseHeld && !draining && directory.nodes[nodeID] != nil
        var candidates = Set(directory.nodes.keys)
        if !registered { candidates.remove(nodeID) }
        let others = candidates.subtracting([nodeID])
        var actions: [Action] = []
        for partition in partitions.union(owned).union(serving).sorted() {
            let owner = directory.owners[partition]
            let desired = Rendezvous.owner(of: partition, among: candidates)
            if owner == nil, let since = lost[partition], directory.revision > since { lost[partition] = nil }
            if owner != nodeID { released.remove(partition) }
            let affinity = partitions.contains(partition)
            let shouldServe = owner == nodeID && valid && !draining && desired == nodeID && affinity
                && !released.contains(partition)
            if serving.contains(partition), !shouldServe {
                serving.remove(partition)
                let next = desired == nodeID || desired == nil ? Rendezvous.owner(of: partition, among: others) : desired
                actions.append(.stopServing(partition, movedTo: next))
            } else if !serving.contains(partition), shouldServe {
                serving.insert(partition)
                actions.append(.startServing(partition))
            }
            if owner == nodeID, leaseHeld, draining || desired != nodeID || !affinity,
                !releasing.contains(partition), !released.contains(partition)
            {
                releasing.insert(partition)
                actions.append(.release(partition))
            }
            if owner == nil, affinity, desired == nodeID, valid, registered, !claiming.contains(partition),
                lost[partition] == nil
            {
                claiming.insert(partition)
                actions.append(.claim(partition))
            }
        }
        return actions
    }
}
