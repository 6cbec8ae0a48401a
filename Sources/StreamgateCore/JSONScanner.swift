/// A strict, allocation-light JSON (RFC 8259) scanner that validates text and reports where values lie,
/// so a payload can be forwarded byte for byte instead of being re-serialised.
public struct JSONScanner {
    /// Deepest nesting accepted; deeper input is refused rather than risking the stack.
    public static let maxDepth = 128

    public enum Kind: Sendable, Equatable { case object, array, string, number, bool, null }

    /// A value's kind and its byte range in the scanned text.
    public struct Value: Sendable, Equatable {
        public var kind: Kind
        public var range: Range<Int>
    }

    /// Why the text is not JSON, and where.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Whether `bytes` is exactly one JSON value, with optional surrounding white space.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var scanner = JSONScanner(bytes)
        do {
            _ = try scanner.wholeValue()
            return true
        } catch {
            return false
        }
    }

    /// Scans one JSON value that must be an object and returns its members in order, keys decoded.
    ///
    /// - Throws: ``Failure`` when the text is not JSON; the caller distinguishes "not an object" by
    ///   ``topLevelKind(_:)``.
    public static func objectMembers(_ bytes: UnsafeRawBufferPointer) throws -> [(key: String, value: Value)] {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else { throw Failure(offset: scanner.index, reason: "expected a JSON object") }
        var members: [(key: String, value: Value)] = []
        scanner.index += 1
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                let keyStart = scanner.index
                guard scanner.peek() == UInt8(ascii: "\"") else { throw scanner.fail("expected a member name") }
                try scanner.string()
                let key = try Self.decodeString(bytes, keyStart..<scanner.index)
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: ":") else { throw scanner.fail("expected ':'") }
                scanner.index += 1
                scanner.skipWhitespace()
                let value = try scanner.value(depth: 1)
                members.append((key, value))
                scanner.skipWhitespace()
                guard let next = scanner.peek() else { throw scanner.fail("unterminated object") }
                scanner.index += 1
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else { throw scanner.fail("expected ',' or '}'", back: 1) }
            }
        }
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.fail("unexpected text after the value") }
        return members
    }

    /// The kind of the single top-level value, or `nil` when the text is not JSON.
    public static func topLevelKind(_ bytes: UnsafeRawBufferPointer) -> Kind? {
        var scanner = JSONScanner(bytes)
        return try? scanner.wholeValue().kind
    }

    /// Decodes a string token (quotes included in `range`) into a Swift string.
    public static func decodeString(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) throws -> String {
        var output: [UInt8] = []
        output.reserveCapacity(range.count)
        var position = range.lowerBound + 1
        let end = range.upperBound - 1
        while position < end {
            let byte = bytes[position]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                position += 1
                continue
            }
            let escape = bytes[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "\""): output.append(0x22)
            case UInt8(ascii: "\\"): output.append(0x5c)
            case UInt8(ascii: "/"): output.append(0x2f)
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0c)
            case UInt8(ascii: "n"): output.append(0x0a)
            case UInt8(ascii: "r"): output.append(0x0d)
            case UInt8(ascii: "t"): output.append(0x09)
            default:
                var scalar = hex4(bytes, position)
                position += 4
                if (0xd800..<0xdc00).contains(scalar), position + 6 <= end + 0,
                    bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(bytes, position + 2)
                    if (0xdc00..<0xe000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                        position += 6
                    }
                }
                guard let unicode = Unicode.Scalar(scalar) else {
                    throw Failure(offset: position, reason: "lone surrogate in string")
                }
                output.append(contentsOf: Array(String(Character(unicode)).utf8))
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Parses a number token as an exact 64-bit integer; `nil` for fractions, exponents or overflow.
    public static func decodeInt64(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        var position = range.lowerBound
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        guard position < range.upperBound else { return nil }
        var result: Int64 = 0
        while position < range.upperBound {
            let byte = bytes[position]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            result = sum
            position += 1
        }
        return result
    }

    // MARK: - Scanning

    private mutating func wholeValue() throws -> Value {
        skipWhitespace()
        let value = try self.value(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected text after the value") }
        return value
    }

    private mutating func value(depth: Int) throws -> Value {
        guard depth <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
        let start = index
        guard let byte = peek() else { throw fail("expected a value") }
        let kind: Kind
        switch byte {
        case UInt8(ascii: "{"):
            try container(close: UInt8(ascii: "}"), depth: depth, isObject: true)
            kind = .object
        case UInt8(ascii: "["):
            try container(close: UInt8(ascii: "]"), depth: depth, isObject: false)
            kind = .array
        case UInt8(ascii: "\""):
            try string()
            kind = .string
        case UInt8(ascii: "t"):
            try literal("true")
            kind = .bool
        case UInt8(ascii: "f"):
            try literal("false")
            kind = .bool
        case UInt8(ascii: "n"):
            try literal("null")
            kind = .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try number()
            kind = .number
        default:
            throw fail("unexpected character")
        }
        return Value(kind: kind, range: start..<index)
    }

    private mutating func container(close: UInt8, depth: Int, isObject: Bool) throws {
        index += 1
        skipWhitespace()
        if peek() == close {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            if isObject {
                guard peek() == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                try string()
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipWhitespace()
            }
            _ = try value(depth: depth + 1)
            skipWhitespace()
            guard let next = peek() else { throw fail("unterminated container") }
            index += 1
            if next == close { return }
            guard next == UInt8(ascii: ",") else { throw fail("expected ',' or a closing bracket", back: 1) }
        }
    }

    private mutating func string() throws {
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { throw fail("unterminated escape") }
                let escape = bytes[index + 1]
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 6 <= bytes.count, (2..<6).allSatisfy({ Self.isHex(bytes[index + $0]) }) else {
                        throw fail("bad \\u escape")
                    }
                    index += 6
                default:
                    throw fail("bad escape")
                }
            case 0..<0x20:
                throw fail("control character in string")
            default:
                index += 1
            }
        }
        throw fail("unterminated string")
    }

    private mutating func number() throws {
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), Self.isDigit(first) else { throw fail("bad number") }
        if first == UInt8(ascii: "0") {
            index += 1
        } else {
            while let byte = peek(), Self.isDigit(byte) { index += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let byte = peek(), Self.isDigit(byte) else { throw fail("bad fraction") }
            while let byte = peek(), Self.isDigit(byte) { index += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let byte = peek(), Self.isDigit(byte) else { throw fail("bad exponent") }
            while let byte = peek(), Self.isDigit(byte) { index += 1 }
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail("bad literal") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw fail("bad literal")
        }
        index += count
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private func fail(_ reason: String, back: Int = 0) -> Failure { Failure(offset: index - back, reason: reason) }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func isHex(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }

    private static func hex4(_ bytes: UnsafeRawBufferPointer, _ position: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = bytes[position + offset]
            let digit: UInt32 = isDigit(byte) ? UInt32(byte - 48) : UInt32((byte | 0x20) - UInt8(ascii: "a") + 10)
            value = value << 4 | digit
        }
        return value
    }
}
