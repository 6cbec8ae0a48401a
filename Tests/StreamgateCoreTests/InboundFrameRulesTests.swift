import StreamgateCore
import Testing

@Suite struct InboundFrameRulesTests {
    private func header(
        _ opcode: UInt8, fin: Bool = true, masked: Bool = true, length: Int = 0,
        rsv: (Bool, Bool, Bool) = (false, false, false)
    ) -> WebSocketFrameHeader {
        WebSocketFrameHeader(
            fin: fin, rsv1: rsv.0, rsv2: rsv.1, rsv3: rsv.2, opcode: opcode, masked: masked,
            length: length)
    }

    private func violation(_ result: Result<FrameDisposition, FrameViolation>) -> FrameViolation? {
        if case .failure(let violation) = result { return violation }
        return nil
    }

    private func consume(_ rules: inout InboundFrameRules, _ bytes: [UInt8], fin: Bool) -> FrameViolation? {
        bytes.withUnsafeBytes { rules.consume($0, fin: fin) }
    }

    /// Admits and consumes one data frame; the first violation, if any.
    private func frame(_ rules: inout InboundFrameRules, _ opcode: UInt8, _ bytes: [UInt8], fin: Bool)
        -> FrameViolation?
    {
        if let violation = violation(rules.admit(header(opcode, fin: fin, length: bytes.count))) { return violation }
        return consume(&rules, bytes, fin: fin)
    }

    // MARK: - Accepted sequences

    @Test func controlAndDataFramesAreClassified() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(rules.admit(header(0x9)) == .success(.ping))
        #expect(rules.admit(header(0xA, length: 125)) == .success(.pong))
        #expect(rules.admit(header(0x8, length: 2)) == .success(.close))
        #expect(rules.admit(header(0x1, length: 3)) == .success(.messageStart(isText: true)))
        #expect(consume(&rules, Array("abc".utf8), fin: true) == nil)
        #expect(rules.admit(header(0x2, length: 3)) == .success(.messageStart(isText: false)))
        #expect(consume(&rules, [0xff, 0xfe, 0x00], fin: true) == nil)  // binary is not UTF-8-checked
        #expect(!rules.inMessage)
    }

    @Test func fragmentedMessageWithInterleavedControlFrames() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(rules.admit(header(0x1, fin: false, length: 2)) == .success(.messageStart(isText: true)))
        #expect(rules.inMessage)
        #expect(consume(&rules, Array("ab".utf8), fin: false) == nil)
        #expect(rules.admit(header(0x9, length: 4)) == .success(.ping))
        #expect(rules.admit(header(0x0, fin: false, length: 2)) == .success(.messageContinuation))
        #expect(consume(&rules, Array("cd".utf8), fin: false) == nil)
        #expect(rules.admit(header(0xA)) == .success(.pong))
        #expect(rules.admit(header(0x0, fin: true, length: 0)) == .success(.messageContinuation))
        #expect(!rules.inMessage)
        #expect(consume(&rules, [], fin: true) == nil)
        #expect(!rules.inMessage)
        #expect(rules.admit(header(0x2, length: 1)) == .success(.messageStart(isText: false)))
    }

    // MARK: - 1002

    @Test func unmaskedFramesAreRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        for opcode: UInt8 in [0x1, 0x2, 0x8, 0x9, 0xA] {
            #expect(violation(rules.admit(header(opcode, masked: false)))?.closeCode == 1002)
        }
    }

    @Test(arguments: [(true, false, false), (false, true, false), (false, false, true)])
    func reservedBitsAreRefused(rsv1: Bool, rsv2: Bool, rsv3: Bool) {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(violation(rules.admit(header(0x1, rsv: (rsv1, rsv2, rsv3))))?.closeCode == 1002)
        #expect(violation(rules.admit(header(0x9, rsv: (rsv1, rsv2, rsv3))))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(3), 4, 5, 6, 7, 11, 12, 13, 14, 15])
    func reservedOpcodesAreRefused(opcode: UInt8) {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(violation(rules.admit(header(opcode)))?.closeCode == 1002)
        #expect(violation(rules.admit(header(opcode, fin: false)))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(8), 9, 10])
    func controlFramesOver125BytesOrFragmentedAreRefused(opcode: UInt8) {
        var rules = InboundFrameRules(maxMessageBytes: 1000)
        #expect(violation(rules.admit(header(opcode, length: 126)))?.closeCode == 1002)
        #expect(violation(rules.admit(header(opcode, fin: false)))?.closeCode == 1002)
        #expect(violation(rules.admit(header(opcode, length: 125))) == nil)
    }

    @Test func continuationWithoutMessageIsRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(violation(rules.admit(header(0x0, fin: true)))?.closeCode == 1002)
        #expect(violation(rules.admit(header(0x0, fin: false)))?.closeCode == 1002)
        // After a complete message, nothing is left to continue.
        #expect(frame(&rules, 0x1, Array("hi".utf8), fin: true) == nil)
        #expect(violation(rules.admit(header(0x0)))?.closeCode == 1002)
    }

    @Test(arguments: [UInt8(1), 2])
    func newDataFrameInsideAMessageIsRefused(opcode: UInt8) {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&rules, 0x2, [1], fin: false) == nil)
        #expect(violation(rules.admit(header(opcode)))?.closeCode == 1002)
        // The refused frame changed nothing: the message can still be continued.
        #expect(rules.inMessage)
        #expect(frame(&rules, 0x0, [2], fin: true) == nil)
    }

    @Test func negativeLengthIsRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(violation(rules.admit(header(0x2, length: -1)))?.closeCode == 1002)
    }

    // MARK: - 1009

    @Test func messageOverTheLimitIsRefusedFromTheHeader() {
        var rules = InboundFrameRules(maxMessageBytes: 10)
        #expect(violation(rules.admit(header(0x1, length: 11)))?.closeCode == 1009)
        #expect(violation(rules.admit(header(0x2, length: Int.max)))?.closeCode == 1009)
        #expect(frame(&rules, 0x1, Array(repeating: UInt8(ascii: "a"), count: 10), fin: true) == nil)
    }

    @Test func fragmentsAddUpTowardsTheLimit() {
        var rules = InboundFrameRules(maxMessageBytes: 10)
        #expect(frame(&rules, 0x2, Array(repeating: 0, count: 6), fin: false) == nil)
        #expect(frame(&rules, 0x0, Array(repeating: 0, count: 4), fin: false) == nil)
        #expect(violation(rules.admit(header(0x0, length: 1)))?.closeCode == 1009)
        #expect(violation(rules.admit(header(0x0, length: Int.max)))?.closeCode == 1009)
        #expect(frame(&rules, 0x0, [], fin: true) == nil)
        // The next message starts from zero.
        #expect(frame(&rules, 0x2, Array(repeating: 0, count: 10), fin: true) == nil)
    }

    @Test func tooManyFragmentsAreRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100, maxFragments: 3)
        #expect(frame(&rules, 0x1, [], fin: false) == nil)
        #expect(frame(&rules, 0x0, [], fin: false) == nil)
        #expect(frame(&rules, 0x0, [], fin: false) == nil)
        #expect(violation(rules.admit(header(0x0, fin: true)))?.closeCode == 1009)
        var three = InboundFrameRules(maxMessageBytes: 100, maxFragments: 3)
        #expect(frame(&three, 0x1, [], fin: false) == nil)
        #expect(frame(&three, 0x0, [], fin: false) == nil)
        #expect(frame(&three, 0x0, [], fin: true) == nil)
    }

    // MARK: - 1007

    @Test func invalidTextIsRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&rules, 0x1, [0x61, 0xC0, 0x80], fin: true)?.closeCode == 1007)
        #expect(!rules.inMessage)
        #expect(frame(&rules, 0x1, [0xED, 0xA0, 0x80], fin: true)?.closeCode == 1007)  // a surrogate
    }

    @Test func textSplitInsideACharacterIsValid() {
        let text = Array("a€𝄞b".utf8)  // 1 + 3 + 4 + 1 bytes
        for first in 0...text.count {
            for second in first...text.count {
                var rules = InboundFrameRules(maxMessageBytes: 100)
                #expect(frame(&rules, 0x1, Array(text[..<first]), fin: false) == nil)
                #expect(frame(&rules, 0x0, Array(text[first..<second]), fin: false) == nil)
                #expect(frame(&rules, 0x0, Array(text[second...]), fin: true) == nil)
            }
        }
    }

    @Test func invalidSequenceAcrossFragmentsFailsWhereItBecomesInvalid() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&rules, 0x1, [0x61, 0xF0], fin: false) == nil)  // F0: needs 90...BF next
        #expect(frame(&rules, 0x0, [0x8F], fin: false)?.closeCode == 1007)  // an overlong form: fails now
        // ... not only at the end: a longer message would fail on the same fragment.
        var longer = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&longer, 0x1, [0xE2, 0x82], fin: false) == nil)
        #expect(frame(&longer, 0x0, [0x41, 0x41], fin: false)?.closeCode == 1007)
    }

    @Test func messageEndingInsideACharacterIsRefused() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&rules, 0x1, [0x61, 0xE2, 0x82], fin: false) == nil)
        #expect(frame(&rules, 0x0, [], fin: true)?.closeCode == 1007)
        var single = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&single, 0x1, [0xF0, 0x9D, 0x84], fin: true)?.closeCode == 1007)
    }

    @Test func unconsumedFinalTextFrameIsCheckedAtTheNextDataFrame() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        #expect(frame(&rules, 0x1, [0xE2], fin: false) == nil)
        // Final frame admitted, its (empty) payload never fed: the next message finds the text incomplete.
        #expect(violation(rules.admit(header(0x0, fin: true))) == nil)
        #expect(violation(rules.admit(header(0x1, length: 1)))?.closeCode == 1007)
        #expect(violation(rules.admit(header(0x1, length: 1))) == nil)
    }

    @Test func payloadMayBeFedInPieces() {
        var rules = InboundFrameRules(maxMessageBytes: 100)
        let text = Array("€€".utf8)
        #expect(violation(rules.admit(header(0x1, length: text.count))) == nil)
        for (index, byte) in text.enumerated() {
            #expect(consume(&rules, [byte], fin: index == text.count - 1) == nil)
        }
        #expect(!rules.inMessage)
    }

    @Test func violationsHaveShortASCIIReasons() {
        var rules = InboundFrameRules(maxMessageBytes: 1, maxFragments: 1)
        let headers = [
            header(0x1, masked: false), header(0x1, rsv: (true, false, false)), header(0x3),
            header(0x9, length: 126), header(0x9, fin: false), header(0x0), header(0x1, length: 2),
        ]
        for header in headers {
            let reason = violation(rules.admit(header))?.reason ?? ""
            #expect(!reason.isEmpty && reason.utf8.count <= 123 && reason.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f })
        }
    }
}
