/// What a publish's `msgId` and `traceparent` may hold: both travel into every record's headers and back to
/// every subscriber, so they are bounded and well-formed before anything is stored.
public enum PublishFieldRules {
    /// Longest `msgId`: room for a UUID, a hash or a compound key, far from a payload's size.
    public static let maxMessageIDBytes = 256

    /// 1 to ``maxMessageIDBytes`` bytes of UTF-8 with no control characters (C0, DEL, C1): safe in logs,
    /// headers and JSON, while ids in any script stay usable.
    public static func isValidMessageID(_ value: String) -> Bool {
        let count = value.utf8.count
        guard count > 0, count <= maxMessageIDBytes else { return false }
        return value.unicodeScalars.allSatisfy { scalar in
            !(scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value <= 0x9F))
        }
    }

    /// A W3C Trace Context `traceparent` (version-format `00` layout): `vv-<32 hex>-<16 hex>-<2 hex>`, lower-case
    /// hex, version not `ff`, trace id and parent id not all zeros. Later versions may append `-…` fields.
    public static func isValidTraceparent(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 55 || (bytes.count > 55 && bytes.count <= 512 && bytes[55] == UInt8(ascii: "-")
            && !(bytes[0] == UInt8(ascii: "0") && bytes[1] == UInt8(ascii: "0")))
        else { return false }
        let dashes = [2, 35, 52]
        for index in 0..<55 {
            if dashes.contains(index) {
                guard bytes[index] == UInt8(ascii: "-") else { return false }
            } else if !isLowerHex(bytes[index]) {
                return false
            }
        }
        if bytes[0] == UInt8(ascii: "f") && bytes[1] == UInt8(ascii: "f") { return false }
        if bytes[3..<35].allSatisfy({ $0 == UInt8(ascii: "0") }) { return false }
        if bytes[36..<52].allSatisfy({ $0 == UInt8(ascii: "0") }) { return false }
        return true
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}
