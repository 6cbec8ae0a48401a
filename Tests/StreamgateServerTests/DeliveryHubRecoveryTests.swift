import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import StreamgateCore
import StreamgateKafka
import Testing

@testable import StreamgateServer

/// A reader outside the log whose watermark look-up fails: the hub retries with backoff, reports the
/// partition as stalled meanwhile, then announces the gap and delivers again — never a parked reader.
@Suite(.serialized) struct DeliveryHubRecoveryTests {
    /// Fails the first `failures` watermark look-ups, as a broker that does not answer would.
    final class FlakyLookup: PartitionLookup {
        let real: KafkaPartitionLookup
        let calls = NIOLockedValueBox(0)
        let failures: Int
        /// Asked at every call: whether the hub reports the partition stalled then.
        let probe = NIOLockedValueBox<(@Sendable () -> Bool)?>(nil)
        let stalledAtCall = NIOLockedValueBox<[Bool]>([])

        init(real: KafkaPartitionLookup, failures: Int) {
            self.real = real
            self.failures = failures
        }

        func watermarks(topic: String, partition: Int32, timeoutMilliseconds: Int32) throws -> (low: Int64, high: Int64) {
            let call = calls.withLockedValue { $0 += 1; return $0 }
            if let probe = probe.withLockedValue({ $0 }) { stalledAtCall.withLockedValue { $0.append(probe()) } }
            if call <= failures { throw KafkaError.invalidArgument("injected look-up failure \(call)") }
            return try real.watermarks(topic: topic, partition: partition, timeoutMilliseconds: timeoutMilliseconds)
        }

        func brokerOffset(topic: String, partition: Int32, timestampMilliseconds: Int64, timeoutMilliseconds: Int32) throws
            -> Int64
        {
            try real.brokerOffset(topic: topic, partition: partition, timestampMilliseconds: timestampMilliseconds,
                                  timeoutMilliseconds: timeoutMilliseconds)
        }

        func firstRecord(topic: String, partition: Int32, from offset: Int64, timeoutMilliseconds: Int) throws
            -> (offset: Int64, timestamp: Int64)?
        {
            try real.firstRecord(topic: topic, partition: partition, from: offset, timeoutMilliseconds: timeoutMilliseconds)
        }
    }

    private static func produce(_ producer: KafkaProducer, count: Int) {
        let delivered = DispatchSemaphore(value: 0)
        for index in 0..<count {
            let result = Array("{\"n\":\(index)}".utf8).withUnsafeBytes { value in
                Array("c".utf8).withUnsafeBytes { key in
                    producer.produce(topic: "t", key: key, value: value, headers: [], timestampMilliseconds: 1) { _ in
                        delivered.signal()
                    }
                }
            }
            guard case .enqueued = result else { Issue.record("not enqueued"); return }
        }
        for _ in 0..<count { _ = delivered.wait(timeout: .now() + 10) }
    }

    /// The text frames written so far, each decoded as a string.
    private static func drain(_ channel: NIOAsyncTestingChannel) async throws -> [String] {
        var frames: [String] = []
        while let frame = try await channel.readOutbound(as: WebSocketFrame.self) {
            frames.append(String(buffer: frame.unmaskedData))
        }
        return frames
    }

    @Test func aFailedLookUpAfterOutOfRangeIsRetriedThenTheGapIsAnnounced() async throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 1)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers, "fetch.wait.max.ms": "10"])
        let producer = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        producer.start()
        defer { producer.shutdown(timeoutMilliseconds: 1000) }
        Self.produce(producer, count: 5)

        let real = try KafkaPartitionLookup(configuration: configuration)
        defer { real.shutdown() }
        let lookup = FlakyLookup(real: real, failures: 3)
        let hub = try DeliveryHub(configuration: configuration, lookup: lookup, logger: Logger(label: "test"))
        hub.start()
        defer { hub.shutdown() }
        lookup.probe.withLockedValue { $0 = { [weak hub] in !(hub?.stalledPartitions(longerThan: .zero).isEmpty ?? true) } }

        let channel = NIOAsyncTestingChannel()
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        let outbox = ConnectionOutbox(channel: channel, pauseBytes: 1 << 20, stallTimeout: .seconds(60),
                                      resume: { _ in }, onStall: {})
        let subscription = Subscription(channel: ChannelName("c")!, topic: "t", partition: 0, outbox: outbox)
        // A position past the log's end (the log was truncated or recreated behind the client's back).
        hub.subscribe(subscription, resolution: StartResolution(next: 100, head: 100, gap: nil),
                      subscribedFrame: Array(#"{"type":"subscribed"}"#.utf8))

        var frames: [String] = []
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, !frames.contains(where: { $0.contains(#""type":"gap""#) }) {
            try await Task.sleep(for: .milliseconds(10))
            frames += try await Self.drain(channel)
        }
        let stalled = lookup.stalledAtCall.withLockedValue { $0 }
        #expect(stalled.count > 3 && stalled.allSatisfy { $0 },
                "the partition was not reported stalled during every look-up attempt: \(stalled)")
        #expect(lookup.calls.withLockedValue { $0 } > 3, "the failed look-up was not retried")
        let gap = try #require(frames.first { $0.contains(#""type":"gap""#) }, "no gap announced: \(frames)")
        #expect(gap.contains(#""from":100"#) && gap.contains(#""to":5"#) && gap.contains("truncated"), "\(gap)")
        #expect(hub.stalledPartitions(longerThan: .zero).isEmpty)

        // Delivery goes on from the log's end.
        Self.produce(producer, count: 1)
        var delivered: [String] = []
        let deliveryDeadline = Date().addingTimeInterval(10)
        while Date() < deliveryDeadline, !delivered.contains(where: { $0.contains(#""offset":5"#) }) {
            try await Task.sleep(for: .milliseconds(10))
            delivered += try await Self.drain(channel)
        }
        #expect(delivered.contains { $0.contains(#""type":"message""#) && $0.contains(#""offset":5"#) }, "\(delivered)")
        hub.unsubscribe(subscription)
        outbox.close()
        try await channel.close()
    }
}
