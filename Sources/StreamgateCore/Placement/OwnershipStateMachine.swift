/// This node's ownership of the affinity partitions (PROTOCOL §9): which to claim, serve, hand off and
/// release, decided from what etcd says (a ``PlacementDirectory``), this node's lease and the affinity
/// partitions. Pure and clock-generic: its owner performs the ``Action``s and reports their results back.
///
/// The rules:
/// - The *desired* owner of a partition is ``Rendezvous/owner(of:among:)`` over the registered nodes. This
///   node is a candidate only while it holds a lease, its own node key is in the directory, and it does not
///   drain.
/// - The lease is *locally valid* until three quarters of a TTL after the send time of the last successful
///   grant or renewal. etcd counts its TTL from when it received the request, which is later, so the local
///   deadline always falls at least a quarter TTL before etcd can expire the lease and let another node
///   claim.
/// - This node serves a partition iff etcd's owner of it is this node, by a claim this node won under its
///   current lease; the lease is locally valid; the node does not drain; and this node is the desired owner.
/// - It claims (create-if-absent) a partition that etcd shows unowned when it is the desired owner, its lease
///   is locally valid and it does not drain. A lost claim is not tried again until the directory shows the
///   partition unowned at a newer revision; a failed one (an etcd error) is tried again after
///   ``retryDelay``.
/// - It releases (delete-if-mine) a partition it owns when another node is now desired (a node joined, or
///   this node left the directory) or it drains, after it stopped serving it. It also releases any owner key
///   naming it that it did not win under its current lease (left over from an earlier lease, or from a claim
///   whose answer was lost).
/// - When the local deadline passes it stops serving everything, without releasing: a renewal that succeeds
///   in time (etcd still holding the keys) resumes serving. When etcd says the lease is gone, everything stops
///   and nothing is claimed until a new lease is granted.
///
/// Every input takes the time it happened at; the machine judges the lease at the latest time it has seen,
/// so a late report never revives an expired lease. ``decision(for:now:)`` checks the deadline itself, so a
/// node that wakes from a pause refuses before its next tick.
///
/// - Important: report only results of requests made under the current lease: a claim's or release's result
///   that arrives after ``leaseLost()`` or a new ``leaseGranted(sentAt:)`` must be dropped by the owner
///   (results for partitions with no request in flight are ignored here).
public struct OwnershipStateMachine<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What the owner of the machine does.
    public enum Action: Hashable, Sendable {
        /// Create the partition's owner key with this node's id under this node's lease, only if it is absent;
        /// report ``claimFinished(_:won:now:)`` or ``claimFailed(_:now:)``.
        case claim(PartitionKey)
        /// Delete the partition's owner key if it still names this node; report ``releaseFinished(_:now:)`` or
        /// ``releaseFailed(_:now:)``. Always follows the partition's ``stopServing(_:movedTo:)``, if it was
        /// served.
        case release(PartitionKey)
        /// Serve the partition: accept its connections, read it from Kafka.
        case startServing(PartitionKey)
        /// Stop serving the partition: move its connections toward node `movedTo` (`nil` when no other node
        /// is known).
        case stopServing(PartitionKey, movedTo: String?)
    }

    /// Where a connection for an affinity partition goes.
    public enum RouteDecision: Hashable, Sendable {
        /// This node serves it.
        case serveHere
        /// Node `nodeID` owns it, at its public `url`.
        case redirect(nodeID: String, url: String)
        /// No node is known to serve it now (a hand-off, no owner yet, or this node's lease lapsed).
        case unavailable
    }

    /// This node's part in one partition; no entry: nothing in flight, and no claim won.
    private enum Claim: Sendable {
        /// A claim is in flight.
        case claiming
        /// Won under the current lease; `confirmed` once the directory names this node too (until then it may
        /// still show the partition unowned, or owned by an earlier owner).
        case held(confirmed: Bool)
        /// Lost to another node at the directory's `revision`: wait for it to show the partition unowned later.
        case lost(revision: Int64)
        /// The claim failed (etcd error): try again from `at`.
        case claimRetry(at: Instant)
        /// A release is in flight.
        case releasing
        /// Released at `at`; waiting for the directory to stop naming this node.
        case released(at: Instant)
        /// The release failed (etcd error): try again from `at`.
        case releaseRetry(at: Instant)
    }

    /// This node's id.
    public let nodeID: String
    /// The lease's TTL.
    public let leaseTTL: Duration
    /// How long after an etcd error a claim or release is tried again, and how long a released key may still
    /// name this node in the directory before it is released again.
    public let retryDelay: Duration

    /// The partitions this node serves.
    public private(set) var serving: Set<PartitionKey> = []
    /// Whether ``drain(now:)`` was called.
    public private(set) var draining = false
    /// Whether this node holds a lease (granted and not reported lost).
    public private(set) var hasLease = false
    /// The local deadline of the lease; `nil` without a lease.
    public private(set) var localDeadline: Instant?
    /// The affinity partitions, from Kafka's metadata.
    public private(set) var partitions: Set<PartitionKey> = []
    /// The directory last reported; `nil` before the first.
    public private(set) var directory: PlacementDirectory?

    private var claims: [PartitionKey: Claim] = [:]
    /// The latest time any input carried.
    private var latest: Instant?
    /// Desired owners for one set of candidates (rendezvous is recomputed only when the nodes change).
    private var desiredCache: (candidates: Set<String>, owners: [PartitionKey: String?]) = ([], [:])

    /// - Parameters:
    ///   - nodeID: this node's id.
    ///   - leaseTTL: the lease's TTL in etcd.
    ///   - retryDelay: how long after an etcd error a claim or release is tried again (default one second,
    ///     the `Retry-After` that clients of an unavailable partition are given).
    public init(nodeID: String, leaseTTL: Duration, retryDelay: Duration = .seconds(1)) {
        self.nodeID = nodeID
        self.leaseTTL = leaseTTL
        self.retryDelay = retryDelay
    }

    /// How often the lease is renewed: a quarter TTL, so that two renewals in a row can fail before the local
    /// deadline.
    public var renewInterval: Duration { leaseTTL / 4 }

    /// How long after a grant or renewal was sent the lease is locally valid: three quarters of the TTL.
    public var localValidity: Duration { leaseTTL * 3 / 4 }

    /// Whether the lease is locally valid at `now`.
    /// - Parameter now: the time to judge at.
    public func isLeaseValid(now: Instant) -> Bool {
        guard hasLease, let localDeadline else { return false }
        return now < localDeadline
    }

    /// The partitions etcd names this node the owner of.
    public var owned: Set<PartitionKey> {
        Set(directory?.partitions(ownedBy: nodeID) ?? [])
    }

    /// Whether a drain is over: nothing served, no claim or release in flight, no claim won and not yet
    /// released, and no owner key naming this node left to release.
    public var drained: Bool {
        guard draining, serving.isEmpty else { return false }
        for claim in claims.values {
            switch claim {
            case .claiming, .held, .releasing, .releaseRetry: return false
            case .lost, .claimRetry, .released: continue
            }
        }
        // Without a lease, etcd deletes the keys that carried it.
        guard hasLease, let directory else { return true }
        return directory.owners.allSatisfy { partition, owner in
            guard owner == nodeID else { return true }
            if case .released = claims[partition] { return true }
            return false
        }
    }

    /// Where a connection for `partition` goes at `now`. The deadline is checked here, so that a node that
    /// wakes from a pause refuses before its next tick.
    /// - Parameters:
    ///   - partition: the connection's partition.
    ///   - now: the time of the connection.
    public func decision(for partition: PartitionKey, now: Instant) -> RouteDecision {
        if serving.contains(partition), isLeaseValid(now: now) { return .serveHere }
        if let owner = directory?.owners[partition], owner != nodeID, let record = directory?.nodes[owner] {
            return .redirect(nodeID: owner, url: record.url)
        }
        return .unavailable
    }

    // MARK: - Inputs

    /// A lease was granted. A new lease owns nothing yet: owner keys naming this node in the directory
    /// belong to an earlier one and are released.
    /// - Parameter sentAt: when the grant request was sent.
    public mutating func leaseGranted(sentAt: Instant) -> [Action] {
        hasLease = true
        localDeadline = sentAt.advanced(by: localValidity)
        claims.removeAll()
        return evaluate(at: sentAt)
    }

    /// A keepalive succeeded. Ignored without a lease.
    /// - Parameter sentAt: when the keepalive request was sent.
    public mutating func leaseRenewed(sentAt: Instant) -> [Action] {
        guard hasLease else { return [] }
        let candidate = sentAt.advanced(by: localValidity)
        if localDeadline.map({ candidate > $0 }) ?? true { localDeadline = candidate }
        return evaluate(at: sentAt)
    }

    /// etcd says the lease is gone (and with it every key under it): stop serving everything at once; claim
    /// nothing until ``leaseGranted(sentAt:)``.
    public mutating func leaseLost() -> [Action] {
        hasLease = false
        localDeadline = nil
        claims.removeAll()
        return evaluate(at: nil)
    }

    /// The directory changed (a range, or watch events applied).
    /// - Parameters:
    ///   - directory: the whole directory now.
    ///   - now: the time.
    public mutating func directoryChanged(_ directory: PlacementDirectory, now: Instant) -> [Action] {
        self.directory = directory
        return evaluate(at: now)
    }

    /// The affinity partitions changed.
    /// - Parameters:
    ///   - all: every affinity partition, from Kafka's metadata.
    ///   - now: the time.
    public mutating func partitionsChanged(_ all: Set<PartitionKey>, now: Instant) -> [Action] {
        partitions = all
        return evaluate(at: now)
    }

    /// A ``Action/claim(_:)`` was answered.
    /// - Parameters:
    ///   - partition: the partition.
    ///   - won: whether the owner key now names this node under its current lease.
    ///   - now: the time.
    public mutating func claimFinished(_ partition: PartitionKey, won: Bool, now: Instant) -> [Action] {
        if case .claiming = claims[partition] {
            claims[partition] =
                won
                ? .held(confirmed: directory?.owners[partition] == nodeID) : .lost(revision: directory?.revision ?? 0)
        }
        return evaluate(at: now)
    }

    /// A ``Action/claim(_:)`` failed (etcd error, no answer): it is tried again after ``retryDelay``.
    /// - Parameters:
    ///   - partition: the partition.
    ///   - now: the time.
    public mutating func claimFailed(_ partition: PartitionKey, now: Instant) -> [Action] {
        if case .claiming = claims[partition] { claims[partition] = .claimRetry(at: now.advanced(by: retryDelay)) }
        return evaluate(at: now)
    }

    /// A ``Action/release(_:)`` was answered (deleted, or the key did not name this node any more).
    /// - Parameters:
    ///   - partition: the partition.
    ///   - now: the time.
    public mutating func releaseFinished(_ partition: PartitionKey, now: Instant) -> [Action] {
        if case .releasing = claims[partition] { claims[partition] = .released(at: now) }
        return evaluate(at: now)
    }

    /// A ``Action/release(_:)`` failed (etcd error, no answer): it is tried again after ``retryDelay``.
    /// - Parameters:
    ///   - partition: the partition.
    ///   - now: the time.
    public mutating func releaseFailed(_ partition: PartitionKey, now: Instant) -> [Action] {
        if case .releasing = claims[partition] { claims[partition] = .releaseRetry(at: now.advanced(by: retryDelay)) }
        return evaluate(at: now)
    }

    /// Time passed: deadlines and retries.
    /// - Parameter now: the time.
    public mutating func tick(now: Instant) -> [Action] { evaluate(at: now) }

    /// Hand off everything and claim nothing more; ``drained`` tells when it is over.
    /// - Parameter now: the time.
    public mutating func drain(now: Instant) -> [Action] {
        draining = true
        return evaluate(at: now)
    }

    // MARK: - Rules

    private mutating func evaluate(at time: Instant?) -> [Action] {
        if let time, latest.map({ time > $0 }) ?? true { latest = time }
        guard let directory else { return [] }
        let now = latest
        let valid = now.map { isLeaseValid(now: $0) } ?? false
        let registered = hasLease && !draining && directory.nodes[nodeID] != nil
        var candidates = Set(directory.nodes.keys)
        if !registered { candidates.remove(nodeID) }
        if desiredCache.candidates != candidates { desiredCache = (candidates, [:]) }

        var all = partitions.union(serving).union(claims.keys)
        for (partition, owner) in directory.owners where owner == nodeID { all.insert(partition) }

        var actions: [Action] = []
        for partition in all.sorted() {
            let owner = directory.owners[partition]
            let desired = desiredOwner(of: partition, among: candidates)
            let wanted = desired == nodeID
            var claim = claims[partition]

            // What the directory says of this node's claim.
            switch claim {
            case .held(let confirmed):
                // Before the directory shows the win it may still show older owners; after, a change is real.
                if owner == nodeID {
                    claim = .held(confirmed: true)
                } else if confirmed {
                    claim = nil
                }
            case .lost(let revision):
                if owner == nil, directory.revision > revision { claim = nil }
            case .released, .releaseRetry:
                if owner != nodeID { claim = nil }
            case .claiming, .claimRetry, .releasing, nil:
                break
            }

            // Serve, or stop before anything else happens to the partition.
            var held = false
            if case .held(confirmed: true) = claim { held = true }
            let shouldServe = held && valid && !draining && wanted
            if serving.contains(partition), !shouldServe {
                serving.remove(partition)
                let next =
                    desired.flatMap { $0 == nodeID ? nil : $0 }
                    ?? Rendezvous.owner(of: partition, among: candidates.subtracting([nodeID]))
                actions.append(.stopServing(partition, movedTo: next))
            } else if !serving.contains(partition), shouldServe {
                serving.insert(partition)
                actions.append(.startServing(partition))
            }

            // Release what this node should not own.
            if hasLease, owner == nodeID {
                let release: Bool
                switch claim {
                case .held: release = draining || !wanted
                case .released(let at): release = now.map { $0 >= at.advanced(by: retryDelay) } ?? false
                case .releaseRetry(let at): release = now.map { $0 >= at } ?? false
                case .claiming, .releasing: release = false
                case .lost, .claimRetry, nil: release = true  // not won under this lease
                }
                if release {
                    claim = .releasing
                    actions.append(.release(partition))
                }
            }

            // Claim what this node should own.
            if owner == nil, wanted, valid, partitions.contains(partition) {
                let ready: Bool
                switch claim {
                case nil: ready = true
                case .claimRetry(let at): ready = now.map { $0 >= at } ?? false
                default: ready = false
                }
                if ready {
                    claim = .claiming
                    actions.append(.claim(partition))
                }
            }
            claims[partition] = claim
        }
        return actions
    }

    private mutating func desiredOwner(of partition: PartitionKey, among candidates: Set<String>) -> String? {
        if let cached = desiredCache.owners[partition] { return cached }
        let owner = Rendezvous.owner(of: partition, among: candidates)
        desiredCache.owners[partition] = .some(owner)
        return owner
    }
}
