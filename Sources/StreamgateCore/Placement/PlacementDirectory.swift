import Foundation

/// What etcd says of the cluster: the registered nodes and the owner of each affinity partition, as of a
/// revision. Built from a range over ``PlacementKeys/watchPrefix`` and kept current with the watch's events.
///
/// Keys that are not the cluster's are ignored. A cluster key whose value cannot be read (a node record that
/// is not a record, an owner that is not a node id) is counted in ``unreadable`` and treated as absent; it
/// never stops the directory.
public struct PlacementDirectory: Sendable, Equatable {
    /// What one entry did to the directory.
    public enum Outcome: Sendable, Hashable {
        /// The entry was read (or, for a delete, the key was the cluster's).
        case applied
        /// Not one of the cluster's keys: ignored.
        case foreign
        /// One of the cluster's keys, with a value that cannot be read: treated as absent.
        case unreadable
    }

    /// The cluster's keys.
    public let keys: PlacementKeys
    /// The registered nodes, by id.
    public private(set) var nodes: [String: NodeRecord] = [:]
    /// The owner (a node id) of every owned partition.
    public private(set) var owners: [PartitionKey: String] = [:]
    /// The newest etcd revision applied.
    public private(set) var revision: Int64
    /// Entries of the cluster's keys whose value could not be read, so far.
    public private(set) var unreadable = 0

    /// The directory from a range.
    /// - Parameters:
    ///   - keys: the cluster's keys.
    ///   - entries: the range's keys and values (keys of others are ignored).
    ///   - revision: the range's revision.
    public init(keys: PlacementKeys, entries: [(key: String, value: [UInt8])], revision: Int64) {
        self.keys = keys
        self.revision = revision
        for entry in entries { apply(put: entry.key, value: entry.value, revision: revision) }
    }

    /// A watch's put.
    /// - Parameters:
    ///   - key: the key.
    ///   - value: its new value.
    ///   - revision: the event's revision (its key's modification revision).
    @discardableResult
    public mutating func apply(put key: String, value: [UInt8], revision: Int64) -> Outcome {
        self.revision = max(self.revision, revision)
        switch keys.parse(key: key) {
        case .node(let id):
            guard let record = try? JSONDecoder().decode(NodeRecord.self, from: Data(value)) else {
                nodes[id] = nil
                unreadable += 1
                return .unreadable
            }
            nodes[id] = record
            return .applied
        case .owner(let partition):
            // Invalid UTF-8 decodes to U+FFFD, which no node id contains.
            let owner = String(decoding: value, as: UTF8.self)
            guard PlacementKeys.isValidNodeID(owner) else {
                owners[partition] = nil
                unreadable += 1
                return .unreadable
            }
            owners[partition] = owner
            return .applied
        case nil:
            return .foreign
        }
    }

    /// A watch's delete (the key's lease expired or was revoked, or the key was deleted).
    /// - Parameters:
    ///   - key: the key.
    ///   - revision: the event's revision.
    @discardableResult
    public mutating func apply(delete key: String, revision: Int64) -> Outcome {
        self.revision = max(self.revision, revision)
        switch keys.parse(key: key) {
        case .node(let id):
            nodes[id] = nil
            return .applied
        case .owner(let partition):
            owners[partition] = nil
            return .applied
        case nil:
            return .foreign
        }
    }

    /// The partitions etcd names `node` the owner of, in order.
    /// - Parameter node: a node id.
    public func partitions(ownedBy node: String) -> [PartitionKey] {
        owners.compactMap { $0.value == node ? $0.key : nil }.sorted()
    }
}
