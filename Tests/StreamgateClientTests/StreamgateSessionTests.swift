import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import StreamgateClient
import StreamgateKafka
import StreamgateServer
import Testing

/// The resuming session against a gateway that is stopped and started again on the same port, over the
/// same Kafka: it reconnects, resumes its subscription with nothing missed or repeated, and sends the
/// publishes made while the gateway was away.
@Suite(.serialized) struct StreamgateSessionTests {
    /// A gateway node running until `stop()`.
    final class Node: Sendable {
        let port: Int
        private let group: ServiceGroup
        private let task: Task<Void, any Error>

        init(bootstrap: String, port: Int) async throws {
            var logger = Logger(label: "session-tests")
            logger.logLevel = .warning
            var configuration = GatewayConfiguration()
            configuration.brokers = bootstrap
            configuration.port = port
            configuration.drainSeconds = 1
            let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
            let services = try GatewayNode.services(configuration: configuration, logger: logger) { _, port in
                continuation.yield(port)
                continuation.finish()
            }
            let group = ServiceGroup(services: services, logger: logger)
            self.group = group
            self.task = Task { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            self.port = try #require(await iterator.next())
        }

        func stop() async throws {
            await group.triggerGracefulShutdown()
            try await task.value
        }
    }

    @Test func aRestartedGatewayIsResumedWithoutGapOrDuplicate() async throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("streamgate.events", partitions: 4)
        var node = try await Node(bootstrap: cluster.bootstrapServers, port: 0)
        let port = node.port

        var backoff = StreamgateSession.Backoff()
        backoff.minimum = .milliseconds(50)
        backoff.maximum = .milliseconds(400)
        let session = StreamgateSession(host: "127.0.0.1", port: port, backoff: backoff)
        let records = NIOLockedValueBox<[(Int64, String)]>([])
        let connects = NIOLockedValueBox<[Int]>([])
        let watcher = Task {
            for await event in session.events {
                switch event {
                case .record(_, let offset, let frame):
                    let text = (try? frame.fields()).flatMap { fields in
                        frame.withData(fields) { String(decoding: $0, as: UTF8.self) }
                    } ?? ""
                    records.withLockedValue { $0.append((offset, text)) }
                case .connected(let attempt): connects.withLockedValue { $0.append(attempt) }
                default: break
                }
            }
        }
        session.start()
        let reply = try await session.subscribe("resume:1", from: .earliest)
        #expect(reply.recovered)

        var acks: [PublishAck] = []
        for index in 0..<20 {
            acks.append(try await session.publish(channel: "resume:1", payload: .json(#"{"n":\#(index)}"#)))
        }
        try await node.stop()
        // Published while no gateway runs: each waits for the next connection.
        let later = Task {
            try await withThrowingTaskGroup(of: PublishAck.self) { tasks in
                for index in 20..<40 {
                    tasks.addTask {
                        try await session.publish(channel: "resume:1", payload: .json(#"{"n":\#(index)}"#),
                                                  msgId: "later-\(index)")
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        node = try await Node(bootstrap: cluster.bootstrapServers, port: port)
        acks += try await later.value

        let offsets = Set(acks.compactMap(\.offset))
        #expect(offsets.count == 40, "40 publishes, \(offsets.count) distinct offsets")
        let deadline = ContinuousClock.now + .seconds(20)
        while records.withLockedValue({ $0.count }) < offsets.count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let received = records.withLockedValue { $0 }
        #expect(received.map(\.0) == offsets.sorted(), "delivered offsets, in order, once each")
        #expect(Set(received.map(\.1)) == Set((0..<40).map { #"{"n":\#($0)}"# }))
        #expect(connects.withLockedValue { $0 } == [1, 2])

        await session.close()
        await watcher.value
        try await node.stop()
    }
}
