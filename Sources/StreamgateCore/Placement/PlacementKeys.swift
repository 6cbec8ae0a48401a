/// The cluster's keys in etcd: `P/nodes/{id}` (a node's record, under its lease) and
/// `P/owners/{topic}/{partition}` (the owner's id, under the owner's lease).
public struct PlacementKeys: Sendable, Equatable {
    public enum Parsed: Equatable, Sendable {
        case node(String)
        case owner(PartitionKey)
    }

    /// The prefix without a trailing `/`.
    public let prefix: String

    public init(prefix: String) {
        var prefix = prefix
        while prefix.hasSuffix("/") { prefix.removeLast() }
        self.prefix = prefix
    }

    public var watchPrefix: String { prefix + "/" }
    public var nodesPrefix: String { prefix + "/nodes/" }
    public var ownersPrefix: String { prefix + "/owners/" }

    public func nodeKey(_ id: String) -> String { nodesPrefix + id }
    public func ownerKey(_ partition: PartitionKey) -> String { ownersPrefix + partition.description }

    /// What `key` names; `nil` for keys that are not the cluster's.
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

    /// Node ids are 1–64 of `[A-Za-z0-9._-]`: safe in keys, URLs and logs.
    public static func isValidNodeID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }
}
