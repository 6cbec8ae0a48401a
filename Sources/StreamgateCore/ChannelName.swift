/// A validated channel name: 1–200 bytes of `[A-Za-z0-9._~:@/-]`.
public struct ChannelName: Hashable, Sendable, CustomStringConvertible {
    /// Longest name allowed, in bytes.
    public static let maxLength = 200

    public let value: String

    /// Validates `value`; `nil` when it is outside the contract.
    public init?(_ value: String) {
        var count = 0
        for byte in value.utf8 {
            guard Self.isAllowed(byte) else { return nil }
            count += 1
        }
        guard count >= 1, count <= Self.maxLength else { return nil }
        self.value = value
    }

    /// The part before the first `:`; empty for the default namespace.
    public var namespace: Substring {
        guard let colon = value.firstIndex(of: ":") else { return "" }
        return value[..<colon]
    }

    public var description: String { value }

    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "@"),
            UInt8(ascii: "/"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}
