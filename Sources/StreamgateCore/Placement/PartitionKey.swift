/// One partition of a Kafka topic, as placement names it: `docs/3` (PROTOCOL §9).
///
/// The text form is the partition's part of its owner key in etcd (`P/owners/docs/3`) and of the cluster
/// view (`/v1/cluster`). It is unambiguous because Kafka topic names are `[A-Za-z0-9._-]` (no `/`).
public struct PartitionKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The topic's name.
    public var topic: String
    /// The partition's index in its topic, from 0.
    public var partition: Int32

    /// - Parameters:
    ///   - topic: the topic's name (not checked here: configured topics are checked when they are read).
    ///   - partition: the partition's index.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// Reads the text form `topic/partition`, e.g. `docs/3`.
    ///
    /// Only the canonical form is accepted, so that reading and writing a key round-trip: a topic of 1–249
    /// bytes of `[A-Za-z0-9._-]`, one `/`, and a partition in decimal without sign or leading zero.
    /// - Parameter text: the text to read.
    /// - Returns: `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        let topic = bytes[..<slash]
        let digits = bytes[(slash + 1)...]
        guard Self.isValidTopic(topic), let partition = Self.canonicalPartition(digits) else { return nil }
        self.init(topic: String(decoding: topic, as: UTF8.self), partition: partition)
    }

    /// `topic/partition`.
    public var description: String { "\(topic)/\(partition)" }

    /// Orders by topic, then by partition number (so `docs/2` comes before `docs/10`).
    public static func < (lhs: PartitionKey, rhs: PartitionKey) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    /// Kafka's rule for topic names: 1–249 bytes of `[A-Za-z0-9._-]`.
    /// - Parameter topic: the name's bytes.
    public static func isValidTopic(_ topic: some Collection<UInt8>) -> Bool {
        (1...249).contains(topic.count) && topic.allSatisfy(isNameByte)
    }

    /// `[A-Za-z0-9._-]`: the bytes of Kafka topic names and of node ids.
    static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    /// A non-negative `Int32` in decimal, without sign or leading zero; `nil` otherwise.
    private static func canonicalPartition(_ digits: ArraySlice<UInt8>) -> Int32? {
        guard let first = digits.first, digits.count <= 10, first != UInt8(ascii: "0") || digits.count == 1 else {
            return nil
        }
        var value: Int64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            value = value * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        return Int32(exactly: value)
    }
}
