/// One key and its value as etcd stores it.
public struct EtcdKeyValue: Sendable, Equatable {
    /// The key. etcd keys are bytes; this client reads and writes them as UTF-8 (bytes that are not UTF-8 are
    /// shown with replacement characters).
    public var key: String
    /// The value (empty for the key of a delete event).
    public var value: [UInt8]
    /// The revision at which the key was last created (0 for the key of a delete event).
    public var createRevision: Int64
    /// The revision of the last change to the key (for a delete event: the revision of the delete).
    public var modRevision: Int64
    /// The lease the key is attached to; 0 for none.
    public var lease: Int64

    /// Creates a key-value pair.
    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.lease = lease
    }
}
