/// The cluster's keys in etcd, under a prefix `P` (default `/streamgate`):
/// - `P/nodes/{nodeID}`: a node's ``NodeRecord`` (JSON), under the node's lease;
/// - `P/owners/{topic}/{partition}`: the owner's node id (UTF-8), under the owner's lease.
///
/// One watch on ``watchPrefix`` follows both.
public struct PlacementKeys: Sendable, Hashable {
    /// What a key of the cluster names.
    public enum Parsed: Hashable, Sendable {
        /// A node's record: `P/nodes/{id}`.
        case node(String)
        /// A partition's owner: `P/owners/{topic}/{partition}`.
        case owner(PartitionKey)
    }

    /// The prefix, without a trailing `/`.
    public let prefix: String

    /// - Parameter prefix: the cluster's prefix, e.g. `/streamgate`; trailing `/`s are dropped.
    public init(prefix: String = "/streamgate") {
        var prefix = prefix
        while prefix.hasSuffix("/") { prefix.removeLast() }
        self.prefix = prefix
    }

    /// Every key of the cluster starts with this: `P/`.
    public var watchPrefix: String { prefix + "/" }
    /// Every node key starts with this: `P/nodes/`.
    public var nodesPrefix: String { prefix + "/nodes/" }
    /// Every owner key starts with this: `P/owners/`.
    public var ownersPrefix: String { prefix + "/owners/" }

    /// `P/nodes/{id}`.
    /// - Parameter id: a node id (see ``isValidNodeID(_:)``).
    public func nodeKey(_ id: String) -> String { nodesPrefix + id }

    /// `P/owners/{topic}/{partition}`.
    /// - Parameter partition: the partition.
    public func ownerKey(_ partition: PartitionKey) -> String { ownersPrefix + partition.description }

    /// What `key` names.
    /// - Parameter key: a key read from etcd.
    /// - Returns: `nil` for keys that are not the cluster's, or that no node would write (an invalid node id,
    ///   topic or partition).
    public func parse(key: String) -> Parsed? {
        if key.hasPrefix(nodesPrefix) {
            let id = String(key.dropFirst(nodesPrefix.count))
            return Self.isValidNodeID(id) ? .node(id) : nil
        }
        if key.hasPrefix(ownersPrefix) {
            return PartitionKey(key.dropFirst(ownersPrefix.count)).map { .owner($0) }
        }
        return nil
    }

    /// Longest node id, in bytes.
    public static let maxNodeIDLength = 64

    /// Node ids are 1–64 bytes of `[A-Za-z0-9._-]`: safe in keys, URLs, headers and logs.
    /// - Parameter id: the id to check.
    public static func isValidNodeID(_ id: some StringProtocol) -> Bool {
        (1...maxNodeIDLength).contains(id.utf8.count) && id.utf8.allSatisfy(PartitionKey.isNameByte)
    }
}
