/// Highest-random-weight (rendezvous) assignment of partitions to nodes: every node computes the same owner
/// from the same set of node ids, with no coordination, and a node that joins or leaves moves only its own
/// share of partitions.
///
/// The score mixes FNV-1a 64 of the node id and of `topic/partition`, each through the splitmix64 finalizer
/// and then together: stable across processes and platforms (never Swift's per-process seeded `Hasher`).
public enum Rendezvous {
    public static func score(node: String, partition: PartitionKey) -> UInt64 {
        mix(mix(fnv1a(node.utf8)) ^ mix(fnv1a(partition.description.utf8)))
    }

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

    /// The node that should own `partition`: the highest score, ties to the smaller id; `nil` without nodes.
    public static func owner(of partition: PartitionKey, among nodes: some Collection<String>) -> String? {
        var best: (node: String, score: UInt64)?
        for node in nodes {
            let score = score(node: node, partition: partition)
            if let current = best, current.score > score || (current.score == score && current.node < node) { continue }
            best = (node, score)
        }
        return best?.node
    }

    /// The owner of every partition.
    public static func assignment(partitions: some Collection<PartitionKey>, nodes: some Collection<String>)
        -> [PartitionKey: String]
    {
        var result: [PartitionKey: String] = [:]
        for partition in partitions {
            if let node = owner(of: partition, among: nodes) { result[partition] = node }
        }
        return result
    }
}
