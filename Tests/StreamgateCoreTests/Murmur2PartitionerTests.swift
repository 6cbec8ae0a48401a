import StreamgateCore
import Testing

@Suite struct Murmur2PartitionerTests {
    /// Kafka's own murmur2 test vectors (`UtilsTest.testMurmur2`).
    @Test(arguments: [
        ("21", Int32(-973_932_308)),
        ("foobar", Int32(-790_332_482)),
        ("a-little-bit-long-string", Int32(-985_981_536)),
        ("a-little-bit-longer-string", Int32(-1_486_304_829)),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", Int32(-58_897_971)),
        ("abc", Int32(479_470_107)),
    ])
    func matchesKafkaVectors(key: String, expected: Int32) {
        #expect(Murmur2Partitioner.murmur2(Array(key.utf8)) == expected)
    }

    @Test func partitionIsPositiveModulo() {
        let hash = Murmur2Partitioner.murmur2(Array("foobar".utf8))
        let expected = Int32((UInt32(bitPattern: hash) & 0x7fff_ffff) % 12)
        #expect(Murmur2Partitioner.partition(for: "foobar".utf8, partitionCount: 12) == expected)
        for count in 1...64 {
            let partition = Murmur2Partitioner.partition(for: "doc:42".utf8, partitionCount: count)
            #expect(partition >= 0 && partition < Int32(count))
        }
    }
}
