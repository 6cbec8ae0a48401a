import StreamgateCore
import Testing

/// The catch-up → live hand-over, driven as the two readers would, checked for gaps and duplicates.
@Suite struct PartitionFanoutTests {
    typealias Fanout = PartitionFanout<String>

    @Test func firstSubscriberStartsTheLiveReaderAtTheHead() {
        var fanout = Fanout()
        #expect(fanout.subscribe("a", channel: "c", next: 10, head: 10) == [.startLive(at: 10)])
        #expect(fanout.subscribe("b", channel: "c", next: 10, head: 10) == [])
        var got: [String] = []
        fanout.liveRecord(channel: "c", offset: 10) { got.append($0) }
        fanout.liveRecord(channel: "other", offset: 11) { got.append($0) }
        #expect(got.sorted() == ["a", "b"])
        #expect(fanout.unsubscribe("a", channel: "c") == [])
        #expect(fanout.unsubscribe("b", channel: "c") == [.stopLive])
    }

    @Test func catchUpHandsOverWithoutGapOrDuplicate() {
        var fanout = Fanout()
        _ = fanout.subscribe("live", channel: "c", next: 100, head: 100)
        // Live reader moves on while a late subscriber wants 40.
        var delivered: [String: [Int64]] = [:]
        let record = { (name: String) in { (offset: Int64) in delivered[name, default: []].append(offset) } }
        for offset in Int64(100)..<105 { fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset) } }
        #expect(fanout.subscribe("late", channel: "c", next: 40, head: 105) == [.startSweep(at: 40)])
        // The sweep reads 40..<110 while the live reader delivers 105..<108 meanwhile.
        for offset in Int64(40)..<106 { fanout.sweepRecord(channel: "c", offset: offset) { record($0)(offset) } }
        for offset in Int64(105)..<108 { fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset) } }
        #expect(fanout.sweepBatchEnded() == [])
        for offset in Int64(106)..<110 { fanout.sweepRecord(channel: "c", offset: offset) { record($0)(offset) } }
        #expect(fanout.sweepBatchEnded() == [.stopSweep])
        for offset in Int64(108)..<112 { fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset) } }
        #expect(delivered["late"] == Array(40..<112))
        #expect(delivered["live"] == Array(100..<112))
    }

    @Test func earlierLateComerRewindsTheSweep() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 50, head: 100)
        #expect(fanout.sweepNext == 50)
        for offset in Int64(50)..<60 { fanout.sweepRecord(channel: "c", offset: offset) { _ in } }
        #expect(fanout.subscribe("b", channel: "c", next: 20, head: 100) == [.seekSweep(to: 20)])
        var got: [String: [Int64]] = [:]
        for offset in Int64(20)..<100 { fanout.sweepRecord(channel: "c", offset: offset) { got[$0, default: []].append(offset) } }
        #expect(fanout.sweepReachedEnd(offset: 100) == [.stopSweep])
        #expect(got["a"] == Array(60..<100))
        #expect(got["b"] == Array(20..<100))
    }

    @Test func idleSweepHandsOverAtTheEnd() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 7, head: 7)
        #expect(fanout.subscribe("b", channel: "c", next: 3, head: 7) == [.startSweep(at: 3)])
        #expect(fanout.sweepReachedEnd(offset: 7) == [.stopSweep])
        var got: [String] = []
        fanout.liveRecord(channel: "c", offset: 7) { got.append($0) }
        #expect(got.sorted() == ["a", "b"])
    }

    @Test func retentionGapIsAnnouncedAndReaderRepositioned() {
        var fanout = Fanout()
        _ = fanout.subscribe("live", channel: "c", next: 500, head: 500)
        _ = fanout.subscribe("old", channel: "c", next: 10, head: 500)
        var gaps: [(String, Int64, Int64)] = []
        let actions = fanout.readerOutOfRange(sweep: true, logStart: 200) { gaps.append(($0, $2, $3)) }
        #expect(actions == [.seekSweep(to: 200)])
        #expect(gaps.count == 1 && gaps[0] == ("old", 10, 200))
    }

    @Test func lastCatchingUpSubscriberLeavingStopsTheSweep() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 9, head: 9)
        _ = fanout.subscribe("b", channel: "d", next: 1, head: 9)
        #expect(fanout.unsubscribe("b", channel: "d") == [.stopSweep])
        #expect(fanout.sweepNext == nil)
        #expect(fanout.subscriberCount == 1)
    }
}
