/// The outcome of ``EtcdClient/createIfAbsent(key:value:leaseID:)``.
public enum EtcdCreateResult: Sendable, Equatable {
    /// The key did not exist and now holds the value, written at `revision`.
    case created(revision: Int64)
    /// The key already existed; nothing was written. This is its current state.
    case exists(EtcdKeyValue)
}
