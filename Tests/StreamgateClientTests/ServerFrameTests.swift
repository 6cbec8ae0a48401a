import NIOCore
import StreamgateCore
import Testing

@testable import StreamgateClient

/// The client's light parsing of server frames.
@Suite struct ServerFrameTests {
    private func frame(_ text: String) -> ServerFrame { ServerFrame(bytes: ByteBuffer(string: text)) }

    @Test func kindsAreReadFromTheTypePrefix() {
        let cases: [(String, ServerFrame.Kind)] = [
            (#"{"type":"message","channel":"a","offset":1,"ts":2,"data":{}}"#, .message),
            (#"{"type":"ack","id":1,"channel":"a","partition":0,"offset":5}"#, .ack),
            (#"{"type":"nack","id":1,"code":"kafka_unavailable","message":"m","persisted":"no"}"#, .nack),
            (#"{"type":"subscribed","channel":"a","partition":0,"offset":0,"head":0,"recovered":true}"#, .subscribed),
            (#"{"type":"unsubscribed","id":"x","channel":"a"}"#, .unsubscribed),
            (#"{"type":"error","code":"bad_request","message":"m"}"#, .error),
            (#"{"type":"gap","channel":"a","from":1,"to":9,"reason":"retention"}"#, .gap),
            (#"{"type":"moved","channel":"a","url":"wss://b"}"#, .moved),
            (#"{"type":"authed","sub":"alice","exp":1}"#, .authed),
            (#"{"type":"somethingelse"}"#, .other),
        ]
        for (text, kind) in cases { #expect(frame(text).kind == kind, "\(text)") }
    }

    @Test func kindFallsBackToAFullScanWhenTypeIsNotFirst() {
        #expect(frame(#" { "id": 3, "type" : "ack", "partition": 1, "offset": 2 }"#).kind == .ack)
        #expect(frame(#"{"id":3,"type":"mess\u0061ge"}"#).kind == .message)
        #expect(frame("not json").kind == .other)
        #expect(frame("[1,2]").kind == .other)
    }

    @Test func ackFieldsAreParsed() throws {
        let fields = try frame(#"{"type":"ack","id":42,"channel":"doc:1","partition":3,"offset":131}"#).fields()
        #expect(fields.type == "ack")
        #expect(fields.id == .int(42))
        #expect(fields.channel == "doc:1")
        #expect(fields.partition == 3)
        #expect(fields.offset == 131)
    }

    @Test func nullOffsetAndStringIDsAreKept() throws {
        let fields = try frame(#"{"type":"ack","id":"a\"b","channel":"c","partition":0,"offset":null}"#).fields()
        #expect(fields.id == .string("a\"b"))
        #expect(fields.offset == nil)
        #expect(fields.partition == 0)
    }

    @Test func subscribedWithAGap() throws {
        let text =
            #"{"type":"subscribed","id":1,"channel":"c","partition":2,"offset":50,"head":80,"recovered":false,"gap":{"from":10,"to":50,"reason":"retention"}}"#
        let fields = try frame(text).fields()
        #expect(fields.recovered == false)
        #expect(fields.head == 80)
        #expect(fields.gap == SubscribeReply.Gap(from: 10, to: 50, reason: "retention"))
    }

    @Test func gapFrame() throws {
        let fields = try frame(#"{"type":"gap","channel":"c","from":3,"to":7,"reason":"retention"}"#).fields()
        #expect(fields.gap == SubscribeReply.Gap(from: 3, to: 7, reason: "retention"))
    }

    @Test func messageDataIsReadInPlace() throws {
        let message = frame(
            #"{"type":"message","channel":"c","offset":9,"ts":1700,"data":{"t":12,"p":"x"},"sender":"anonymous"}"#)
        let fields = try message.fields()
        #expect(fields.offset == 9)
        #expect(fields.timestamp == 1700)
        let data = message.withData(fields) { String(decoding: $0, as: UTF8.self) }
        #expect(data == #"{"t":12,"p":"x"}"#)
        let binary = try frame(#"{"type":"message","channel":"c","offset":1,"ts":1,"data_b64":"AAE="}"#).fields()
        #expect(binary.data == nil)
        #expect(binary.dataBase64 != nil)
    }

    @Test func malformedFramesThrow() {
        #expect(throws: JSONScanner.Failure.self) { try frame(#"{"type":"ack","#).fields() }
    }
}
