import NIOCore
import StreamgateCore
import Testing

@testable import StreamgateClient

/// Request frames are valid JSON the gateway's decoder accepts, with room for the WebSocket header in front.
@Suite struct ClientFrameEncoderTests {
    private let allocator = ByteBufferAllocator()
    private let decoder = ClientFrameDecoder(maxPayloadBytes: 1 << 20)

    private func decode(_ buffer: ByteBuffer) -> ClientRequest? {
        buffer.withUnsafeReadableBytes { try? decoder.decode($0).get() }
    }

    @Test func publishKeepsTheJSONTextAndEscapesStrings() throws {
        let buffer = ClientFrameEncoder.publish(
            id: 7, channel: "doc:42", payload: .json(#"{"a": [1, 2]}"#),
            msgId: "m\"1\\", allocator: allocator)
        #expect(buffer.readerIndex == ClientFrameEncoder.headroom)
        let request = try #require(decode(buffer))
        guard case .publish(let id, let channel, let payload, let msgId, _) = request else {
            Issue.record("not a publish: \(request)")
            return
        }
        #expect(id == RequestID(json: Array("7".utf8)))
        #expect(channel?.value == "doc:42")
        #expect(payload == .json(Array(#"{"a": [1, 2]}"#.utf8)))
        #expect(msgId == "m\"1\\")
    }

    @Test func binaryPayloadsTravelAsBase64() throws {
        let buffer = ClientFrameEncoder.publish(
            id: 1, channel: "c", payload: .binary([0, 1, 2, 255]), msgId: nil,
            allocator: allocator)
        let request = try #require(decode(buffer))
        guard case .publish(_, _, let payload, _, _) = request else {
            Issue.record("not a publish")
            return
        }
        #expect(payload == .binary([0, 1, 2, 255]))
    }

    @Test func subscribeStarts() throws {
        let expectations: [(SubscribeStart, StartPosition)] = [
            (.latest, .latest), (.earliest, .earliest), (.offset(120), .offset(120, partition: nil)),
            (.offset(5, partition: 3), .offset(5, partition: 3)),
            (.time("2025-01-02T03:04:05Z"), .time(milliseconds: RFC3339.milliseconds("2025-01-02T03:04:05Z")!)),
        ]
        for (start, position) in expectations {
            let request = try #require(
                decode(
                    ClientFrameEncoder.subscribe(
                        id: 2, channel: "news", from: start,
                        allocator: allocator)))
            guard case .subscribe(_, let channel, let from) = request else {
                Issue.record("not a subscribe")
                return
            }
            #expect(channel.value == "news")
            #expect(from == position)
        }
    }

    @Test func unsubscribe() throws {
        let request = try #require(decode(ClientFrameEncoder.unsubscribe(id: 3, channel: "news", allocator: allocator)))
        guard case .unsubscribe(_, let channel) = request else {
            Issue.record("not an unsubscribe")
            return
        }
        #expect(channel.value == "news")
    }
}
