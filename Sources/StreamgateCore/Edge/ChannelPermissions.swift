/// What a token lets a connection do, from its `channels` claim (PROTOCOL §8):
/// `{"sub": ["doc:42", "news", "chat:*"], "pub": ["doc:42"]}`.
public struct ChannelPermissions: Sendable, Equatable {
    /// One entry of the claim: an exact channel name, a prefix ending in `*`, or `*` alone (every channel).
    public enum Pattern: Sendable, Equatable {
        case exact(String)
        case prefix(String)
        case any

        /// `nil` for an entry that is neither a channel name nor a channel-name prefix followed by `*`.
        public init?(_ entry: String) {
            if entry == "*" {
                self = .any
            } else if entry.hasSuffix("*") {
                let prefix = String(entry.dropLast())
                guard ChannelName(prefix) != nil else { return nil }
                self = .prefix(prefix)
            } else {
                guard ChannelName(entry) != nil else { return nil }
                self = .exact(entry)
            }
        }

        public func matches(_ channel: ChannelName) -> Bool {
            switch self {
            case .any: true
            case .exact(let name): channel.value == name
            case .prefix(let prefix): channel.value.utf8.starts(with: prefix.utf8)
            }
        }
    }

    public var subscribe: [Pattern]
    public var publish: [Pattern]

    /// Everything: what a node without authentication grants.
    public static let all = ChannelPermissions(subscribe: [.any], publish: [.any])
    /// Nothing.
    public static let none = ChannelPermissions(subscribe: [], publish: [])

    public init(subscribe: [Pattern], publish: [Pattern]) {
        self.subscribe = subscribe
        self.publish = publish
    }

    /// From the claim's lists. Entries that are not patterns grant nothing and are returned as `invalid`, so
    /// the caller can refuse the token or log them.
    public static func parse(subscribe: [String], publish: [String]) -> (permissions: ChannelPermissions, invalid: [String]) {
        var invalid: [String] = []
        func patterns(_ entries: [String]) -> [Pattern] {
            entries.compactMap { entry in
                guard let pattern = Pattern(entry) else {
                    invalid.append(entry)
                    return nil
                }
                return pattern
            }
        }
        return (ChannelPermissions(subscribe: patterns(subscribe), publish: patterns(publish)), invalid)
    }

    /// `sub` covers subscribing from any position, history included.
    public func canSubscribe(_ channel: ChannelName) -> Bool { subscribe.contains { $0.matches(channel) } }

    public func canPublish(_ channel: ChannelName) -> Bool { publish.contains { $0.matches(channel) } }
}
