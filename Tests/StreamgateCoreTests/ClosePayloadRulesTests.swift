import StreamgateCore
import Testing

@Suite struct ClosePayloadRulesTests {
    private func parse(_ bytes: [UInt8]) -> Result<(code: UInt16, reason: String)?, FrameViolation> {
        bytes.withUnsafeBytes { ClosePayloadRules.parse($0) }
    }

    private func code(_ bytes: [UInt8]) -> UInt16? {
        if case .success(let close?) = parse(bytes) { return close.code }
        return nil
    }

    private func violation(_ bytes: [UInt8]) -> UInt16? {
        if case .failure(let violation) = parse(bytes) { return violation.closeCode }
        return nil
    }

    @Test func emptyPayloadHasNoCode() throws {
        #expect(try parse([]).get() == nil)
    }

    @Test func oneByteIs1002() {
        #expect(violation([0x03]) == 1002)
    }

    @Test func codeAndReasonAreRead() throws {
        let close = try #require(try parse([0x03, 0xE8] + Array("bye ✓".utf8)).get())
        #expect(close.code == 1000)
        #expect(close.reason == "bye ✓")
        #expect(code([0x0F, 0xA0]) == 4000)
    }

    @Test(arguments: [UInt16(0), 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
    func invalidCodesAre1002(code: UInt16) {
        #expect(violation([UInt8(code >> 8), UInt8(code & 0xff)]) == 1002)
    }

    @Test(arguments: [UInt16(1000), 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
    func validCodesAreAccepted(code: UInt16) {
        #expect(self.code([UInt8(code >> 8), UInt8(code & 0xff)]) == code)
    }

    @Test func invalidReasonIs1007() {
        #expect(violation([0x03, 0xE8, 0x61, 0xFF]) == 1007)
        #expect(violation([0x03, 0xE8, 0xE2, 0x82]) == 1007)  // truncated character
    }

    @Test func invalidCodeIsReportedBeforeAnInvalidReason() {
        #expect(violation([0x03, 0xED, 0xFF]) == 1002)
    }
}
