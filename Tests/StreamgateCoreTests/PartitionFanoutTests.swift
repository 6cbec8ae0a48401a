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
        _ = fanout.liveRecord(channel: "c", offset: 10) { got.append($0); return true }
        _ = fanout.liveRecord(channel: "other", offset: 11) { got.append($0); return true }
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
        for offset in Int64(100)..<105 { _ = fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset); return true } }
        #expect(fanout.subscribe("late", channel: "c", next: 40, head: 105) == [.startSweep(at: 40)])
        // The sweep reads 40..<110 while the live reader delivers 105..<108 meanwhile.
        for offset in Int64(40)..<106 { _ = fanout.sweepRecord(channel: "c", offset: offset) { record($0)(offset); return true } }
        for offset in Int64(105)..<108 { _ = fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset); return true } }
        #expect(fanout.sweepBatchEnded() == [])
        for offset in Int64(106)..<110 { _ = fanout.sweepRecord(channel: "c", offset: offset) { record($0)(offset); return true } }
        #expect(fanout.sweepBatchEnded() == [.stopSweep])
        for offset in Int64(108)..<112 { _ = fanout.liveRecord(channel: "c", offset: offset) { record($0)(offset); return true } }
        #expect(delivered["late"] == Array(40..<112))
        #expect(delivered["live"] == Array(100..<112))
    }

    @Test func earlierLateComerRewindsTheSweep() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 50, head: 100)
        #expect(fanout.sweepNext == 50)
        for offset in Int64(50)..<60 { _ = fanout.sweepRecord(channel: "c", offset: offset) { _ in true } }
        #expect(fanout.subscribe("b", channel: "c", next: 20, head: 100) == [.seekSweep(to: 20)])
        var got: [String: [Int64]] = [:]
        for offset in Int64(20)..<100 { _ = fanout.sweepRecord(channel: "c", offset: offset) { got[$0, default: []].append(offset); return true } }
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
        _ = fanout.liveRecord(channel: "c", offset: 7) { got.append($0); return true }
        #expect(got.sorted() == ["a", "b"])
    }

    @Test func retentionGapIsAnnouncedAndReaderRepositioned() {
        var fanout = Fanout()
        _ = fanout.subscribe("live", channel: "c", next: 500, head: 500)
        _ = fanout.subscribe("old", channel: "c", next: 10, head: 500)
        var gaps: [(String, Int64, Int64)] = []
        let actions = fanout.readerOutOfRange(sweep: true, logStart: 200, logEnd: 500) {
            gaps.append(($0, $2.from, $2.to))
        }
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

    // MARK: - Flow control

    @Test func refusedDeliveryPausesWithoutSkippingAndResumeCatchesUpThroughTheSweep() {
        var fanout = Fanout()
        _ = fanout.subscribe("slow", channel: "c", next: 0, head: 0)
        _ = fanout.subscribe("fast", channel: "c", next: 0, head: 0)
        var got: [String: [Int64]] = [:]
        var full = false
        let deliver = { (offset: Int64) in
            { (name: String) -> Bool in
                if name == "slow" && full { return false }
                got[name, default: []].append(offset)
                return true
            }
        }
        for offset in Int64(0)..<5 { #expect(fanout.liveRecord(channel: "c", offset: offset, deliver: deliver(offset)) == []) }
        full = true
        for offset in Int64(5)..<10 { _ = fanout.liveRecord(channel: "c", offset: offset, deliver: deliver(offset)) }
        #expect(fanout.pausedCount == 1)
        #expect(fanout.next(of: "slow", channel: "c") == 5)
        full = false
        #expect(fanout.resume("slow", channel: "c") == [.startSweep(at: 5)])
        for offset in Int64(5)..<10 { _ = fanout.sweepRecord(channel: "c", offset: offset, deliver: deliver(offset)) }
        #expect(fanout.sweepReachedEnd(offset: 10) == [.stopSweep])
        _ = fanout.liveRecord(channel: "c", offset: 10, deliver: deliver(10))
        #expect(got["slow"] == Array(0...10))
        #expect(got["fast"] == Array(0...10))
    }

    @Test func pausedSweepSubscriberLetsTheSweepMoveOnOrStop() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 0, head: 100)
        _ = fanout.subscribe("b", channel: "d", next: 50, head: 100)
        // a refuses its first record: it pauses; b (at 50) is the only sweep subscriber left, so the sweep skips ahead.
        let actions = fanout.sweepRecord(channel: "c", offset: 10) { _ in false }
        #expect(actions == [.seekSweep(to: 50)])
        #expect(fanout.next(of: "a", channel: "c") == 0)  // not advanced: the refused record is not skipped
        #expect(fanout.sweepRecord(channel: "d", offset: 50) { _ in false } == [.stopSweep])
        #expect(fanout.sweepNext == nil)
        #expect(fanout.resume("a", channel: "c") == [.startSweep(at: 0)])
        #expect(fanout.resume("b", channel: "d") == [])
        #expect(fanout.resume("a", channel: "c") == [])
    }

    @Test func unsubscribingTheLowestCatchUpMovesTheSweepForward() {
        // A client rewinding the shared sweep with {"offset": 0} and leaving must not leave it rewound.
        var fanout = Fanout()
        _ = fanout.subscribe("reader", channel: "x", next: 1000, head: 5000)
        for offset in Int64(1000)..<1200 { _ = fanout.sweepRecord(channel: "x", offset: offset) { _ in true } }
        #expect(fanout.subscribe("rewinder", channel: "y", next: 0, head: 5000) == [.seekSweep(to: 0)])
        #expect(fanout.unsubscribe("rewinder", channel: "y") == [.seekSweep(to: 1200)])
        #expect(fanout.sweepNext == 1200)
    }

    // MARK: - Out of range

    @Test func retentionGapStartsAtTheReaderPositionNotTheCursor() {
        var fanout = Fanout()
        _ = fanout.subscribe("old", channel: "c", next: 10, head: 500)
        // The sweep read 10..<120 and found nothing of channel c; then retention overtook it at 120.
        for offset in Int64(10)..<120 { _ = fanout.sweepRecord(channel: "other", offset: offset) { _ in true } }
        var gaps: [(String, ServerFrameEncoder.Gap)] = []
        let actions = fanout.readerOutOfRange(sweep: true, logStart: 300, logEnd: 600) { gaps.append(($0, $2)) }
        #expect(actions == [.seekSweep(to: 300)])
        #expect(gaps.count == 1)
        #expect(gaps.first?.1 == .init(from: 120, to: 300, reason: "retention"))
        #expect(fanout.next(of: "old", channel: "c") == 300)
    }

    @Test func positionPastTheLogEndIsAnnouncedAsTruncatedAndReadersMoveBack() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 900, head: 900)
        _ = fanout.subscribe("b", channel: "c", next: 900, head: 900)
        var gaps: [String: ServerFrameEncoder.Gap] = [:]
        let actions = fanout.readerOutOfRange(sweep: false, logStart: 0, logEnd: 40) { gaps[$0] = $2 }
        #expect(actions == [.seekLive(to: 40)])
        #expect(gaps["a"] == .init(from: 900, to: 40, reason: "truncated"))
        #expect(gaps["b"] == .init(from: 900, to: 40, reason: "truncated"))
        var got: [String] = []
        _ = fanout.liveRecord(channel: "c", offset: 40) { got.append($0); return true }
        #expect(got.sorted() == ["a", "b"])
    }

    @Test func transientOutOfRangeRepositionsWithoutAGap() {
        var fanout = Fanout()
        _ = fanout.subscribe("a", channel: "c", next: 50, head: 50)
        var announced = 0
        #expect(fanout.readerOutOfRange(sweep: false, logStart: 0, logEnd: 80) { _, _, _ in announced += 1 } == [.seekLive(to: 50)])
        #expect(announced == 0)
    }
}
