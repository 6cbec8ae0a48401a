/// The keys found by ``EtcdClient/range(prefix:)`` and the revision they were read at.
public struct EtcdRangeResult: Sendable {
    /// The keys, in ascending key order.
    public var keyValues: [EtcdKeyValue]
    /// The store's revision when the keys were read: watch from `revision + 1` to see every later change.
    public var revision: Int64

    /// Creates a range result.
    public init(keyValues: [EtcdKeyValue], revision: Int64) {
        self.keyValues = keyValues
        self.revision = revision
    }
}
