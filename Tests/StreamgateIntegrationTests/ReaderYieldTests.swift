import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka
import Testing

/// A long replay must not hold back the reader's commands: the loop yields to a stop (and to
/// repositions) between rounds, so SIGTERM never waits for a replay to finish, and a partition started
/// during another's replay is served in the next round, not behind the replay's prefetched records.
@Suite(.serialized) struct ReaderYieldTests {
    /// Produces a small record per key, in order, and waits for the reports; returns how many were taken.
    private static func produce(_ configuration: KafkaConfiguration, keys: [[UInt8]]) throws -> Int {
        let producer = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        producer.start()
        let delivered = DispatchSemaphore(value: 0)
        var produced = 0
        for key in keys {
            let result = Array("0123456789".utf8).withUnsafeBytes { value in
                key.withUnsafeBytes { key in
                    producer.produce(topic: "t", key: key, value: value, headers: [], timestampMilliseconds: 1) { _ in
                        delivered.signal()
                    }
                }
            }
            guard case .enqueued = result else { Thread.sleep(forTimeInterval: 0.01); continue }
            produced += 1
        }
        for _ in 0..<produced { _ = delivered.wait(timeout: .now() + 20) }
        producer.shutdown(timeoutMilliseconds: 2000)
        return produced
    }

    @Test func stopTakesEffectWhileABacklogIsBeingRead() throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 2)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
        // One key: the whole backlog lands in one partition (found below); the other stays empty.
        let onZero = try Self.produce(configuration, keys: Array(repeating: Array("backlog".utf8), count: 30_000))
        let lookup = try KafkaPartitionLookup(configuration: configuration)
        defer { lookup.shutdown() }
        let backlogPartition: Int32 = try lookup.watermarks(topic: "t", partition: 0, timeoutMilliseconds: 5000).high > 0 ? 0 : 1

        let read = NIOLockedValueBox(0)
        let reader = try KafkaPartitionReader(configuration: configuration, name: "test-yield", logger: Logger(label: "test")) {
            event in
            guard case .record = event else { return }
            Thread.sleep(forTimeInterval: 0.0001)  // a slow consumer of the backlog: ~3 s for all of it
            read.withLockedValue { $0 += 1 }
        }
        reader.start()
        reader.reposition(topic: "t", partition: backlogPartition, offset: 0, generation: 1)
        let deadline = Date().addingTimeInterval(30)
        while read.withLockedValue({ $0 }) < 2000, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        let started = Date()
        reader.shutdown()
        let took = Date().timeIntervalSince(started)
        let done = read.withLockedValue { $0 }
        // It stops after the batch in hand (≤ 1024 records, ~0.1 s), not after the whole backlog.
        #expect(done < onZero / 2, "read \(done) of \(onZero) records before stopping")
        #expect(took < 1.0, "shutdown took \(took) s during a replay")
    }

    @Test func aPartitionStartedDuringAReplayIsServedAtOnce() throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 2)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
        let backlogKey = Array("backlog".utf8)
        let backlogPartition = Murmur2Partitioner.partition(for: backlogKey, partitionCount: 2)
        let otherKey = (0..<100).lazy.map { Array("other-\($0)".utf8) }
            .first { Murmur2Partitioner.partition(for: $0, partitionCount: 2) != backlogPartition }!
        _ = try Self.produce(configuration, keys: Array(repeating: backlogKey, count: 30_000) + Array(repeating: otherKey, count: 10))

        let read = NIOLockedValueBox(0)
        let firstOther = NIOLockedValueBox<Date?>(nil)
        let reader = try KafkaPartitionReader(configuration: configuration, name: "test-fair", logger: Logger(label: "test")) {
            event in
            guard case .record(let record) = event else { return }
            if record.partition == backlogPartition {
                Thread.sleep(forTimeInterval: 0.0001)  // a slow consumer of the backlog: ~3 s for all of it
                read.withLockedValue { $0 += 1 }
            } else {
                firstOther.withLockedValue { $0 = $0 ?? Date() }
            }
        }
        reader.start()
        defer { reader.shutdown() }
        reader.reposition(topic: "t", partition: backlogPartition, offset: 0, generation: 1)
        let deadline = Date().addingTimeInterval(30)
        while read.withLockedValue({ $0 }) < 2000, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        let started = Date()
        reader.reposition(topic: "t", partition: 1 - backlogPartition, offset: 0, generation: 1)
        while firstOther.withLockedValue({ $0 }) == nil, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        let waited = firstOther.withLockedValue { $0 }.map { $0.timeIntervalSince(started) } ?? .infinity
        let backlogDone = read.withLockedValue { $0 }
        // Served within a round or two (≤ 1024 backlog records each, ~0.1 s), not after the backlog (28 000
        // records still to go: ~2.8 s). The bound leaves room for a loaded machine; the count below is exact.
        #expect(waited < 2.0, "the other partition waited \(waited) s behind the replay")
        #expect(backlogDone < 25_000, "read \(backlogDone) backlog records before the other partition's first")
    }
}
