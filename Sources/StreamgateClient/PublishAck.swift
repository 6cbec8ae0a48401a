/// The gateway's `ack` for one publish: the record is in Kafka.
public struct PublishAck: Sendable, Hashable {
    /// The request id the client library gave the publish.
    public var id: Int64
    /// The channel's partition.
    public var partition: Int32
    /// The record's offset; `nil` when Kafka reported success without one (a deduplicated retry).
    public var offset: Int64?

    public init(id: Int64, partition: Int32, offset: Int64?) {
        self.id = id
        self.partition = partition
        self.offset = offset
    }
}
