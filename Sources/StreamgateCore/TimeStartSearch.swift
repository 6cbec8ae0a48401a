/// Finds where a time-based start begins: the first offset in `[low, high)` whose record has a timestamp at or
/// after the target, or `high` when there is none yet.
///
/// A broker's own answer is used only when two reads confirm it (some brokers, the development cluster
/// among them, answer time look-ups wrongly); otherwise a binary search over reads finds the offset,
/// assuming timestamps do not decrease along the log (as Kafka's time index does).
public struct TimeStartSearch {
    /// The first record at or after an offset: its offset and timestamp, or `nil` when there is none.
    public typealias Probe = (_ offset: Int64) throws -> (offset: Int64, timestamp: Int64)?

    public let target: Int64
    public let low: Int64
    public let high: Int64

    public init(targetMilliseconds: Int64, low: Int64, high: Int64) {
        self.target = targetMilliseconds
        self.low = low
        self.high = high
    }

    /// Checks the broker's answer (`-1` meaning "the end") with at most two probes.
    public func confirms(brokerAnswer: Int64, probe: Probe) throws -> Bool {
        if brokerAnswer == -1 || brokerAnswer == high {
            guard high > low else { return true }
            // The last record must be older than the target.
            guard let last = try probe(high - 1) else { return false }
            return last.offset == high - 1 && last.timestamp < target
        }
        guard brokerAnswer >= low, brokerAnswer < high else { return false }
        guard let found = try probe(brokerAnswer), found.offset == brokerAnswer, found.timestamp >= target else {
            return false
        }
        if brokerAnswer == low { return true }
        guard let previous = try probe(brokerAnswer - 1) else { return false }
        return previous.offset == brokerAnswer - 1 && previous.timestamp < target
    }

    /// Binary search by reads: about log2(high - low) probes.
    public func search(probe: Probe) throws -> Int64 {
        var lower = low
        var upper = high
        var best = high
        while lower < upper {
            let middle = lower + (upper - lower) / 2
            guard let found = try probe(middle), found.offset < upper else {
                upper = middle
                continue
            }
            if found.timestamp >= target {
                best = found.offset
                upper = middle
            } else {
                lower = found.offset + 1
            }
        }
        return best
    }
}
