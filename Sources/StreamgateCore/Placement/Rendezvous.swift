/// Highest-random-weight (rendezvous) assignment of partitions to nodes: every node computes the same owner
/// from the same set of node ids, with no coordination, and a node that joins or leaves moves only its own
/// share of the partitions.
///
/// The score of a node for a partition mixes FNV-1a 64 of the node id and FNV-1a 64 of `topic/partition`,
/// each through the splitmix64 finalizer and then together through it once more. It depends on the bytes
/// only: the same on every process, platform and version (never Swift's per-process seeded `Hasher`). Changing
/// it would move partitions between the nodes of a running cluster whose nodes disagree on it, so it is
/// pinned by tests.
public enum Rendezvous {
    /// The node's weight for the partition: the highest weight owns it.
    /// - Parameters:
    ///   - node: a node id.
    ///   - partition: the partition.
    public static func score(node: String, partition: PartitionKey) -> UInt64 {
        mix(mix(fnv1a(node.utf8)) ^ mix(fnv1a(partition.description.utf8)))
    }

    /// The node that should own `partition`: the highest score, a tie going to the smaller id.
    /// - Parameters:
    ///   - partition: the partition.
    ///   - nodes: the candidate node ids (duplicates are harmless).
    /// - Returns: `nil` when there is no candidate.
    public static func owner(of partition: PartitionKey, among nodes: some Collection<String>) -> String? {
        var best: (node: String, score: UInt64)?
        for node in nodes {
            let score = score(node: node, partition: partition)
            if let current = best, current.score > score || (current.score == score && current.node <= node) {
                continue
            }
            best = (node, score)
        }
        return best?.node
    }

    /// The owner of every partition; a partition is missing only when there are no nodes.
    /// - Parameters:
    ///   - partitions: the partitions to place.
    ///   - nodes: the candidate node ids.
    public static func assignment(partitions: some Collection<PartitionKey>, nodes: some Collection<String>)
        -> [PartitionKey: String]
    {
        var result: [PartitionKey: String] = [:]
        for partition in partitions {
            if let node = owner(of: partition, among: nodes) { result[partition] = node }
        }
        return result
    }

    /// FNV-1a, 64 bits.
    private static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// splitmix64's finalizer: every input bit reaches every output bit.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
