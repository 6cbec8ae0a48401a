import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import StreamgateCore
import StreamgateKafka
import Testing

@testable import StreamgateServer

/// The publisher's window and back-pressure, against a scripted producer.
@Suite struct PublisherTests {
    final class FakeSink: RecordSink, Sendable {
        struct State {
            var full = false
            var produced: [String] = []
            var reports: [KafkaProducer.DeliveryHandler] = []
        }
        let state = NIOLockedValueBox(State())

        func produce(topic: String, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, headers: [KafkaHeader],
                     timestampMilliseconds: Int64, onDelivery: @escaping KafkaProducer.DeliveryHandler)
            -> KafkaProducer.ProduceResult
        {
            state.withLockedValue { state in
                guard !state.full else { return .queueFull }
                state.produced.append(String(decoding: value, as: UTF8.self))
                state.reports.append(onDelivery)
                return .enqueued
            }
        }

        func deliverAll() {
            let reports = state.withLockedValue { state in
                defer { state.reports.removeAll() }
                return state.reports
            }
            for (index, report) in reports.enumerated() {
                report(KafkaDeliveryReport(partition: 0, offset: Int64(index), error: nil, persistence: .persisted))
            }
        }
    }

    static let headers = RecordHeaders(contentType: "application/json", sender: "anonymous", connection: "c", node: "n")

    static func frames(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while var frame = try channel.readOutbound(as: WebSocketFrame.self) {
            out.append(frame.data.readString(length: frame.data.readableBytes) ?? "")
        }
        return out
    }

    static func setUp(maxInFlight: Int = 100, maxBytes: Int = 1000) throws
        -> (EmbeddedChannel, FakeSink, Publisher, NIOLockedValueBox<Int>)
    {
        let channel = EmbeddedChannel()
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let outbox = ConnectionOutbox(channel: channel, pauseBytes: 1 << 20, stallTimeout: .seconds(10),
                                      resume: { _ in }, onStall: {})
        let sink = FakeSink()
        let rooms = NIOLockedValueBox(0)
        let publisher = Publisher(sink: sink, limits: .init(maxInFlight: maxInFlight, maxInFlightBytes: maxBytes),
                                  window: PublishWindow(), outbox: outbox,
                                  onRoom: { rooms.withLockedValue { $0 += 1 } })
        return (channel, sink, publisher, rooms)
    }

    @Test func bytesInFlightPauseReadingAndReportsReopenIt() throws {
        let (channel, sink, publisher, rooms) = try Self.setUp(maxBytes: 1000)
        let payload = Payload.json(Array(repeating: UInt8(ascii: "1"), count: 300))
        for index in 0..<4 {
            publisher.publish(id: RequestID(json: Array("\(index)".utf8)), channel: ChannelName("c")!, topic: "t",
                              payload: payload, headers: Self.headers)
        }
        #expect(publisher.wantsPause)  // 1200 bytes awaiting reports ≥ 1000
        sink.deliverAll()
        #expect(!publisher.wantsPause)
        #expect(rooms.withLockedValue { $0 } >= 1)
        channel.embeddedEventLoop.run()
        #expect(try Self.frames(channel).filter { $0.contains("\"ack\"") }.count == 4)
    }

    @Test func queueFullWaitsInOrderAndDrainEndNacksWhatNeverReachedKafka() throws {
        let (channel, sink, publisher, _) = try Self.setUp()
        sink.state.withLockedValue { $0.full = true }
        for index in 0..<3 {
            publisher.publish(id: RequestID(json: Array("\(index)".utf8)), channel: ChannelName("c")!, topic: "t",
                              payload: .json(Array("\(index)".utf8)), headers: Self.headers)
        }
        #expect(publisher.waitingCount == 3)
        #expect(publisher.wantsPause)
        sink.state.withLockedValue { $0.full = false }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        #expect(sink.state.withLockedValue { $0.produced } == ["0", "1", "2"])
        sink.state.withLockedValue { $0.full = true }
        publisher.publish(id: RequestID(json: Array("9".utf8)), channel: ChannelName("c")!, topic: "t",
                          payload: .json(Array("9".utf8)), headers: Self.headers)
        publisher.failWaiting(reason: "draining")
        sink.state.withLockedValue { $0.full = false }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        #expect(sink.state.withLockedValue { $0.produced } == ["0", "1", "2"])  // never produced after the nack
        channel.embeddedEventLoop.run()
        let nacks = try Self.frames(channel).filter { $0.contains("\"nack\"") }
        #expect(nacks.count == 1 && nacks[0].contains("\"persisted\":\"no\"") && nacks[0].contains("\"id\":9"))
    }
}
