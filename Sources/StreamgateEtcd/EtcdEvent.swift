/// One change seen by a watch.
public struct EtcdEvent: Sendable, Equatable {
    /// Whether the key was written or deleted.
    public enum Kind: Sendable, Hashable {
        /// The key was created or updated; ``EtcdEvent/keyValue`` is its new state.
        case put
        /// The key was deleted (directly, or because its lease ended); ``EtcdEvent/keyValue`` has the key and the
        /// delete's revision as `modRevision`, and no value.
        case delete
    }

    /// Whether the key was written or deleted.
    public var kind: Kind
    /// The key after the change.
    public var keyValue: EtcdKeyValue

    /// Creates an event.
    public init(kind: Kind, keyValue: EtcdKeyValue) {
        self.kind = kind
        self.keyValue = keyValue
    }
}
