import StreamgateCore

/// Instants of a manual clock: the tests decide what time it is.
struct TestInstant: InstantProtocol, CustomStringConvertible {
    var offset: Duration

    func advanced(by duration: Duration) -> TestInstant { TestInstant(offset: offset + duration) }
    func duration(to other: TestInstant) -> Duration { other.offset - offset }
    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool { lhs.offset < rhs.offset }

    /// `value` seconds after the clock's origin.
    static func seconds(_ value: Double) -> TestInstant {
        TestInstant(offset: .milliseconds(Int64((value * 1000).rounded())))
    }

    var description: String { "t=\(offset)" }
}

/// A small deterministic random generator (splitmix64), so that every run is the same.
struct PlacementRandom: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

enum PlacementFixtures {
    static let keys = PlacementKeys(prefix: "/sg")

    static func partitions(_ count: Int, topic: String = "docs") -> [PartitionKey] {
        (0..<count).map { PartitionKey(topic: topic, partition: Int32($0)) }
    }

    static func recordJSON(_ node: String) -> [UInt8] {
        Array(#"{"url":"wss://\#(node).example.test:8443","connections":0,"started":0}"#.utf8)
    }

    /// A directory read from a range: `nodes` registered, `owners` as given.
    static func directory(nodes: [String], owners: [PartitionKey: String] = [:], revision: Int64 = 1)
        -> PlacementDirectory
    {
        var entries: [(key: String, value: [UInt8])] = nodes.map { (keys.nodeKey($0), recordJSON($0)) }
        entries += owners.map { (keys.ownerKey($0.key), Array($0.value.utf8)) }
        return PlacementDirectory(keys: keys, entries: entries, revision: revision)
    }
}

extension OwnershipStateMachine.Action {
    var claimed: PartitionKey? { if case .claim(let partition) = self { partition } else { nil } }
    var released: PartitionKey? { if case .release(let partition) = self { partition } else { nil } }
    var started: PartitionKey? { if case .startServing(let partition) = self { partition } else { nil } }
    var stopped: PartitionKey? { if case .stopServing(let partition, _) = self { partition } else { nil } }
}

extension Array {
    func set<T: Hashable>(_ transform: (Element) -> T?) -> Set<T> { Set(compactMap(transform)) }
}
