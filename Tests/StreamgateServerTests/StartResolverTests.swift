import StreamgateCore
import Testing

@testable import StreamgateServer

/// Start resolution against a scripted partition, no cluster.
@Suite struct StartResolverTests {
    /// A partition with records at `offsets`, timestamps 1000 × offset.
    struct FakeLookup: PartitionLookup {
        var low: Int64
        var high: Int64
        func watermarks(topic: String, partition: Int32, timeoutMilliseconds: Int32) throws -> (low: Int64, high: Int64) {
            (low, high)
        }
        func brokerOffset(topic: String, partition: Int32, timestampMilliseconds: Int64, timeoutMilliseconds: Int32)
            throws -> Int64
        { -1 }
        func firstRecord(topic: String, partition: Int32, from offset: Int64, timeoutMilliseconds: Int) throws
            -> (offset: Int64, timestamp: Int64)?
        {
            let at = max(offset, low)
            return at < high ? (at, at * 1000) : nil
        }
    }

    static let location = TopicPartition(topic: "t", partition: 0)

    @Test func latestStartsAtTheLiveReaderNotAStaleCachedHead() throws {
        // The live reader restarted at 120; its cache still holds an earlier assignment's head, 100.
        let resolver = StartResolver(lookup: FakeLookup(low: 0, high: 130),
                                     known: { _ in KnownPosition(liveNext: 120, cached: (0, 100)) })
        let resolution = try resolver.resolve(.latest, in: Self.location)
        #expect(resolution.next == 120)
        #expect(resolution.head >= 120)
    }

    @Test func latestStartsAtTheHeadWhenTheLiveReaderHasNotHandedItAllOverYet() throws {
        // Record 154 was written before the subscribe: "latest" must not deliver it.
        let resolver = StartResolver(lookup: FakeLookup(low: 0, high: 155),
                                     known: { _ in KnownPosition(liveNext: 154, cached: (0, 155)) })
        #expect(try resolver.resolve(.latest, in: Self.location) == StartResolution(next: 155, head: 155, gap: nil))
    }

    @Test func latestWithoutALiveReaderAsksTheBroker() throws {
        let resolver = StartResolver(lookup: FakeLookup(low: 0, high: 130), known: { _ in nil })
        #expect(try resolver.resolve(.latest, in: Self.location) == StartResolution(next: 130, head: 130, gap: nil))
    }

    @Test func timeBeforeAPrunedLogStartAnnouncesAGap() throws {
        let resolver = StartResolver(lookup: FakeLookup(low: 50, high: 80), known: { _ in nil })
        let resolution = try resolver.resolve(.time(milliseconds: 1), in: Self.location)
        #expect(resolution == StartResolution(next: 50, head: 80, gap: .init(from: 0, to: 50, reason: "retention")))
        // Inside the retained log: no gap.
        let inside = try resolver.resolve(.time(milliseconds: 60_000), in: Self.location)
        #expect(inside == StartResolution(next: 60, head: 80, gap: nil))
        // Nothing was ever pruned: no gap either.
        let whole = StartResolver(lookup: FakeLookup(low: 0, high: 80), known: { _ in nil })
        #expect(try whole.resolve(.time(milliseconds: 1), in: Self.location).gap == nil)
    }

    @Test func offsetsOutsideTheLogAreAnnounced() throws {
        let resolver = StartResolver(lookup: FakeLookup(low: 50, high: 80), known: { _ in nil })
        #expect(try resolver.resolve(.offset(10, partition: nil), in: Self.location).gap
            == .init(from: 10, to: 50, reason: "retention"))
        #expect(try resolver.resolve(.offset(90, partition: nil), in: Self.location).gap
            == .init(from: 90, to: 80, reason: "beyond_head"))
        #expect(try resolver.resolve(.offset(60, partition: 3), in: Self.location).gap
            == .init(from: 60, to: 50, reason: "repartitioned"))
        #expect(try resolver.resolve(.offset(60, partition: nil), in: Self.location)
            == StartResolution(next: 60, head: 80, gap: nil))
    }
}
