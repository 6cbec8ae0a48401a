import Histogram

/// Latencies in microseconds, recorded into an HdrHistogram (3 significant digits, up to 10 minutes).
struct BenchLatency: Sendable {
    private(set) var histogram = Histogram<UInt64>(
        highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

    mutating func record(nanoseconds: UInt64) {
        _ = histogram.record(min(600_000_000, max(1, nanoseconds / 1000)))
    }

    mutating func add(_ other: BenchLatency) {
        histogram.add(other.histogram)
    }

    var count: UInt64 { histogram.totalCount }

    var summary: LatencySummary? {
        guard histogram.totalCount > 0 else { return nil }
        func ms(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
        return LatencySummary(
            p50: ms(50), p99: ms(99), p999: ms(99.9), max: Double(histogram.max) / 1000,
            samples: Int(histogram.totalCount))
    }
}

/// Percentiles in milliseconds.
struct LatencySummary: Codable, Sendable {
    var p50: Double
    var p99: Double
    var p999: Double
    var max: Double
    var samples: Int
}
