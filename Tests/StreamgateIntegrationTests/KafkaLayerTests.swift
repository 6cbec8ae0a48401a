import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka
import Testing

/// The Kafka layer against an in-process development cluster: delivery reports, partitioning, reads,
/// retention detection.
@Suite(.serialized) struct KafkaLayerTests {
    let logger = Logger(label: "test")

    private func withCluster(partitions: Int = 4, _ body: (KafkaMockCluster) throws -> Void) throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: partitions)
        try body(cluster)
    }

    private func produce(_ producer: KafkaProducer, key: String, values: [String], timestamp: (Int) -> Int64 = { _ in 1000 })
        throws -> [KafkaDeliveryReport]
    {
        let reports = NIOLockedValueBox([Int: KafkaDeliveryReport]())
        let done = DispatchSemaphore(value: 0)
        for (index, value) in values.enumerated() {
            var key = key
            var value = value
            let result = key.withUTF8 { key in
                value.withUTF8 { value in
                    producer.produce(topic: "t", key: UnsafeRawBufferPointer(key), value: UnsafeRawBufferPointer(value),
                                     headers: [KafkaHeader(name: "content-type", string: "application/json")],
                                     timestampMilliseconds: timestamp(index)) { report in
                        reports.withLockedValue { $0[index] = report }
                        done.signal()
                    }
                }
            }
            guard case .enqueued = result else { throw KafkaError.invalidArgument("not enqueued: \(result)") }
        }
        for _ in values { #expect(done.wait(timeout: .now() + 10) == .success) }
        return reports.withLockedValue { reports in values.indices.map { reports[$0]! } }
    }

    @Test func deliveryReportsCarryOrderedOffsetsOnTheMurmur2Partition() throws {
        try withCluster { cluster in
            let producer = try KafkaProducer(configuration: KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers]), logger: logger)
            producer.start()
            defer { producer.shutdown(timeoutMilliseconds: 5000) }
            for channel in ["doc:1", "doc:2", "news", "a/b@c"] {
                let reports = try produce(producer, key: channel, values: (0..<20).map { "{\"n\":\($0)}" })
                let expected = Murmur2Partitioner.partition(for: channel.utf8, partitionCount: 4)
                #expect(reports.allSatisfy { $0.error == nil && $0.persistence == .persisted && $0.partition == expected })
                let offsets = reports.compactMap(\.offset)
                #expect(offsets.count == 20 && offsets == offsets.sorted() && Set(offsets).count == 20)
            }
            #expect(producer.inFlight == 0)
            #expect(try producer.partitionCount(topic: "t", timeoutMilliseconds: 5000) == 4)
        }
    }

    @Test func lookupReadsWatermarksRecordsAndFindsTimes() throws {
        try withCluster(partitions: 1) { cluster in
            let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
            let producer = try KafkaProducer(configuration: configuration, logger: logger)
            producer.start()
            defer { producer.shutdown(timeoutMilliseconds: 5000) }
            _ = try produce(producer, key: "k", values: (0..<10).map { "\($0)" }, timestamp: { 10_000 + Int64($0) * 1000 })
            let lookup = try KafkaPartitionLookup(configuration: configuration)
            defer { lookup.shutdown() }
            let (low, high) = try lookup.watermarks(topic: "t", partition: 0, timeoutMilliseconds: 5000)
            #expect(low == 0 && high == 10)
            var seen: [Int64] = []
            let end = try lookup.read(topic: "t", partition: 0, from: 4, timeoutMilliseconds: 5000) { record in
                seen.append(record.offset)
                return true
            }
            #expect(seen == Array(4..<10) && end == 10)
            let search = TimeStartSearch(targetMilliseconds: 13_500, low: low, high: high)
            let probe: TimeStartSearch.Probe = { offset in
                var found: (offset: Int64, timestamp: Int64)?
                try lookup.read(topic: "t", partition: 0, from: offset, timeoutMilliseconds: 5000) {
                    found = ($0.offset, $0.timestampMilliseconds)
                    return false
                }
                return found
            }
            #expect(try search.search(probe: probe) == 4)
        }
    }

    @Test func readerFollowsTheTailAndReportsTheEnd() throws {
        try withCluster(partitions: 1) { cluster in
            let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers])
            let producer = try KafkaProducer(configuration: configuration, logger: logger)
            producer.start()
            defer { producer.shutdown(timeoutMilliseconds: 5000) }
            _ = try produce(producer, key: "k", values: ["1", "2", "3"])
            let events = NIOLockedValueBox<[String]>([])
            let reader = try KafkaPartitionReader(configuration: configuration, name: "test-reader", logger: logger) { event in
                switch event {
                case .record(let record): events.withLockedValue { $0.append("r\(record.offset)") }
                case .endOfPartition(_, _, let offset, _): events.withLockedValue { $0.append("eof\(offset)") }
                case .partitionError(_, _, _, let error, _): events.withLockedValue { $0.append("err:\(error.isOffsetOutOfRange)") }
                default: break
                }
            }
            reader.start()
            defer { reader.shutdown() }
            reader.reposition(topic: "t", partition: 0, offset: 1, generation: 1)
            try wait { events.withLockedValue { $0.contains("eof3") } }
            _ = try produce(producer, key: "k", values: ["4"])
            try wait { events.withLockedValue { $0.contains("r3") } }
            #expect(events.withLockedValue { $0.filter { $0.hasPrefix("r") } } == ["r1", "r2", "r3"])
            reader.reposition(topic: "t", partition: 0, offset: 50, generation: 2)
            try wait { events.withLockedValue { $0.contains("err:true") } }
        }
    }

    private func wait(_ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(10)
        while !condition() {
            guard Date() < deadline else { throw KafkaError.timedOut("condition not met") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}
