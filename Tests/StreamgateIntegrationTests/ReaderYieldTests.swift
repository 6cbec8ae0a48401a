import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateKafka
import Testing

/// A long replay on one partition must not hold back a reposition of another: the reader's batch loop
/// yields to its commands between batches.
@Suite(.serialized) struct ReaderYieldTests {
    @Test func repositionRunsWhileABacklogIsBeingRead() throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 2)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
        let producer = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        let count = 30_000
        let delivered = DispatchSemaphore(value: 0)
        // One key: the whole backlog lands in one partition (found below); the other stays empty.
        var onZero = 0
        let key = Array("backlog".utf8)
        for _ in 0..<count {
            let result = Array("0123456789".utf8).withUnsafeBytes { value in
                key.withUnsafeBytes { key in
                    producer.produce(topic: "t", key: key, value: value, headers: [], timestampMilliseconds: 1) { _ in
                        delivered.signal()
                    }
                }
            }
            guard case .enqueued = result else { Thread.sleep(forTimeInterval: 0.01); continue }
            onZero += 1
        }
        for _ in 0..<onZero { _ = delivered.wait(timeout: .now() + 20) }
        producer.shutdown(timeoutMilliseconds: 2000)
        let lookup = try KafkaPartitionLookup(configuration: configuration)
        defer { lookup.shutdown() }
        let backlogPartition: Int32 = try lookup.watermarks(topic: "t", partition: 0, timeoutMilliseconds: 5000).high > 0 ? 0 : 1
        let other: Int32 = 1 - backlogPartition

        struct Progress { var backlogRead = 0; var backlogWhenOtherStarted: Int? }
        let progress = NIOLockedValueBox(Progress())
        let reader = try KafkaPartitionReader(configuration: configuration, name: "test-yield", logger: Logger(label: "test")) {
            event in
            switch event {
            case .record(let record) where record.partition == backlogPartition:
                Thread.sleep(forTimeInterval: 0.00005)  // a slow consumer of the backlog
                progress.withLockedValue { $0.backlogRead += 1 }
            case .endOfPartition(_, let partition, _, let generation) where partition == other && generation == 2:
                progress.withLockedValue { $0.backlogWhenOtherStarted = $0.backlogWhenOtherStarted ?? $0.backlogRead }
            default: break
            }
        }
        defer { reader.shutdown() }
        reader.reposition(topic: "t", partition: backlogPartition, offset: 0, generation: 1)
        let deadline = Date().addingTimeInterval(30)
        while progress.withLockedValue({ $0.backlogRead }) < 2000, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        reader.reposition(topic: "t", partition: other, offset: 0, generation: 2)
        while progress.withLockedValue({ $0.backlogWhenOtherStarted == nil }), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
        let started = try #require(progress.withLockedValue { $0.backlogWhenOtherStarted })
        // The other partition started long before the backlog was through (a batch or two later, not 28 000 records).
        #expect(started < onZero / 2, "the reposition waited for \(started) of \(onZero) backlog records")
    }
}
