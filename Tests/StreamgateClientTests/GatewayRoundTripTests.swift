import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import StreamgateClient
import StreamgateKafka
import StreamgateServer
import Testing

/// The client against a real gateway on port 0, backed by an in-process development Kafka.
@Suite(.serialized) struct GatewayRoundTripTests {
    /// Runs a gateway on a fresh mock cluster for the duration of `body`, then shuts both down.
    private func withGateway(_ body: @Sendable (Int) async throws -> Void) async throws {
        let cluster = try KafkaMockCluster(brokerCount: 1)
        defer { cluster.shutdown() }
        try cluster.createTopic("streamgate.events", partitions: 4)
        var logger = Logger(label: "client-tests")
        logger.logLevel = .warning
        var configuration = GatewayConfiguration()
        configuration.brokers = cluster.bootstrapServers
        configuration.port = 0
        configuration.drainSeconds = 1
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let services = try GatewayNode.services(configuration: configuration, logger: logger) { _, port in
            portContinuation.yield(port)
            portContinuation.finish()
        }
        let group = ServiceGroup(services: services, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            do {
                try await body(port)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func publishThenReplayFromTheAckedOffset() async throws {
        try await withGateway { port in
            let connection = try await StreamgateConnection.connect(host: "127.0.0.1", port: port)
            #expect(connection.subprotocol == "streamgate.v1")
            var acks: [PublishAck] = []
            for index in 0..<3 {
                acks.append(try await connection.publish(channel: "doc:7", payload: .json(#"{"n":\#(index)}"#)))
            }
            #expect(Set(acks.map(\.partition)).count == 1)
            let offsets = acks.compactMap(\.offset)
            #expect(offsets == offsets.sorted() && offsets.count == 3)

            let reply = try await connection.subscribe(channel: "doc:7", from: .offset(offsets[0]))
            #expect(reply.offset == offsets[0])
            #expect(reply.recovered)
            var received: [(Int64, String)] = []
            for await frame in connection.frames where frame.kind == .message {
                let fields = try frame.fields()
                received.append(
                    (fields.offset ?? -1, frame.withData(fields) { String(decoding: $0, as: UTF8.self) } ?? ""))
                if received.count == 3 { break }
            }
            #expect(received.map(\.0) == offsets)
            #expect(received.map(\.1) == [#"{"n":0}"#, #"{"n":1}"#, #"{"n":2}"#])
            let info = await connection.close()
            #expect(info.serverCode == 1000)
        }
    }

    @Test func pipelinedPublishesAreAckedInPublishOrderAndErrorsComeBackAsErrors() async throws {
        try await withGateway { port in
            var configuration = StreamgateConnection.Configuration()
            configuration.publishWindow = 8
            let connection = try await StreamgateConnection.connect(
                host: "127.0.0.1", port: port,
                configuration: configuration)
            let acks = try await withThrowingTaskGroup(of: PublishAck.self) { tasks in
                for index in 0..<100 {
                    tasks.addTask {
                        try await connection.publish(channel: "bench", payload: .jsonBytes(Array("\(index)".utf8)))
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            #expect(acks.count == 100)
            #expect(Set(acks.compactMap(\.offset)).count == 100)

            // Callback publishes made from one thread leave in call order; one channel's acks keep that order.
            let (results, continuation) = AsyncStream.makeStream(of: Result<PublishAck, StreamgateClientError>.self)
            for index in 0..<50 {
                connection.publish(channel: "ordered", payload: .jsonBytes(Array("\(index)".utf8))) {
                    continuation.yield($0)
                }
            }
            var ordered: [PublishAck] = []
            for await result in results {
                ordered.append(try result.get())
                if ordered.count == 50 { break }
            }
            #expect(ordered.map(\.id) == ordered.map(\.id).sorted())
            let offsets = ordered.compactMap(\.offset)
            #expect(offsets.count == 50 && offsets == offsets.sorted())

            let error = await #expect(throws: StreamgateClientError.self) {
                try await connection.publish(channel: "bad channel!", payload: .json("1"))
            }
            #expect(error?.code == .serverError)
            #expect(error?.serverCode == "bad_request")
            await connection.close()
        }
    }

    @Test func refusedUpgradesReportTheStatus() async throws {
        try await withGateway { port in
            let error = await #expect(throws: StreamgateClientError.self) {
                _ = try await StreamgateConnection.connect(host: "127.0.0.1", port: port, path: "/nowhere")
            }
            #expect(error?.code == .upgradeRefused)
            #expect(error?.status == 404)
        }
    }
}
