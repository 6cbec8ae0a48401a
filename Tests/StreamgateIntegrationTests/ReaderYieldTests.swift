import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateKafka
import Testing

/// A long replay must not hold back the reader's commands: the batch loop yields to a stop (and to
/// repositions) between batches, so SIGTERM never waits for a replay to finish.
@Suite(.serialized) struct ReaderYieldTests {
    @Test func stopTakesEffectWhileABacklogIsBeingRead() throws {
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

        let read = NIOLockedValueBox(0)
        let reader = try KafkaPartitionReader(configuration: configuration, name: "test-yield", logger: Logger(label: "test")) {
            event in
            guard case .record = event else { return }
            Thread.sleep(forTimeInterval: 0.0001)  // a slow consumer of the backlog: ~3 s for all of it
            read.withLockedValue { $0 += 1 }
        }
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
}
