import StreamgateCore
import Testing

@Suite struct RecordHeadersTests {
    private static func written(_ headers: RecordHeaders) -> [String] {
        headers.fields.map { "\($0.name)=\($0.value)" }
    }

    private static func known(_ name: String) -> RecordHeaders.Known? {
        Array(name.utf8).withUnsafeBytes { RecordHeaders.known($0) }
    }

    @Test func requiredFieldsInContractOrder() {
        let headers = RecordHeaders(contentType: "application/json", sender: "anonymous", connection: "c1", node: "n1")
        #expect(headers.msgID == nil && headers.traceparent == nil)
        #expect(
            Self.written(headers) == [
                "content-type=application/json", "sg-sender=anonymous", "sg-conn=c1", "sg-node=n1",
            ])
    }

    @Test func optionalFieldsFollowWhenPresent() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        var headers = RecordHeaders(
            contentType: "application/octet-stream", msgID: "order-42", sender: "alice", connection: "c2", node: "n2",
            traceparent: trace)
        let required = ["content-type=application/octet-stream", "sg-sender=alice", "sg-conn=c2", "sg-node=n2"]
        #expect(Self.written(headers) == required + ["sg-msg-id=order-42", "traceparent=" + trace])

        headers.traceparent = nil
        #expect(Self.written(headers) == required + ["sg-msg-id=order-42"])

        headers.msgID = nil
        headers.traceparent = trace
        #expect(Self.written(headers) == required + ["traceparent=" + trace])
    }

    @Test func equality() {
        let headers = RecordHeaders(contentType: "application/json", sender: "s", connection: "c", node: "n")
        var other = headers
        #expect(headers == other)
        other.msgID = "m"
        #expect(headers != other)
    }

    @Test func namesAreTheContract() {
        #expect(RecordHeaders.Name.contentType == "content-type")
        #expect(RecordHeaders.Name.msgID == "sg-msg-id")
        #expect(RecordHeaders.Name.sender == "sg-sender")
        #expect(RecordHeaders.Name.connection == "sg-conn")
        #expect(RecordHeaders.Name.node == "sg-node")
        #expect(RecordHeaders.Name.traceparent == "traceparent")
    }

    @Test func knowsEveryName() {
        #expect(Self.known("content-type") == .contentType)
        #expect(Self.known("sg-msg-id") == .msgID)
        #expect(Self.known("sg-sender") == .sender)
        #expect(Self.known("sg-conn") == .connection)
        #expect(Self.known("sg-node") == .node)
        #expect(Self.known("traceparent") == .traceparent)
    }

    @Test func knowsWhatItWrites() {
        let headers = RecordHeaders(
            contentType: "application/json", msgID: "m", sender: "s", connection: "c", node: "n", traceparent: "t")
        let known = headers.fields.map { Self.known($0.name) }
        #expect(known == [.contentType, .sender, .connection, .node, .msgID, .traceparent])
    }

    @Test func nearMissesAreUnknown() {
        for name in [
            "", "content-typ", "content-typee", "Content-Type", "sg-msg-idx", "sg-msg-i", "sg-sendex", "sg-con",
            "sg-conn ", "sg-nodf", "xg-node", "traceparenT", "tracestate", "content-type\0",
        ] {
            #expect(Self.known(name) == nil, "\(name.debugDescription)")
        }
        #expect(RecordHeaders.known(UnsafeRawBufferPointer(start: nil, count: 0)) == nil)
    }
}
