/// The gateway's `subscribed` answer.
public struct SubscribeReply: Sendable, Hashable {
    /// A discontinuity the gateway announced: records `from..<to` will not be delivered.
    public struct Gap: Sendable, Hashable {
        public var from: Int64
        public var to: Int64
        public var reason: String
    }

    public var channel: String
    public var partition: Int32
    /// The first offset that may be delivered.
    public var offset: Int64
    /// The partition's end offset when the subscription was made.
    public var head: Int64
    /// `false` when the requested position no longer existed; ``gap`` then says what is missing.
    public var recovered: Bool
    public var gap: Gap?
}
