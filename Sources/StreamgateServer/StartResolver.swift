import StreamgateCore
import StreamgateKafka

/// Where a subscription really starts: its first deliverable offset, the partition's head, and the gap to
/// announce when the requested position no longer exists.
struct StartResolution: Sendable, Equatable {
    var next: Int64
    var head: Int64
    var gap: ServerFrameEncoder.Gap?
}

/// Turns a ``StartPosition`` into a ``StartResolution`` with blocking look-ups. Run off event loops.
///
/// Watermarks come from the live reader's last fetch when it follows the partition (no request: a
/// thousand clients resuming at once cost no thousand round trips); a position outside them, which
/// would become a gap, is always checked against the broker first.
struct StartResolver: Sendable {
    let lookup: KafkaPartitionLookup
    /// The live reader's watermarks of a partition, when it has fetched it.
    let cachedWatermarks: @Sendable (TopicPartition) -> (low: Int64, high: Int64)?
    /// Bound on each look-up.
    var timeoutMilliseconds: Int32 = 5000

    func resolve(_ start: StartPosition, in location: TopicPartition) throws -> StartResolution {
        var watermarks = cachedWatermarks(location)
        switch (start, watermarks) {
        case (.offset(let offset, nil), let (low, high)?) where offset >= low && offset <= high: break
        case (.latest, _?), (.earliest, _?): break
        default: watermarks = nil
        }
        let (low, high) = try watermarks
            ?? lookup.watermarks(topic: location.topic, partition: location.partition, timeoutMilliseconds: timeoutMilliseconds)
        switch start {
        case .latest:
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
            return StartResolution(next: next, head: high, gap: nil)
        }
    }

    /// The first offset whose record's timestamp is at or after `milliseconds`; the broker's answer is
    /// trusted only once reads confirm it.
    private func offset(at milliseconds: Int64, in location: TopicPartition, low: Int64, high: Int64) throws -> Int64 {
        guard high > low else { return high }
        let search = TimeStartSearch(targetMilliseconds: milliseconds, low: low, high: high)
        let probe: TimeStartSearch.Probe = { offset in
            var found: (offset: Int64, timestamp: Int64)?
            try lookup.read(topic: location.topic, partition: location.partition, from: offset,
                            timeoutMilliseconds: Int(timeoutMilliseconds)) { record in
                found = (record.offset, record.timestampMilliseconds)
                return false
            }
            return found
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
