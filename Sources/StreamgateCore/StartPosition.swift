/// Where a subscription starts reading its channel.
public enum StartPosition: Sendable, Equatable {
    /// Only records written from now on.
    case latest
    /// The oldest retained record.
    case earliest
    /// A Kafka offset in the channel's partition (`partition`, when given, must be the channel's).
    case offset(Int64, partition: Int32?)
    /// The first record whose timestamp is at or after this many milliseconds since the epoch.
    case time(milliseconds: Int64)

    /// Parses the `?from=` query value of the bound endpoint: `latest`, `earliest`, an offset or an
    /// RFC 3339 time.
    public init?(queryValue: String) {
        switch queryValue {
        case "latest": self = .latest
        case "earliest": self = .earliest
        default:
            if let offset = Int64(queryValue), offset >= 0 {
                self = .offset(offset, partition: nil)
            } else if let milliseconds = RFC3339.milliseconds(queryValue) {
                self = .time(milliseconds: milliseconds)
            } else {
                return nil
            }
        }
    }
}
