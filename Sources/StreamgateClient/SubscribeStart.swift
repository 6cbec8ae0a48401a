/// Where a subscription starts (the `from` of a `subscribe` request).
public enum SubscribeStart: Sendable, Hashable {
    /// Only records written from now on.
    case latest
    /// The oldest retained record.
    case earliest
    /// A Kafka offset of the channel's partition (to resume: last received + 1). `partition`, when given,
    /// lets the gateway detect a repartitioned topic.
    case offset(Int64, partition: Int32? = nil)
    /// The first record at or after an RFC 3339 time, such as `2025-11-26T20:00:00Z`.
    case time(String)
}
