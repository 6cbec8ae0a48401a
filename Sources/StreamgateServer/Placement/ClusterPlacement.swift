import Foundation
import NIOConcurrencyHelpers
import StreamgateCore

/// What this node knows of the placement of affinity channels (PROTOCOL §9) — the etcd directory, its own
/// ownership state machine, the affinity partitions — and the answers every connection needs from it
/// without a request: where an upgrade goes, what `locate` says, what `/v1/cluster` shows.
///
/// The ``PlacementService`` feeds it from etcd; without etcd it is a node alone that owns nothing and
/// serves fanout channels only (affinity namespaces are refused at start). Every call is short and takes
/// one lock, so event loops call it on every upgrade.
final class ClusterPlacement: Sendable {
    typealias Machine = OwnershipStateMachine<ContinuousClock.Instant>

    /// Where an upgrade for an affinity channel goes.
    enum Decision: Equatable {
        case serveHere(PartitionKey)
        /// To the owner: its public URL.
        case redirect(String)
        /// No live owner yet (or this node's lease is in doubt): try again shortly.
        case unavailable(String)
    }

    struct State {
        var machine: Machine
        var directory: PlacementDirectory
        /// Partition counts of the affinity topics, once known.
        var partitionCounts: [String: Int] = [:]
        /// Whether the node has registered in etcd (false before, and while it cannot reach etcd).
        var registered = false
    }

    let nodeID: String
    let clustered: Bool
    let members = PlacementMembers()
    let state: NIOLockedValueBox<State>
    private let url: NIOLockedValueBox<String>
    private let urlConfigured: Bool

    init(nodeID: String, publicURL: String?, keys: PlacementKeys, leaseTTL: Duration, clustered: Bool) {
        self.nodeID = nodeID
        self.url = NIOLockedValueBox(publicURL ?? "ws://127.0.0.1")
        self.urlConfigured = publicURL != nil
        self.clustered = clustered
        self.state = NIOLockedValueBox(State(
            machine: Machine(nodeID: nodeID, leaseTTL: leaseTTL),
            directory: PlacementDirectory(keys: keys, entries: [], revision: 0)))
    }

    /// A node without etcd: it owns no affinity partition.
    convenience init(standalone configuration: GatewayConfiguration) {
        self.init(nodeID: configuration.nodeID, publicURL: configuration.publicURL,
                  keys: PlacementKeys(prefix: configuration.etcdPrefix), leaseTTL: .seconds(configuration.leaseTTLSeconds),
                  clustered: false)
    }

    /// A node of a cluster, placed through etcd by its ``PlacementService``.
    convenience init(clustered configuration: GatewayConfiguration) {
        self.init(nodeID: configuration.nodeID, publicURL: configuration.publicURL,
                  keys: PlacementKeys(prefix: configuration.etcdPrefix), leaseTTL: .seconds(configuration.leaseTTLSeconds),
                  clustered: true)
    }

    /// The URL clients reach this node at.
    var publicURL: String { url.withLockedValue { $0 } }

    /// Without a configured public URL, the node's is the address it bound.
    func bound(host: String, port: Int, tls: Bool) {
        guard !urlConfigured else { return }
        let shown = host.contains(":") ? "[\(host)]" : host
        url.withLockedValue { $0 = "\(tls ? "wss" : "ws")://\(shown):\(port)" }
    }

    /// The partition of an affinity `channel` of `topic`, when the topic's partition count is known.
    func partition(of channel: ChannelName, topic: String) -> PartitionKey? {
        guard let count = state.withLockedValue({ $0.partitionCounts[topic] }) else { return nil }
        return PartitionKey(topic: topic,
                            partition: Murmur2Partitioner.partition(for: channel.value.utf8, partitionCount: count))
    }

    /// Where an upgrade for affinity `channel` goes, now.
    func decide(_ channel: ChannelName, topic: String) -> Decision {
        guard clustered else { return .unavailable("this node runs without placement") }
        guard let partition = partition(of: channel, topic: topic) else {
            return .unavailable("the partitions of \(topic) are not known yet")
        }
        return decision(for: partition)
    }

    /// Where a connection of affinity `partition` belongs, now.
    func decision(for partition: PartitionKey) -> Decision {
        guard clustered else { return .unavailable("this node runs without placement") }
        let now = ContinuousClock.now
        return state.withLockedValue { state in
            switch state.machine.decision(for: partition, now: now) {
            case .serveHere: return .serveHere(partition)
            case .redirect(_, let url): return .redirect(url)
            case .unavailable: return .unavailable("no node serves \(partition) right now")
            }
        }
    }

    /// The URL a `moved` answer for `channel` points at: its owner's, or — while it has none — this node's,
    /// which answers 503 until one is known and redirects after.
    func movedURL(for channel: ChannelName, topic: String) -> String {
        let base: String
        if case .redirect(let url) = decide(channel, topic: topic) { base = url } else { base = publicURL }
        return Self.boundURL(base: base, channel: channel, query: nil)
    }

    /// The URL of `channel`'s bound endpoint at `base` (a node's public URL).
    static func boundURL(base: String, channel: ChannelName, query: String?) -> String {
        let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
        return trimmed + "/v1/ws/" + channel.value + (query.map { "?" + $0 } ?? "")
    }

    /// Where the connections of `partition` go when this node stops serving it and no other owner is known
    /// yet: the node rendezvous hashing gives it to among the others registered, else this node (which
    /// answers 503 until an owner is known, then redirects).
    func nextOwnerURL(of partition: PartitionKey) -> String {
        let next = state.withLockedValue { state -> String? in
            guard let node = Rendezvous.owner(of: partition, among: state.directory.nodes.keys.filter { $0 != nodeID })
            else { return nil }
            return state.directory.nodes[node]?.url
        }
        return next ?? publicURL
    }

    /// The public URL of node `id`, from the directory.
    func url(ofNode id: String) -> String? {
        if id == nodeID { return publicURL }
        return state.withLockedValue { $0.directory.nodes[id]?.url }
    }

    /// `GET /v1/locate/{channel}`.
    struct Location: Encodable {
        var channel: String
        var url: String
        var node: String
        var partition: Int32?
    }

    /// Where `channel` is served: `nil` while an affinity channel has no owner.
    func locate(_ channel: ChannelName, route: NamespaceRoute) -> Location? {
        guard route.mode == .affinity else {
            return Location(channel: channel.value, url: Self.boundURL(base: publicURL, channel: channel, query: nil),
                            node: nodeID, partition: nil)
        }
        guard let partition = partition(of: channel, topic: route.topic) else { return nil }
        switch decide(channel, topic: route.topic) {
        case .serveHere:
            return Location(channel: channel.value, url: Self.boundURL(base: publicURL, channel: channel, query: nil),
                            node: nodeID, partition: partition.partition)
        case .redirect(let url):
            let owner = state.withLockedValue { $0.directory.owners[partition] } ?? ""
            return Location(channel: channel.value, url: Self.boundURL(base: url, channel: channel, query: nil),
                            node: owner, partition: partition.partition)
        case .unavailable:
            return nil
        }
    }

    /// `GET /v1/cluster`.
    struct Snapshot: Encodable {
        struct Node: Encodable {
            var id: String
            var url: String
            var connections: Int
            var partitions: [String]
            var `self`: Bool
        }
        var node: String
        var clustered: Bool
        var revision: Int64
        var nodes: [Node]
        /// Affinity partitions without a live owner.
        var unowned: [String]
        /// Affinity partitions this node serves now (its lease is valid and etcd names it the owner).
        var serving: [String]
    }

    func snapshot(localConnections: Int) -> Snapshot {
        let now = ContinuousClock.now
        return state.withLockedValue { state in
            var owned: [String: [String]] = [:]
            for (partition, owner) in state.directory.owners { owned[owner, default: []].append(partition.description) }
            var nodes = state.directory.nodes.map { id, record in
                Snapshot.Node(id: id, url: record.url, connections: id == nodeID ? localConnections : record.connections,
                              partitions: (owned[id] ?? []).sorted(), self: id == nodeID)
            }
            if state.directory.nodes[nodeID] == nil {
                nodes.append(.init(id: nodeID, url: publicURL, connections: localConnections,
                                   partitions: (owned[nodeID] ?? []).sorted(), self: true))
            }
            var all: [PartitionKey] = []
            for (topic, count) in state.partitionCounts {
                for partition in 0..<count { all.append(PartitionKey(topic: topic, partition: Int32(partition))) }
            }
            let unowned = all.filter { state.directory.owners[$0] == nil }.sorted().map(\.description)
            let serving = state.machine.isLeaseValid(now: now) ? state.machine.serving.sorted().map(\.description) : []
            return Snapshot(node: nodeID, clustered: clustered, revision: state.directory.revision,
                            nodes: nodes.sorted { $0.id < $1.id }, unowned: unowned, serving: serving)
        }
    }
}
