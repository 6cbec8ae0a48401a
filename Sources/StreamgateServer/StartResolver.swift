import StreamgateCore
import StreamgateKafka

/// Where a subscription really starts: its first deliverable offset, the partition's head, and the gap to
/// announce when the requested position no longer exists.
struct StartResolution: Sendable, Equatable {
    var next: Int64
    var head: Int64
    var gap: ServerFrameEncoder.Gap?
}

/// What the node knows of a partition's log without a request (``DeliveryHub/knownPosition(_:)``).
struct KnownPosition: Sendable, Equatable {
    /// The live reader's next offset: where "latest" starts, since it follows the partition.
    var liveNext: Int64
    /// The watermarks of the live reader's last fetch, when it has fetched since it started following.
    var cached: (low: Int64, high: Int64)?

    static func == (lhs: KnownPosition, rhs: KnownPosition) -> Bool {
        lhs.liveNext == rhs.liveNext && lhs.cached?.low == rhs.cached?.low && lhs.cached?.high == rhs.cached?.high
    }
}

/// The blocking questions start resolution asks of Kafka: the seam that lets it be tested without a cluster.
protocol PartitionLookup: Sendable {
    func watermarks(topic: String, partition: Int32, timeoutMilliseconds: Int32) throws -> (low: Int64, high: Int64)
    func brokerOffset(topic: String, partition: Int32, timestampMilliseconds: Int64, timeoutMilliseconds: Int32) throws
        -> Int64
    /// The first record at or after `offset`: its offset and timestamp; `nil` at the end of the partition.
    func firstRecord(topic: String, partition: Int32, from offset: Int64, timeoutMilliseconds: Int) throws
        -> (offset: Int64, timestamp: Int64)?
}

extension KafkaPartitionLookup: PartitionLookup {
    func firstRecord(topic: String, partition: Int32, from offset: Int64, timeoutMilliseconds: Int) throws
        -> (offset: Int64, timestamp: Int64)?
    {
        var found: (offset: Int64, timestamp: Int64)?
        try read(topic: topic, partition: partition, from: offset, timeoutMilliseconds: timeoutMilliseconds) { record in
            found = (record.offset, record.timestampMilliseconds)
            return false
        }
        return found
    }
}

/// Turns a ``StartPosition`` into a ``StartResolution`` with blocking look-ups. Run off event loops.
///
/// When the live reader follows the partition, "latest" starts at its next offset (never at an older head
/// cached from an earlier assignment), and its last fetch's watermarks answer positions inside them (no
/// request: a thousand clients resuming at once cost no thousand round trips); a position outside them,
/// which would become a gap, is always checked against the broker first.
struct StartResolver: Sendable {
    let lookup: any PartitionLookup
    /// What the node knows of a partition without asking.
    let known: @Sendable (TopicPartition) -> KnownPosition?
    /// Bound on each look-up.
    var timeoutMilliseconds: Int32 = 5000

    func resolve(_ start: StartPosition, in location: TopicPartition) throws -> StartResolution {
        let known = self.known(location)
        var watermarks = known?.cached
        switch (start, watermarks) {
        case (.offset(let offset, nil), let (low, high)?) where offset >= low && offset <= high: break
        case (.latest, _?), (.earliest, _?): break
        default: watermarks = nil
        }
        var (low, high) = try watermarks
            ?? lookup.watermarks(topic: location.topic, partition: location.partition, timeoutMilliseconds: timeoutMilliseconds)
        if let liveNext = known?.liveNext { high = max(high, liveNext) }
        low = min(low, high)
        switch start {
        case .latest:
            // `high` is at least the live reader's next offset: a cached head older than that (left from an
            // earlier assignment) never starts a subscriber in the past.
            return StartResolution(next: high, head: high, gap: nil)
        case .earliest:
            return StartResolution(next: low, head: high, gap: nil)
        case .offset(let offset, let partition):
            if let partition, partition != location.partition {
                return StartResolution(next: low, head: high,
                                       gap: .init(from: offset, to: low, reason: "repartitioned"))
            }
            if offset < low {
                return StartResolution(next: low, head: high, gap: .init(from: offset, to: low, reason: "retention"))
            }
            if offset > high {
                return StartResolution(next: high, head: high, gap: .init(from: offset, to: high, reason: "beyond_head"))
            }
            return StartResolution(next: offset, head: high, gap: nil)
        case .time(let milliseconds):
            let next = try offset(at: milliseconds, in: location, low: low, high: high)
            // The first retained record is at or after the time, and records before it were pruned: some of
            // those may have been at or after the time too. Announce it rather than pretend.
            let gap: ServerFrameEncoder.Gap? = next == low && low > 0 && high > low ? .init(from: 0, to: low, reason: "retention") : nil
            return StartResolution(next: next, head: high, gap: gap)
        }
    }

    /// The first offset whose record's timestamp is at or after `milliseconds`; the broker's answer is
    /// trusted only once reads confirm it.
    private func offset(at milliseconds: Int64, in location: TopicPartition, low: Int64, high: Int64) throws -> Int64 {
        guard high > low else { return high }
        let search = TimeStartSearch(targetMilliseconds: milliseconds, low: low, high: high)
        let probe: TimeStartSearch.Probe = { offset in
            try lookup.firstRecord(topic: location.topic, partition: location.partition, from: offset,
                                   timeoutMilliseconds: Int(timeoutMilliseconds))
        }
        if let answer = try? lookup.brokerOffset(topic: location.topic, partition: location.partition,
                                                 timestampMilliseconds: milliseconds,
                                                 timeoutMilliseconds: timeoutMilliseconds),
            try search.confirms(brokerAnswer: answer, probe: probe)
        {
            return answer == -1 ? high : answer
        }
        return try search.search(probe: probe)
    }
}
