import StreamgateCore
import Testing

@Suite struct ClientFrameDecoderTests {
    let decoder = ClientFrameDecoder(maxPayloadBytes: 64)

    private func decode(_ text: String) -> Result<ClientRequest, RequestError> {
        Array(text.utf8).withUnsafeBytes { decoder.decode($0) }
    }

    private func error(_ text: String) -> RequestError? {
        if case .failure(let error) = decode(text) { return error }
        return nil
    }

    @Test func subscribeWithEveryStartForm() throws {
        let channel = try #require(ChannelName("doc:42"))
        let id = RequestID(json: Array("1".utf8))
        #expect(try decode(#"{"type":"subscribe","id":1,"channel":"doc:42"}"#).get()
            == .subscribe(id: id, channel: channel, from: .latest))
        #expect(try decode(#"{"type":"subscribe","id":1,"channel":"doc:42","from":"earliest"}"#).get()
            == .subscribe(id: id, channel: channel, from: .earliest))
        #expect(try decode(#"{"type":"subscribe","id":1,"channel":"doc:42","from":{"offset":7,"partition":3}}"#).get()
            == .subscribe(id: id, channel: channel, from: .offset(7, partition: 3)))
        #expect(try decode(#"{"type":"subscribe","id":1,"channel":"doc:42","from":{"time":"1970-01-01T00:00:01.5Z"}}"#).get()
            == .subscribe(id: id, channel: channel, from: .time(milliseconds: 1500)))
    }

    @Test func publishKeepsDataTextAndDecodesBase64() throws {
        let request = try decode(#"{"type":"publish","id":"p","channel":"a","data":[1, 2 ,3],"msgId":"m1"}"#).get()
        guard case .publish(let id, _, let payload, let msgId, _) = request else { Issue.record("not a publish"); return }
        #expect(id == RequestID(json: Array(#""p""#.utf8)))
        #expect(payload == .json(Array("[1, 2 ,3]".utf8)))
        #expect(msgId == "m1")
        let binary = try decode(#"{"type":"publish","channel":"a","data_b64":"AAEC"}"#).get()
        guard case .publish(_, _, .binary(let bytes), _, _) = binary else { Issue.record("not binary"); return }
        #expect(bytes == [0, 1, 2])
    }

    @Test(arguments: [
        ("not json", ErrorCode.badRequest),
        ("[1,2]", .badRequest),
        ("\"hello\"", .badRequest),
        (#"{"type":"dance"}"#, .badRequest),
        (#"{"id":1}"#, .badRequest),
        (#"{"type":"subscribe"}"#, .badRequest),
        (#"{"type":"subscribe","channel":"has space"}"#, .badRequest),
        (#"{"type":"subscribe","channel":""}"#, .badRequest),
        (#"{"type":"subscribe","channel":"a","from":5}"#, .badRequest),
        (#"{"type":"subscribe","channel":"a","from":{"offset":"x"}}"#, .badRequest),
        (#"{"type":"subscribe","channel":"a","from":{"offset":-1}}"#, .badRequest),
        (#"{"type":"subscribe","channel":"a","from":{"time":"yesterday"}}"#, .badRequest),
        (#"{"type":"publish","channel":"a"}"#, .badRequest),
        (#"{"type":"publish","channel":"a","data":1,"data_b64":"AA=="}"#, .badRequest),
        (#"{"type":"publish","channel":"a","data_b64":"!!"}"#, .badRequest),
        (#"{"type":"publish","channel":"a","data":"0123456789012345678901234567890123456789012345678901234567890123456789"}"#,
         .tooLarge),
        (#"{"type":"publish","id":1.5,"channel":"a","data":1}"#, .badRequest),
        (#"{"type":"subscribe","type":"publish","channel":"a"}"#, .badRequest),
    ])
    func refusesBadFrames(text: String, code: ErrorCode) {
        #expect(error(text)?.code == code)
    }

    @Test func echoesIdOnErrors() {
        #expect(error(#"{"type":"subscribe","id":"abc","channel":"bad channel"}"#)?.id == RequestID(json: Array(#""abc""#.utf8)))
    }

    @Test func channelNames() {
        #expect(ChannelName("doc:42")?.namespace == "doc")
        #expect(ChannelName("news")?.namespace == "")
        #expect(ChannelName(String(repeating: "a", count: 200)) != nil)
        #expect(ChannelName(String(repeating: "a", count: 201)) == nil)
        #expect(ChannelName("é") == nil)
        #expect(ChannelName("a/b.c~d_e-f@g:h") != nil)
    }

    @Test func rfc3339() {
        #expect(RFC3339.milliseconds("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.milliseconds("2026-11-26T20:38:09.123Z") == 1_795_725_489_123)
        #expect(RFC3339.milliseconds("2026-11-26T21:38:09.123+01:00") == 1_795_725_489_123)
        #expect(RFC3339.milliseconds("2026-11-26") == nil)
        #expect(RFC3339.milliseconds("2026-13-01T00:00:00Z") == nil)
    }

    @Test func utf8Validation() {
        let valid: [[UInt8]] = [Array("héllo 😀".utf8), [], [0x7f]]
        let invalid: [[UInt8]] = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff]]
        for bytes in valid { #expect(bytes.withUnsafeBytes { UTF8Validation.isValid($0) }) }
        for bytes in invalid { #expect(!bytes.withUnsafeBytes { UTF8Validation.isValid($0) }) }
    }
}

@Suite struct AuditLineEncoderTests {
    @Test func keepsEachRecordOnOneLine() throws {
        let value = Array("{\n  \"a\": \"x\\ny\",\r\n  \"b\": 1\n}".utf8)
        let line = value.withUnsafeBytes { value in
            Array("doc:1".utf8).withUnsafeBytes { channel in
                AuditLineEncoder.line(channel: channel, partition: 2, offset: 7, timestamp: 9,
                                      headers: [("content-type", Array("application/json".utf8))], payload: .json(value))
            }
        }
        #expect(!line.contains(0x0a) && !line.contains(0x0d))
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.hasPrefix(#"{"channel":"doc:1","partition":2,"offset":7,"ts":9,"headers":{"content-type":"application/json"},"data":{"#))
        #expect(text.contains(#""a": "x\ny""#))
        #expect(line.withUnsafeBytes { JSONScanner.isValid($0) })
    }
}

@Suite struct RecordPayloadClassifierTests {
    private func classify(_ value: String, _ contentType: String?) -> String {
        Array(value.utf8).withUnsafeBytes { value in
            let run = { (type: UnsafeRawBufferPointer?) -> String in
                switch RecordPayloadClassifier.classify(value: value, contentType: type) {
                case .json: "json"
                case .binary: "binary"
                }
            }
            guard let contentType else { return run(nil) }
            return Array(contentType.utf8).withUnsafeBytes { run($0) }
        }
    }

    @Test func followsContentTypeAndValidity() {
        #expect(classify(#"{"a":1}"#, nil) == "json")
        #expect(classify("not json", nil) == "binary")
        #expect(classify(#"{"a":1}"#, "application/json") == "json")
        #expect(classify(#"{"a":1}"#, " Application/JSON ; charset=utf-8") == "json")
        #expect(classify(#"{"a":1}"#, "application/cloudevents+json") == "json")
        #expect(classify(#"{"a":1}"#, "application/octet-stream") == "binary")
        #expect(classify("{broken", "application/json") == "binary")
        #expect(classify("", nil) == "binary")
    }
}

@Suite struct ServerFrameEncoderTests {
    @Test func framesAreValidJSON() throws {
        let channel = try #require(ChannelName("doc:42"))
        let frames: [[UInt8]] = [
            ServerFrameEncoder.ack(id: RequestID(json: Array("7".utf8)), channel: channel, partition: 3, offset: 131),
            ServerFrameEncoder.ack(id: nil, channel: channel, partition: 0, offset: nil),
            ServerFrameEncoder.nack(id: nil, code: .kafkaUnavailable, message: "line\nbreak \"quoted\"", persisted: "unknown"),
            ServerFrameEncoder.subscribed(id: nil, channel: channel, partition: 1, offset: 0, head: Int64.max,
                                          gap: .init(from: -1, to: 9_000_000_000, reason: "retention")),
            ServerFrameEncoder.gap(channel: channel, .init(from: 5, to: 10, reason: "retention")),
        ]
        for frame in frames { #expect(frame.withUnsafeBytes { JSONScanner.isValid($0) }) }
        let subscribed = String(decoding: frames[3], as: UTF8.self)
        #expect(subscribed.contains(#""head":9223372036854775807,"recovered":false,"gap":{"from":-1,"to":9000000000,"reason":"retention"}"#))
        #expect(String(decoding: frames[0], as: UTF8.self)
            == #"{"type":"ack","id":7,"channel":"doc:42","partition":3,"offset":131}"#)
    }
}
