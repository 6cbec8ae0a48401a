/// One partition of a topic, as placement names it: `docs/3`.
public struct PartitionKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// Reads `topic/partition`; `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        guard let slash = text.lastIndex(of: "/"), let partition = Int32(text[text.index(after: slash)...]),
            partition >= 0, slash != text.startIndex
        else { return nil }
        self.init(topic: String(text[..<slash]), partition: partition)
    }

    public var description: String { "\(topic)/\(partition)" }

    public static func < (lhs: PartitionKey, rhs: PartitionKey) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}
