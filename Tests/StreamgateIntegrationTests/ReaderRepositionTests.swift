import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka
import Testing

/// Moving a reader back while it is in the middle of a batch: nothing fetched for the old position may be
/// handed over under the new generation (a catch-up joined by an earlier subscriber relies on it).
@Suite(.serialized) struct ReaderRepositionTests {
    @Test func rewindHandsOverOnlyFreshRecordsUnderTheNewGeneration() throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 1)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
        let producer = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        producer.start()
        let delivered = DispatchSemaphore(value: 0)
        let value = [UInt8](repeating: 65, count: 5000)
        for _ in 0..<600 {
            let result = value.withUnsafeBytes { value in
                Array("k".utf8).withUnsafeBytes { key in
                    producer.produce(topic: "t", key: key, value: value, headers: [], timestampMilliseconds: 1) { _ in
                        delivered.signal()
                    }
                }
            }
            guard case .enqueued = result else { Issue.record("not enqueued"); return }
        }
        for _ in 0..<600 { #expect(delivered.wait(timeout: .now() + 10) == .success) }
        producer.shutdown(timeoutMilliseconds: 1000)

        let seen = NIOLockedValueBox<[(generation: UInt64, offset: Int64)]>([])
        let readerBox = NIOLockedValueBox<KafkaPartitionReader?>(nil)
        let reader = try KafkaPartitionReader(configuration: configuration, name: "test-reader", logger: Logger(label: "test")) {
            event in
            guard case .record(let record) = event else { return }
            seen.withLockedValue { $0.append((record.generation, record.offset)) }
            // Rewind from inside a batch, as the delivery hub does when an earlier subscriber arrives.
            if record.generation == 1, record.offset == 198 {
                readerBox.withLockedValue { $0 }?.reposition(topic: "t", partition: 0, offset: 0, generation: 2)
            }
        }
        reader.start()
        readerBox.withLockedValue { $0 = reader }
        defer { reader.shutdown() }
        reader.reposition(topic: "t", partition: 0, offset: 0, generation: 1)
        let deadline = Date().addingTimeInterval(15)
        while seen.withLockedValue({ $0.filter { $0.generation == 2 }.count }) < 600, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let fresh = seen.withLockedValue { $0.filter { $0.generation == 2 }.map(\.offset) }
        #expect(fresh == Array(0..<600))
        readerBox.withLockedValue { $0 = nil }
    }
}
