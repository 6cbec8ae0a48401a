/// Kafka's default partitioner for keyed records: murmur2 of the key, made positive, modulo the
/// partition count. Java's `Utils.murmur2` and librdkafka's `murmur2_random` agree on it, so every
/// producer that writes key = channel reaches the same partition.
public enum Murmur2Partitioner {
    /// The partition for `key` among `partitionCount` partitions.
    public static func partition<Key: Collection>(for key: Key, partitionCount: Int) -> Int32
    where Key.Element == UInt8 {
        precondition(partitionCount > 0, "a topic has at least one partition")
        let positive = UInt32(bitPattern: murmur2(key)) & 0x7fff_ffff
        return Int32(positive % UInt32(partitionCount))
    }

    /// Kafka's murmur2 (seed 0x9747b28c), returned as Java's signed 32-bit result.
    public static func murmur2<Key: Collection>(_ key: Key) -> Int32 where Key.Element == UInt8 {
        let bytes = Array(key)
        let length = bytes.count
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        let blocks = length / 4
        for index in 0..<blocks {
            let base = index * 4
            var k = UInt32(bytes[base]) | UInt32(bytes[base + 1]) << 8 | UInt32(bytes[base + 2]) << 16
                | UInt32(bytes[base + 3]) << 24
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = blocks * 4
        switch length % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h = h &* m
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h = h &* m
        case 1:
            h ^= UInt32(bytes[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }
}
