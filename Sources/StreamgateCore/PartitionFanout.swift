/// The subscriptions of one Kafka partition on this node, and the two readers that feed them.
///
/// One **live** reader follows the partition's tail for every subscriber; one **sweep** reader serves
/// subscribers that start behind the tail, from the lowest such position, and hands each over to the live
/// stream once it has read up to where the live reader is. A record reaches a subscriber only if its offset
/// is at or past the subscriber's next offset, which makes the hand-over free of gaps and duplicates
/// whichever reader is ahead.
///
/// A pure state machine: methods return the reader actions the owner must perform; deliveries are handed
/// to a closure. Not thread-safe: the owner serialises calls.
public struct PartitionFanout<Subscriber: Hashable> {
    /// A reader action for the owner to perform.
    public enum Action: Equatable {
        case startLive(at: Int64)
        case stopLive
        /// Restart the live reader at `at` (its position fell out of the retained log).
        case seekLive(to: Int64)
        case startSweep(at: Int64)
        /// Move the running sweep back to `to`.
        case seekSweep(to: Int64)
        case stopSweep
    }

    /// A reference, so that a delivery pass can advance cursors while iterating without copying the table.
    final class Cursor {
        /// The lowest offset this subscriber may still receive.
        var next: Int64
        var catchingUp: Bool
        init(next: Int64, catchingUp: Bool) {
            self.next = next
            self.catchingUp = catchingUp
        }
    }

    /// - Important: a value of this type owns reference cursors: do not copy it and use both copies.

    private(set) var channels: [String: [Subscriber: Cursor]] = [:]
    /// Next offset the live reader will hand over; `nil` when it is not running.
    public private(set) var liveNext: Int64?
    /// Next offset the sweep reader will hand over; `nil` when it is not running.
    public private(set) var sweepNext: Int64?
    private var catchingUpCount = 0

    public init() {}

    /// Number of subscribers, all channels together.
    public var subscriberCount: Int { channels.values.reduce(0) { $0 + $1.count } }

    /// Adds a subscriber whose first deliverable offset is `next`; `head` is the partition's end offset now.
    public mutating func subscribe(_ subscriber: Subscriber, channel: String, next: Int64, head: Int64) -> [Action] {
        var actions: [Action] = []
        if liveNext == nil {
            liveNext = head
            actions.append(.startLive(at: head))
        }
        let behind = next < liveNext!
        channels[channel, default: [:]][subscriber] = Cursor(next: next, catchingUp: behind)
        guard behind else { return actions }
        catchingUpCount += 1
        if let sweep = sweepNext {
            if next < sweep {
                sweepNext = next
                actions.append(.seekSweep(to: next))
            }
        } else {
            sweepNext = next
            actions.append(.startSweep(at: next))
        }
        return actions
    }

    /// Removes a subscriber; stops readers nobody needs any more.
    public mutating func unsubscribe(_ subscriber: Subscriber, channel: String) -> [Action] {
        guard let cursor = channels[channel]?.removeValue(forKey: subscriber) else { return [] }
        if channels[channel]?.isEmpty == true { channels[channel] = nil }
        var actions: [Action] = []
        if cursor.catchingUp {
            catchingUpCount -= 1
            if catchingUpCount == 0, sweepNext != nil {
                sweepNext = nil
                actions.append(.stopSweep)
            }
        }
        if channels.isEmpty, liveNext != nil {
            liveNext = nil
            actions.append(.stopLive)
        }
        return actions
    }

    /// A record from the live reader: delivered to the channel's live subscribers that have not had it.
    public mutating func liveRecord(channel: String, offset: Int64, deliver: (Subscriber) -> Void) {
        guard liveNext != nil else { return }
        liveNext = offset + 1
        advance(channel: channel, offset: offset, catchingUp: false, deliver: deliver)
    }

    /// The live reader reached the end of the partition: `offset` is the next one to be written.
    public mutating func liveReachedEnd(offset: Int64) -> [Action] {
        guard let live = liveNext else { return [] }
        liveNext = max(live, offset)
        return []
    }

    /// A record from the sweep reader: delivered to the channel's catching-up subscribers that have not had it.
    public mutating func sweepRecord(channel: String, offset: Int64, deliver: (Subscriber) -> Void) {
        guard sweepNext != nil else { return }
        sweepNext = offset + 1
        advance(channel: channel, offset: offset, catchingUp: true, deliver: deliver)
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

    /// A reader's position fell out of the retained log, which now starts at `logStart`.
    ///
    /// Every subscriber fed by that reader whose next offset is below `logStart` is moved there and reported
    /// through `announce` with the gap it suffered.
    public mutating func readerOutOfRange(
        sweep: Bool, logStart: Int64, announce: (Subscriber, _ channel: String, _ from: Int64, _ to: Int64) -> Void
    ) -> [Action] {
        for (channel, subscribers) in channels {
            for (subscriber, cursor) in subscribers where cursor.catchingUp == sweep && cursor.next < logStart {
                let from = cursor.next
                cursor.next = logStart
                announce(subscriber, channel, from, logStart)
            }
        }
        // The reader stopped at the error: it is always repositioned, at the log start or where it was.
        if sweep {
            guard let current = sweepNext else { return [] }
            sweepNext = max(current, logStart)
            return [.seekSweep(to: sweepNext!)]
        }
        guard let current = liveNext else { return [] }
        liveNext = max(current, logStart)
        return [.seekLive(to: liveNext!)]
    }

    private mutating func advance(channel: String, offset: Int64, catchingUp: Bool, deliver: (Subscriber) -> Void) {
        guard let subscribers = channels[channel] else { return }
        for (subscriber, cursor) in subscribers where cursor.catchingUp == catchingUp && cursor.next <= offset {
            cursor.next = offset + 1
            deliver(subscriber)
        }
    }

    private mutating func handOver() -> [Action] {
        guard let sweep = sweepNext, let live = liveNext, sweep >= live else { return [] }
        for subscribers in channels.values {
            for cursor in subscribers.values where cursor.catchingUp { cursor.catchingUp = false }
        }
        catchingUpCount = 0
        sweepNext = nil
        return [.stopSweep]
    }
}

/// The cursors are reachable only through the value, and its owner serialises every access (a lock).
extension PartitionFanout: @unchecked Sendable where Subscriber: Sendable {}
