import Foundation

/// What a node writes under its key: where clients reach it, and how loaded it is.
public struct NodeRecord: Codable, Sendable, Equatable {
    public var url: String
    public var connections: Int
    /// When the node started, in milliseconds since 1970.
    public var started: Int64

    public init(url: String, connections: Int, started: Int64) {
        self.url = url
        self.connections = connections
        self.started = started
    }
}

/// What etcd says of the cluster: the registered nodes and the owner of each affinity partition, at a
/// revision. Built from a range and kept current with the watch's events.
public struct PlacementDirectory: Sendable, Equatable {
    public let keys: PlacementKeys
    public private(set) var nodes: [String: NodeRecord] = [:]
    public private(set) var owners: [PartitionKey: String] = [:]
    public private(set) var revision: Int64
    /// Keys of the cluster whose value could not be read (counted, never fatal).
    public private(set) var unreadable = 0

    public init(keys: PlacementKeys, entries: [(key: String, value: [UInt8])], revision: Int64) {
        self.keys = keys
        self.revision = revision
        for entry in entries { apply(put: entry.key, value: entry.value, revision: revision) }
    }

    public mutating func apply(put key: String, value: [UInt8], revision: Int64) {
        self.revision = max(self.revision, revision)
        switch keys.parse(key: key) {
        case .node(let id):
            guard let record = try? JSONDecoder().decode(NodeRecord.self, from: Data(value)) else {
                unreadable += 1
                return
            }
            nodes[id] = record
        case .owner(let partition):
            let owner = String(decoding: value, as: UTF8.self)
            guard PlacementKeys.isValidNodeID(owner) else {
                unreadable += 1
                return
            }
            owners[partition] = owner
        case nil:
            break
        }
    }

    public mutating func apply(delete key: String, revision: Int64) {
        self.revision = max(self.revision, revision)
        switch keys.parse(key: key) {
        case .node(let id): nodes[id] = nil
        case .owner(let partition): owners[partition] = nil
        case nil: break
        }
    }
}
