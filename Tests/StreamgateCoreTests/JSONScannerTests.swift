import StreamgateCore
import Testing

@Suite struct JSONScannerTests {
    private func valid(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { JSONScanner.isValid($0) }
    }

    @Test(arguments: [
        "{}", "[]", "0", "-0", "1.5e10", "\"\\u00e9\\ud83d\\ude00\"", " { \"a\" : [1, true, null, {\"b\": \"c\"}] } ",
        "-12.5E-3", "\"tab\\tquote\\\"\"",
    ])
    func acceptsJSON(_ text: String) {
        #expect(valid(text))
    }

    @Test(arguments: [
        "", "{", "{\"a\":}", "[1,]", "01", "1.", "tru", "\"unterminated", "{\"a\" 1}", "{} {}", "\"\u{01}\"",
        "\"bad \\x escape\"", "NaN", "[1 2]", "{'a':1}",
    ])
    func refusesNonJSON(_ text: String) {
        #expect(!valid(text))
    }

    @Test func refusesExcessiveNesting() {
        #expect(!valid(String(repeating: "[", count: 200) + String(repeating: "]", count: 200)))
        #expect(valid(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
    }

    @Test func membersKeepRawValueText() throws {
        let text = #"{"type":"publish","data":{ "a" :  1,"b":"\u00e9" }}"#
        let bytes = Array(text.utf8)
        let members = try bytes.withUnsafeBytes { try JSONScanner.objectMembers($0) }
        #expect(members.map(\.key) == ["type", "data"])
        let data = members[1].value
        #expect(data.kind == .object)
        #expect(String(decoding: bytes[data.range], as: UTF8.self) == #"{ "a" :  1,"b":"\u00e9" }"#)
    }

    @Test func decodesStringsAndIntegers() throws {
        let bytes = Array(#"["a\"b\u00e9\ud83d\ude00", 9223372036854775807, 9223372036854775808, -5, 1.0]"#.utf8)
        bytes.withUnsafeBytes { raw in
            #expect((try? JSONScanner.decodeString(raw, 1..<25)) == "a\"bé😀")
        }
        let numbers = "9223372036854775807"
        Array(numbers.utf8).withUnsafeBytes { #expect(JSONScanner.decodeInt64($0, 0..<$0.count) == Int64.max) }
        Array("9223372036854775808".utf8).withUnsafeBytes { #expect(JSONScanner.decodeInt64($0, 0..<$0.count) == nil) }
        Array("-5".utf8).withUnsafeBytes { #expect(JSONScanner.decodeInt64($0, 0..<$0.count) == -5) }
        Array("1.0".utf8).withUnsafeBytes { #expect(JSONScanner.decodeInt64($0, 0..<$0.count) == nil) }
    }
}
