/// The subscriptions of one Kafka partition on this node, and the two readers that feed them.
///
/// One **live** reader follows the partition's tail for every subscriber; one **sweep** reader serves
/// subscribers that start behind the tail, from the lowest such position, and hands each over to the live
/// stream once it has read up to where the live reader is. A record reaches a subscriber only if its offset
/// is at or past the subscriber's next offset, which makes the hand-over free of gaps and duplicates
/// whichever reader is ahead.
///
/// Flow control: a delivery the subscriber cannot take now (its connection's outbound queue is full) is
/// refused by the `deliver` closure; the subscriber is then **paused** at that record — nothing is skipped —
/// and takes no records until ``resume(_:channel:)``, when it catches up from where it stopped through the
/// sweep. A slow reader is thus paced by its own connection and never holds back the partition.
///
/// A pure state machine: methods return the reader actions the owner must perform; deliveries are handed
/// to a closure. Not thread-safe: the owner serialises calls.
public struct PartitionFanout<Subscriber: Hashable> {
    /// A reader action for the owner to perform.
    public enum Action: Equatable {
        case startLive(at: Int64)
        case stopLive
        /// Restart the live reader at `to` (its position fell out of the retained log).
        case seekLive(to: Int64)
        case startSweep(at: Int64)
        /// Move the running sweep to `to` (back for an earlier start, forward past what nobody needs).
        case seekSweep(to: Int64)
        case stopSweep
    }

    /// Which reader feeds a subscriber, if any.
    enum Feed {
        case live
        case sweep
        /// Refused a delivery; takes nothing until resumed.
        case paused
    }

    /// A reference, so that a delivery pass can advance cursors while iterating without copying the table.
    final class Cursor {
        /// The lowest offset this subscriber may still receive.
        var next: Int64
        var feed: Feed
        init(next: Int64, feed: Feed) {
            self.next = next
            self.feed = feed
        }
    }

    /// - Important: a value of this type owns reference cursors: do not copy it and use both copies.

    private(set) var channels: [String: [Subscriber: Cursor]] = [:]
    /// Next offset the live reader will hand over; `nil` when it is not running.
    public private(set) var liveNext: Int64?
    /// Next offset the sweep reader will hand over; `nil` when it is not running.
    public private(set) var sweepNext: Int64?
    private var sweepCount = 0

    public init() {}

    /// Number of subscribers, all channels together.
    public var subscriberCount: Int { channels.values.reduce(0) { $0 + $1.count } }

    /// Number of subscribers catching up through the sweep reader.
    public var catchingUpCount: Int { sweepCount }

    /// How far the sweep reader is behind the live reader, in offsets (`nil` unless both run).
    public var sweepLag: Int64? {
        guard let liveNext, let sweepNext else { return nil }
        return max(0, liveNext - sweepNext)
    }

    /// Number of subscribers paused by flow control.
    public var pausedCount: Int {
        channels.values.reduce(0) { total, cursors in total + cursors.values.filter { $0.feed == .paused }.count }
    }

    /// Every subscriber, all channels together.
    public var subscribers: [Subscriber] { channels.values.flatMap(\.keys) }

    /// The next offset `subscriber` may receive, if it is subscribed.
    public func next(of subscriber: Subscriber, channel: String) -> Int64? {
        channels[channel]?[subscriber]?.next
    }

    /// Adds a subscriber whose first deliverable offset is `next`; `head` is the partition's end offset now.
    public mutating func subscribe(_ subscriber: Subscriber, channel: String, next: Int64, head: Int64) -> [Action] {
        var actions: [Action] = []
        if liveNext == nil {
            liveNext = head
            actions.append(.startLive(at: head))
        }
        let cursor = Cursor(next: next, feed: .paused)
        channels[channel, default: [:]][subscriber] = cursor
        actions += feed(cursor)
        return actions
    }

    /// Removes a subscriber; stops readers nobody needs any more and moves the sweep past what nobody needs.
    public mutating func unsubscribe(_ subscriber: Subscriber, channel: String) -> [Action] {
        guard let cursor = channels[channel]?.removeValue(forKey: subscriber) else { return [] }
        if channels[channel]?.isEmpty == true { channels[channel] = nil }
        var actions = cursor.feed == .sweep ? leaveSweep() : []
        if channels.isEmpty, liveNext != nil {
            liveNext = nil
            actions.append(.stopLive)
        }
        return actions
    }

    /// Lets a paused subscriber take records again, from where it stopped.
    public mutating func resume(_ subscriber: Subscriber, channel: String) -> [Action] {
        guard let cursor = channels[channel]?[subscriber], cursor.feed == .paused else { return [] }
        return feed(cursor)
    }

    /// A record from the live reader: delivered to the channel's live subscribers that have not had it.
    ///
    /// `deliver` returns `false` when the subscriber cannot take it now: that subscriber is paused.
    public mutating func liveRecord(channel: String, offset: Int64, deliver: (Subscriber) -> Bool) -> [Action] {
        guard liveNext != nil else { return [] }
        liveNext = offset + 1
        return advance(channel: channel, offset: offset, feed: .live, deliver: deliver)
    }

    /// The live reader reached the end of the partition: `offset` is the next one to be written.
    public mutating func liveReachedEnd(offset: Int64) -> [Action] {
        guard let live = liveNext else { return [] }
        liveNext = max(live, offset)
        return []
    }

    /// A record from the sweep reader: delivered to the channel's catching-up subscribers that have not had it.
    public mutating func sweepRecord(channel: String, offset: Int64, deliver: (Subscriber) -> Bool) -> [Action] {
        guard sweepNext != nil else { return [] }
        sweepNext = offset + 1
        return advance(channel: channel, offset: offset, feed: .sweep, deliver: deliver)
    }

    /// The sweep reader reached the end of the partition: `offset` is the next one to be written.
    public mutating func sweepReachedEnd(offset: Int64) -> [Action] {
        guard let sweep = sweepNext else { return [] }
        sweepNext = max(sweep, offset)
        return handOver()
    }

    /// After a batch of sweep records: hands caught-up subscribers over to the live stream.
    public mutating func sweepBatchEnded() -> [Action] {
        handOver()
    }

    /// A reader's position is outside the partition's log, which now holds `[logStart, logEnd)`.
    ///
    /// Below the log start (retention overtook the reader), every subscriber fed by that reader whose next
    /// offset is below `logStart` moves there, and `announce` reports the gap: from the first offset that was
    /// not read for it (the reader's position: everything before was read and held nothing of its channel)
    /// to the log start. Past the log end (the log was truncated or the topic recreated), subscribers past the
    /// end move back to it — the offsets from there on are new records — and `announce` reports
    /// `truncated`. Otherwise (a transient error) the reader is simply repositioned where it was.
    public mutating func readerOutOfRange(
        sweep: Bool, logStart: Int64, logEnd: Int64,
        announce: (Subscriber, _ channel: String, ServerFrameEncoder.Gap) -> Void
    ) -> [Action] {
        guard let position = sweep ? sweepNext : liveNext else { return [] }
        let fed: Feed = sweep ? .sweep : .live
        var target = position
        if position < logStart {
            target = logStart
            for (channel, subscribers) in channels {
                for (subscriber, cursor) in subscribers where cursor.feed == fed && cursor.next < logStart {
                    let from = max(cursor.next, position)
                    cursor.next = logStart
                    announce(subscriber, channel, .init(from: from, to: logStart, reason: "retention"))
                }
            }
        } else if position > logEnd {
            target = logEnd
            for (channel, subscribers) in channels {
                for (subscriber, cursor) in subscribers where cursor.next > logEnd {
                    let from = cursor.next
                    cursor.next = logEnd
                    announce(subscriber, channel, .init(from: from, to: logEnd, reason: "truncated"))
                }
            }
        }
        if sweep {
            sweepNext = target
            return [.seekSweep(to: target)]
        }
        liveNext = target
        return [.seekLive(to: target)]
    }

    /// Puts a paused (or new) cursor on the reader that serves its position.
    private mutating func feed(_ cursor: Cursor) -> [Action] {
        guard let live = liveNext, cursor.next < live else {
            cursor.feed = .live
            return []
        }
        cursor.feed = .sweep
        sweepCount += 1
        if let sweep = sweepNext {
            guard cursor.next < sweep else { return [] }
            sweepNext = cursor.next
            return [.seekSweep(to: cursor.next)]
        }
        sweepNext = cursor.next
        return [.startSweep(at: cursor.next)]
    }

    /// A sweep subscriber left (unsubscribed or paused): stop the sweep when nobody needs it, or move it
    /// forward when everyone it still serves is ahead of it.
    private mutating func leaveSweep() -> [Action] {
        sweepCount -= 1
        guard let sweep = sweepNext else { return [] }
        guard sweepCount > 0 else {
            sweepNext = nil
            return [.stopSweep]
        }
        var lowest = Int64.max
        for subscribers in channels.values {
            for cursor in subscribers.values where cursor.feed == .sweep { lowest = min(lowest, cursor.next) }
        }
        guard lowest > sweep, lowest != .max else { return [] }
        sweepNext = lowest
        return [.seekSweep(to: lowest)]
    }

    private mutating func advance(channel: String, offset: Int64, feed: Feed, deliver: (Subscriber) -> Bool)
        -> [Action]
    {
        guard let subscribers = channels[channel] else { return [] }
        var actions: [Action] = []
        for (subscriber, cursor) in subscribers where cursor.feed == feed && cursor.next <= offset {
            if deliver(subscriber) {
                cursor.next = offset + 1
            } else {
                cursor.feed = .paused
                if feed == .sweep { actions += leaveSweep() }
            }
        }
        return actions
    }

    private mutating func handOver() -> [Action] {
        guard let sweep = sweepNext, let live = liveNext, sweep >= live else { return [] }
        for subscribers in channels.values {
            for cursor in subscribers.values where cursor.feed == .sweep { cursor.feed = .live }
        }
        sweepCount = 0
        sweepNext = nil
        return [.stopSweep]
    }
}

/// The cursors are reachable only through the value, and its owner serialises every access (a lock).
extension PartitionFanout: @unchecked Sendable where Subscriber: Sendable {}
