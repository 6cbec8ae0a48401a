import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka

/// The Kafka read-path baseline: StreamgateKafka's `KafkaPartitionReader` used directly, reading one
/// channel's partition.
enum BenchRawReader {
    struct Outcome: Sendable {
        var count = 0
        /// From assignment to the last record wanted.
        var seconds = 0.0
        var latency = BenchLatency()
        var timedOut = false
    }

    private struct State {
        var count = 0
        var started: UInt64 = 0
        var last: UInt64 = 0
        var latency = BenchLatency()
    }

    /// Reads from `offset` until `expected` records of `key` have arrived (or `timeoutSeconds` pass). Blocking.
    static func catchUp(
        brokers: String, topic: String, partition: Int32, from offset: Int64, key: [UInt8],
        expected: Int, timeoutSeconds: Double, fetchWaitMs: Int, logger: Logger
    ) throws -> Outcome {
        let state = NIOLockedValueBox(State())
        let done = DispatchSemaphore(value: 0)
        let reader = try KafkaPartitionReader(
            configuration: readerConfiguration(brokers, fetchWaitMs: fetchWaitMs), name: "bench-raw-reader",
            batchSize: 4096, logger: logger
        ) { event in
            guard case .record(let record) = event, record.key.elementsEqual(key) else { return }
            let finished = state.withLockedValue { state -> Bool in
                state.count += 1
                guard state.count == expected else { return false }
                state.last = BenchClock.now()
                return true
            }
            if finished { done.signal() }
        }
        reader.start()
        defer { reader.shutdown() }
        state.withLockedValue { $0.started = BenchClock.now() }
        reader.reposition(topic: topic, partition: partition, offset: offset, generation: 1)
        let timedOut = done.wait(timeout: .now() + timeoutSeconds) == .timedOut
        return state.withLockedValue { state in
            Outcome(
                count: state.count, seconds: Double((timedOut ? BenchClock.now() : state.last) - state.started) / 1e9,
                timedOut: timedOut)
        }
    }

    /// Follows `partition` from `offset` and records, for each record of `key` whose value carries an
    /// intended send time inside `window`, the time from then to its arrival, until `stopAt`. Blocking.
    static func follow(
        brokers: String, topic: String, partition: Int32, from offset: Int64, key: [UInt8],
        window: BenchWindow, stopAt: UInt64, fetchWaitMs: Int, logger: Logger, ready: () -> Void
    ) throws
        -> Outcome
    {
        let state = NIOLockedValueBox(State())
        let reader = try KafkaPartitionReader(
            configuration: readerConfiguration(brokers, fetchWaitMs: fetchWaitMs), name: "bench-raw-follower",
            batchSize: 4096, logger: logger
        ) { event in
            guard case .record(let record) = event, record.key.elementsEqual(key) else { return }
            let now = BenchClock.now()
            guard let sent = BenchPayload.timestamp(in: record.value), window.contains(sent) else { return }
            state.withLockedValue { state in
                state.count += 1
                state.latency.record(nanoseconds: now &- sent)
            }
        }
        reader.start()
        defer { reader.shutdown() }
        reader.reposition(topic: topic, partition: partition, offset: offset, generation: 1)
        ready()
        while BenchClock.now() < stopAt { usleep(10_000) }
        return state.withLockedValue { Outcome(count: $0.count, seconds: window.seconds, latency: $0.latency) }
    }

    /// The partition of a channel and the partition's end offset now.
    static func locate(brokers: String, topic: String, channel: String) throws
        -> (partition: Int32, low: Int64, high: Int64)
    {
        let lookup = try KafkaPartitionLookup(configuration: readerConfiguration(brokers))
        defer { lookup.shutdown() }
        let count = try lookup.partitionCount(topic: topic, timeoutMilliseconds: 10_000)
        let partition = Murmur2Partitioner.partition(for: channel.utf8, partitionCount: count)
        let (low, high) = try lookup.watermarks(topic: topic, partition: partition, timeoutMilliseconds: 10_000)
        return (partition, low, high)
    }

    static func readerConfiguration(_ brokers: String, fetchWaitMs: Int = 10) -> KafkaConfiguration {
        KafkaConfiguration([
            "bootstrap.servers": brokers, "client.id": "streamgate-bench-reader", "log_level": "3",
            "fetch.wait.max.ms": String(fetchWaitMs),
        ])
    }
}
