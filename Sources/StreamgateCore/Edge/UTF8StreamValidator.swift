/// Incremental UTF-8 well-formedness (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF) for text
/// that arrives in pieces, such as the fragments of a WebSocket text message (RFC 6455 §5.6, §8.1).
///
/// It fails fast: ``feed(_:)`` returns `false` on the first byte after which no continuation could make the text
/// valid, even when the offending sequence started in an earlier piece. ``finish()`` also refuses text that ends
/// inside a multi-byte sequence. Over a whole buffer it agrees with ``UTF8Validation/isValid(_:)``.
///
/// The state is one expected-continuation count and the range the next byte must fall in, so a character split
/// across pieces costs nothing extra. Runs of ASCII are skipped eight bytes at a time.
public struct UTF8StreamValidator: Sendable, Equatable {
    /// Continuation bytes still expected for the current character (0 at a character boundary).
    private var remaining: UInt8 = 0
    /// Range the next continuation byte must fall in. Only the byte right after a lead byte can be narrower than
    /// 0x80...0xBF (E0, ED, F0, F4 rule out overlong forms, surrogates and code points past U+10FFFF).
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF
    /// Set on the first invalid byte; from then on every call fails.
    public private(set) var failed = false

    public init() {}

    /// Whether the text so far ends at a character boundary (and nothing failed): what a complete text must do.
    public var isAtBoundary: Bool { !failed && remaining == 0 }

    /// Checks the next piece of text.
    /// - Parameter bytes: the bytes that follow everything fed before.
    /// - Returns: `false` when the text can no longer be valid UTF-8, whatever follows; `true` otherwise.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !failed else { return false }
        let count = bytes.count
        var index = 0
        while index < count {
            if remaining == 0 {
                // Skip ASCII a word at a time while at a character boundary.
                while index + 8 <= count,
                    bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
                {
                    index += 8
                }
                guard index < count else { break }
                let lead = bytes[index]
                index += 1
                if lead < 0x80 { continue }
                lower = 0x80
                upper = 0xBF
                switch lead {
                case 0xC2...0xDF: remaining = 1
                case 0xE0:
                    remaining = 2
                    lower = 0xA0  // below: overlong
                case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
                case 0xED:
                    remaining = 2
                    upper = 0x9F  // above: surrogates U+D800...U+DFFF
                case 0xF0:
                    remaining = 3
                    lower = 0x90  // below: overlong
                case 0xF1...0xF3: remaining = 3
                case 0xF4:
                    remaining = 3
                    upper = 0x8F  // above: past U+10FFFF
                default:  // 0x80...0xC1 (stray continuation, overlong two-byte lead), 0xF5...0xFF
                    failed = true
                    return false
                }
            } else {
                let byte = bytes[index]
                guard byte >= lower, byte <= upper else {
                    failed = true
                    return false
                }
                index += 1
                remaining -= 1
                lower = 0x80
                upper = 0xBF
            }
        }
        return true
    }

    /// Ends the text: `false` when something failed or the text stops inside a multi-byte sequence.
    /// The state is then reset for the next text.
    public mutating func finish() -> Bool {
        let valid = isAtBoundary
        self = UTF8StreamValidator()
        return valid
    }

    /// Forgets everything fed so far.
    public mutating func reset() {
        self = UTF8StreamValidator()
    }
}
