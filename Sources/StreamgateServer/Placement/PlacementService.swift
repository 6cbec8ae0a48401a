import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import StreamgateCore
import StreamgateEtcd

/// Keeps this node's place in the cluster (PROTOCOL §9): its etcd lease, its registration, the directory
/// (watched), and the affinity partitions its ``OwnershipStateMachine`` decides to claim, serve, hand off
/// and release. etcd is the only source of agreement: ownership is a key bound to the owner's lease, created
/// only if absent, so two live nodes never hold one partition; a node that cannot renew stops serving three
/// quarters of a TTL after its last renewal was sent, before etcd can give the partition to another.
///
/// Put it after the ``GatewayServer`` in the service group: shut down first, it hands every partition to
/// its next owner (the clients get `moved` and close 4302) and leaves the cluster before the edge drains.
final class PlacementService: Service {
    struct DuplicateNodeError: Error, CustomStringConvertible {
        var description: String
    }

    private typealias Action = ClusterPlacement.Machine.Action

    private let configuration: GatewayConfiguration
    private let placement: ClusterPlacement
    private let backend: KafkaBackend
    private let registry: ConnectionRegistry
    private let keys: PlacementKeys
    private let group: any EventLoopGroup
    private let logger: Logger
    private let ttl: Int64
    /// The lease of the node's current registration, and the record written under it.
    private let current = NIOLockedValueBox<(lease: Int64, record: [UInt8])?>(nil)
    private let blocking = DispatchQueue(label: "streamgate.placement")
    private let started = Int64(Date().timeIntervalSince1970 * 1000)

    init(configuration: GatewayConfiguration, placement: ClusterPlacement, backend: KafkaBackend,
         registry: ConnectionRegistry, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.placement = placement
        self.backend = backend
        self.registry = registry
        self.keys = PlacementKeys(prefix: configuration.etcdPrefix)
        self.group = eventLoopGroup
        self.ttl = Int64(configuration.leaseTTLSeconds)
        var logger = logger
        logger[metadataKey: "component"] = "placement"
        self.logger = logger
    }

    func run() async throws {
        let client = try EtcdClient(endpoints: configuration.etcdEndpoints ?? [], eventLoopGroup: group, logger: logger)
        let draining = NIOLockedValueBox(false)
        do {
            try await withGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { await self.followPartitionCounts(client) }
                    tasks.addTask { try await self.keepMembership(client, draining: draining) }
                    try await tasks.next()
                    tasks.cancelAll()
                }
            } onGracefulShutdown: {
                draining.withLockedValue { $0 = true }
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
    }

    // MARK: - Membership: lease, registration, directory

    /// One registration after another: a lost lease (etcd expired it) starts a new one. Returns once the
    /// node has drained and left.
    private func keepMembership(_ client: EtcdClient, draining: NIOLockedValueBox<Bool>) async throws {
        var backoff = Duration.milliseconds(250)
        var conflictSince: ContinuousClock.Instant?
        while !Task.isCancelled {
            if draining.withLockedValue({ $0 }) { return }
            let sent = ContinuousClock.now
            let lease: Int64
            do {
                lease = try await client.grantLease(ttlSeconds: ttl).id
                backoff = .milliseconds(250)
            } catch {
                logger.error("etcd unreachable: cannot take a lease; affinity channels get 503 until it answers (retrying)",
                             metadata: ["etcd": "\((configuration.etcdEndpoints ?? []).joined(separator: ","))",
                                        "error": "\(error)", "retry.ms": "\(backoff.milliseconds)"])
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                continue
            }
            let record = recordBytes()
            switch try await register(client, lease: lease, record: record) {
            case .registered:
                conflictSince = nil
            case .taken(let holder):
                try? await client.revokeLease(lease)
                let since = conflictSince ?? .now
                conflictSince = since
                // A crashed predecessor's lease expires within one TTL; a live node with this id renews it.
                if ContinuousClock.now - since > .seconds(ttl + 2) {
                    throw DuplicateNodeError(description:
                        "node id \"\(placement.nodeID)\" is registered in etcd by a live node (\(holder)); every node needs its own --node-id")
                }
                logger.warning("node id already registered; waiting for that lease to expire",
                               metadata: ["node": "\(placement.nodeID)", "holder": "\(holder)"])
                try await Task.sleep(for: .seconds(1))
                continue
            }
            current.withLockedValue { $0 = (lease, record) }
            logger.notice("registered in the cluster", metadata: ["node": "\(placement.nodeID)",
                                                                  "lease": "\(lease)", "url": "\(placement.publicURL)"])
            let actions = placement.state.withLockedValue { state -> [Action] in
                state.registered = true
                return state.machine.leaseGranted(sentAt: sent)
            }
            perform(actions, client)
            let outcome = try await serveLease(client, lease: lease, draining: draining)
            current.withLockedValue { $0 = nil }
            placement.state.withLockedValue { $0.registered = false }
            switch outcome {
            case .drained:
                try? await client.revokeLease(lease)
                logger.notice("left the cluster", metadata: ["node": "\(placement.nodeID)"])
                return
            case .lost:
                logger.error("lease lost: stopped serving affinity partitions; registering again")
                perform(placement.state.withLockedValue { $0.machine.leaseLost() }, client)
            }
        }
    }

    private enum Registration { case registered, taken(String) }

    private func register(_ client: EtcdClient, lease: Int64, record: [UInt8]) async throws -> Registration {
        while true {
            do {
                switch try await client.createIfAbsent(key: keys.nodeKey(placement.nodeID), value: record, leaseID: lease) {
                case .created: return .registered
                case .exists(let existing):
                    if existing.lease == lease { return .registered }
                    return .taken(String(decoding: existing.value, as: UTF8.self))
                }
            } catch {
                logger.warning("cannot register in etcd; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private enum LeaseOutcome { case drained, lost }

    /// Renews the lease, follows the directory and the deadlines, and drains on request.
    private func serveLease(_ client: EtcdClient, lease: Int64, draining: NIOLockedValueBox<Bool>) async throws
        -> LeaseOutcome
    {
        try await withThrowingTaskGroup(of: LeaseOutcome?.self) { tasks in
            tasks.addTask { try await self.renew(client, lease: lease) }
            tasks.addTask { try await self.followDirectory(client); return nil }
            tasks.addTask { try await self.tick(client, lease: lease, draining: draining) }
            while let outcome = try await tasks.next() {
                guard let outcome else { continue }
                tasks.cancelAll()
                return outcome
            }
            return .lost
        }
    }

    /// Keepalives every quarter TTL; a renewal counts from the moment it was sent. Returns `.lost` when
    /// etcd says the lease is gone.
    private func renew(_ client: EtcdClient, lease: Int64) async throws -> LeaseOutcome? {
        let interval = placement.state.withLockedValue { $0.machine.renewInterval }
        while true {
            try await Task.sleep(for: interval)
            let sent = ContinuousClock.now
            do {
                _ = try await client.keepAlive(leaseID: lease)
                perform(placement.state.withLockedValue { $0.machine.leaseRenewed(sentAt: sent) }, client)
            } catch let error as EtcdError where error.isLeaseNotFound {
                return .lost
            } catch {
                logger.warning("lease renewal failed; still serving until the local deadline",
                               metadata: ["error": "\(error)"])
            }
        }
    }

    /// Reads the directory, then follows it with a watch; a broken or compacted watch reads it again.
    private func followDirectory(_ client: EtcdClient) async throws {
        while true {
            do {
                let range = try await client.range(prefix: keys.watchPrefix)
                let directory = PlacementDirectory(keys: keys, entries: range.keyValues.map { ($0.key, $0.value) },
                                                   revision: range.revision)
                perform(placement.state.withLockedValue { state in
                    state.directory = directory
                    return state.machine.directoryChanged(directory, now: .now)
                }, client)
                for try await events in client.watch(prefix: keys.watchPrefix, fromRevision: range.revision + 1) {
                    perform(placement.state.withLockedValue { state in
                        for event in events {
                            switch event.kind {
                            case .put:
                                state.directory.apply(put: event.keyValue.key, value: event.keyValue.value,
                                                      revision: event.keyValue.modRevision)
                            case .delete:
                                state.directory.apply(delete: event.keyValue.key, revision: event.keyValue.modRevision)
                            }
                        }
                        return state.machine.directoryChanged(state.directory, now: .now)
                    }, client)
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                guard !Task.isCancelled else { throw CancellationError() }
                logger.warning("etcd watch ended; reading the directory again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Deadlines (every 100 ms), the node's connection count in its record (every 5 s, when it changed),
    /// and the drain once asked.
    private func tick(_ client: EtcdClient, lease: Int64, draining: NIOLockedValueBox<Bool>) async throws -> LeaseOutcome? {
        var lastConnections = registry.webSocketCount
        var lastUpdate = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(100))
            if draining.withLockedValue({ $0 }) {
                await drain(client)
                return .drained
            }
            perform(placement.state.withLockedValue { $0.machine.tick(now: .now) }, client)
            let connections = registry.webSocketCount
            if connections != lastConnections, ContinuousClock.now - lastUpdate >= .seconds(5) {
                lastConnections = connections
                lastUpdate = .now
                let record = recordBytes()
                if (try? await client.put(key: keys.nodeKey(placement.nodeID), value: record, leaseID: lease)) != nil {
                    current.withLockedValue { $0?.record = record }
                }
            }
        }
    }

    /// Leaves the directory first (so that the other nodes choose new owners without this one), then hands
    /// off every partition — its clients are moved before its key is released — within the drain time.
    private func drain(_ client: EtcdClient) async {
        logger.notice("draining: handing affinity partitions to their next owners")
        if let record = current.withLockedValue({ $0?.record }) {
            _ = try? await client.delete(key: keys.nodeKey(placement.nodeID), ifValueIs: record)
        }
        perform(placement.state.withLockedValue { $0.machine.drain(now: .now) }, client)
        let deadline = ContinuousClock.now + .seconds(configuration.drainSeconds)
        while ContinuousClock.now < deadline, !placement.state.withLockedValue({ $0.machine.drained }) {
            try? await Task.sleep(for: .milliseconds(50))
            perform(placement.state.withLockedValue { $0.machine.tick(now: .now) }, client)
        }
    }

    // MARK: - Actions

    /// Carries out the machine's actions: hand-offs at once, etcd writes in tasks of their own that report
    /// back to the machine.
    private func perform(_ actions: [Action], _ client: EtcdClient) {
        for action in actions {
            switch action {
            case .startServing(let partition):
                logger.info("serving affinity partition", metadata: ["partition": "\(partition)"])
            case .stopServing(let partition, let next):
                let url = next.flatMap { placement.url(ofNode: $0) } ?? placement.nextOwnerURL(of: partition)
                let moved = placement.members.handOff(partition) { _ in PartitionHandOffEvent(url: url) }
                logger.info("stopped serving affinity partition", metadata: [
                    "partition": "\(partition)", "next": "\(next ?? "-")", "connections.moved": "\(moved)",
                ])
            case .claim(let partition):
                guard let lease = current.withLockedValue({ $0?.lease }) else {
                    perform(placement.state.withLockedValue { $0.machine.claimFailed(partition, now: .now) }, client)
                    continue
                }
                Task {
                    let next: [Action]
                    do {
                        let result = try await client.createIfAbsent(
                            key: keys.ownerKey(partition), value: Array(placement.nodeID.utf8), leaseID: lease)
                        let won: Bool
                        switch result {
                        case .created: won = true
                        case .exists(let holder): won = holder.lease == lease && holder.value == Array(placement.nodeID.utf8)
                        }
                        next = feed(under: lease) { $0.claimFinished(partition, won: won, now: .now) }
                    } catch {
                        logger.warning("claim failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
                        next = feed(under: lease) { $0.claimFailed(partition, now: .now) }
                    }
                    perform(next, client)
                }
            case .release(let partition):
                let lease = current.withLockedValue { $0?.lease }
                Task {
                    // The partition's clients are moving: let them go before the next owner can take it.
                    _ = await placement.members.waitUntilEmpty(partition, timeout: .seconds(3))
                    let next: [Action]
                    do {
                        _ = try await client.delete(key: keys.ownerKey(partition), ifValueIs: Array(placement.nodeID.utf8))
                        next = feed(under: lease) { $0.releaseFinished(partition, now: .now) }
                    } catch {
                        logger.warning("release failed; retrying (the key expires with the lease in any case)",
                                       metadata: ["partition": "\(partition)", "error": "\(error)"])
                        next = feed(under: lease) { $0.releaseFailed(partition, now: .now) }
                    }
                    perform(next, client)
                }
            }
        }
    }

    /// Feeds the answer of an etcd write made under `lease` to the machine, unless the node holds another
    /// lease by now: that answer is about a claim of the old lease, which the machine has already given up.
    private func feed(under lease: Int64?, _ input: (inout ClusterPlacement.Machine) -> [Action]) -> [Action] {
        placement.state.withLockedValue { state in
            guard let lease, current.withLockedValue({ $0?.lease }) == lease else { return [] }
            return input(&state.machine)
        }
    }

    // MARK: - Kafka: the affinity partitions

    /// The partition counts of the affinity topics, from Kafka's metadata (which the backend refreshes).
    private func followPartitionCounts(_ client: EtcdClient) async {
        let topics = configuration.namespaces.affinityTopics
        var known: [String: Int] = [:]
        while !Task.isCancelled {
            var counts = known
            for topic in topics {
                if let count = await onBlockingQueue({ try? self.backend.partitionCount(topic: topic) }) { counts[topic] = count }
            }
            if counts != known {
                known = counts
                let all = Set(counts.flatMap { topic, count in
                    (0..<count).map { PartitionKey(topic: topic, partition: Int32($0)) }
                })
                logger.info("affinity partitions", metadata: ["count": "\(all.count)"])
                let actions = placement.state.withLockedValue { state in
                    state.partitionCounts = counts
                    return state.machine.partitionsChanged(all, now: .now)
                }
                perform(actions, client)
            }
            try? await Task.sleep(for: counts.count == topics.count ? .seconds(5) : .milliseconds(500))
        }
    }

    private func onBlockingQueue<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            blocking.async { continuation.resume(returning: work()) }
        }
    }

    private static let recordEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    private func recordBytes() -> [UInt8] {
        let record = NodeRecord(url: placement.publicURL, connections: registry.webSocketCount, started: started)
        return (try? Array(Self.recordEncoder.encode(record))) ?? []
    }
}

extension Duration {
    fileprivate var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
