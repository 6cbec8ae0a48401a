import StreamgateCore
import Testing

/// A small seeded generator (SplitMix64), so a failing case can be replayed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct UTF8StreamValidatorTests {
    private func isValid(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { UTF8Validation.isValid($0) } }

    /// Whether some continuation makes `bytes` valid: at most three more bytes can end any sequence, and for the
    /// byte after a lead, 0x80 or 0xA0 fits every allowed range.
    private func isExtendable(_ bytes: [UInt8]) -> Bool {
        if isValid(bytes) { return true }
        for count in 1...3 {
            for first: UInt8 in [0x80, 0xA0] where isValid(bytes + [first] + Array(repeating: 0x80, count: count - 1)) {
                return true
            }
        }
        return false
    }

    /// Feeds `pieces` in order: the index of the piece that failed, `pieces.count` when only `finish` failed,
    /// nil when the text is valid.
    private func firstFailure(_ pieces: [[UInt8]]) -> Int? {
        var validator = UTF8StreamValidator()
        for (index, piece) in pieces.enumerated() where !piece.withUnsafeBytes({ validator.feed($0) }) {
            return index
        }
        return validator.finish() ? nil : pieces.count
    }

    /// Bytes biased towards UTF-8's interesting values, so both valid and invalid strings are common.
    private func randomBytes(_ generator: inout SeededGenerator) -> [UInt8] {
        let interesting: [UInt8] = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
            0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ]
        let count = Int.random(in: 0...40, using: &generator)
        var bytes: [UInt8] = []
        while bytes.count < count {
            switch Int.random(in: 0..<32, using: &generator) {
            case 0: bytes.append(UInt8.random(in: 0...255, using: &generator))
            case 1: bytes.append(interesting.randomElement(using: &generator)!)
            case 2: bytes.append(contentsOf: Array("aé€𝄞".utf8).shuffled(using: &generator).prefix(3))
            default:
                // A valid character, of any encoded length.
                let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xFFFF, 0x10000...0x10FFFF]
                let range = ranges.randomElement(using: &generator)!
                let scalar = Unicode.Scalar(UInt32.random(in: range, using: &generator)) ?? "x"
                bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
        }
        return bytes
    }

    private func randomSplit(_ bytes: [UInt8], _ generator: inout SeededGenerator) -> [[UInt8]] {
        var cuts = (0..<Int.random(in: 0...4, using: &generator)).map { _ in
            Int.random(in: 0...bytes.count, using: &generator)
        }
        cuts = [0] + cuts.sorted() + [bytes.count]
        return zip(cuts, cuts.dropFirst()).map { Array(bytes[$0..<$1]) }
    }

    @Test func acceptsValidText() {
        for text in [
            "", "plain ASCII, longer than eight bytes", "é", "€", "𝄞", "\u{7F}\u{80}\u{7FF}\u{800}",
            "\u{FFFF}\u{10000}\u{10FFFF}", "\u{D7FF}\u{E000}", "mixed ascii then 日本語 then more ascii",
        ] {
            #expect(firstFailure([Array(text.utf8)]) == nil, "\(text)")
        }
    }

    @Test(arguments: [
        [UInt8(0x80)], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],
        [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFE], [0xFF], [0xC2, 0x41], [0xE2, 0x82, 0x41],
    ])
    func refusesInvalidSequences(bytes: [UInt8]) {
        #expect(firstFailure([bytes]) == 0)
        #expect(!isValid(bytes))
    }

    @Test func refusesTruncatedTextOnlyAtTheEnd() {
        #expect(firstFailure([[0x61, 0xE2, 0x82]]) == 1)
        #expect(firstFailure([[0xF0, 0x9D], [0x84]]) == 2)
    }

    @Test func failsOnThePieceWhereTheTextBecomesInvalid() {
        #expect(firstFailure([[0x61], [0xF0], [0x90], [0x41], [0x41]]) == 3)
        #expect(firstFailure([Array("ok".utf8), [0xED], [0xA0]]) == 2)
        // An invalid byte among long ASCII runs (the word-at-a-time path) is still found.
        let long = Array(repeating: UInt8(ascii: "a"), count: 37)
        #expect(firstFailure([long, long + [0xFF] + long]) == 1)
        #expect(firstFailure([long + [0xC3], [0xA9] + long]) == nil)
    }

    @Test func staysFailedAndResets() {
        var validator = UTF8StreamValidator()
        #expect(![UInt8(0xFF)].withUnsafeBytes { validator.feed($0) })
        #expect(![UInt8(0x41)].withUnsafeBytes { validator.feed($0) })
        #expect(validator.failed)
        validator.reset()
        #expect([UInt8(0x41)].withUnsafeBytes { validator.feed($0) })
        let finished = validator.finish()
        #expect(finished)
    }

    @Test func agreesWithWholeBufferValidationForRandomSplits() {
        var generator = SeededGenerator(seed: 6455)
        var validCount = 0
        for _ in 0..<20_000 {
            let bytes = randomBytes(&generator)
            let pieces = randomSplit(bytes, &generator)
            let valid = isValid(bytes)
            if valid { validCount += 1 }
            let failure = firstFailure(pieces)
            #expect((failure == nil) == valid, "\(bytes) split as \(pieces)")
            // Fail fast: the pieces before the failing one can still become valid, the failing one cannot
            // (unless only the end of the text failed).
            if let failure, failure < pieces.count {
                #expect(isExtendable(pieces[..<failure].flatMap { $0 }), "\(pieces)")
                #expect(!isExtendable(pieces[...failure].flatMap { $0 }), "\(pieces)")
            } else if failure == pieces.count {
                #expect(isExtendable(bytes) && !valid, "\(pieces)")
            }
        }
        // The generator must exercise both outcomes.
        #expect(validCount > 2_000 && validCount < 18_000)
    }

    @Test func byteByByteFailsAtTheFirstImpossiblePrefix() {
        var generator = SeededGenerator(seed: 3629)
        for _ in 0..<5_000 {
            let bytes = randomBytes(&generator)
            let expected = (0..<bytes.count).first { !isExtendable(Array(bytes[...$0])) }
            var validator = UTF8StreamValidator()
            let actual = bytes.indices.first { index in ![bytes[index]].withUnsafeBytes { validator.feed($0) } }
            #expect(actual == expected, "\(bytes)")
        }
    }
}
