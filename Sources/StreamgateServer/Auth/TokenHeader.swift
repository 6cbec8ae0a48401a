import Foundation

/// The JOSE header fields the verifier acts on, read with strict types: a non-string `alg` or `kid`, or a
/// header that is not a JSON object, makes the token malformed instead of silently meaning "absent".
///
/// It only selects the key and refuses what is not supported; it verifies nothing. Signatures are checked by
/// jwt-kit with the key selected from these fields.
struct TokenHeader: Decodable, Sendable, Equatable {
    /// Required (RFC 7515 §4.1.1).
    var alg: String
    var kid: String?
    var typ: String?
    /// Present at all (even empty) means the token relies on extensions this verifier does not implement.
    var hasCritical: Bool

    private enum CodingKeys: String, CodingKey {
        case alg, kid, typ, crit
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        alg = try container.decode(String.self, forKey: .alg)
        kid = try container.decodeIfPresent(String.self, forKey: .kid)
        typ = try container.decodeIfPresent(String.self, forKey: .typ)
        hasCritical = container.contains(.crit)
    }

    /// The header of a compact token (the part before the first `.`), or `nil` if it is not base64url-encoded
    /// JSON of the right shape.
    init?(compactToken token: [UInt8]) {
        let end = token.firstIndex(of: UInt8(ascii: ".")) ?? token.endIndex
        guard let json = Self.base64URLDecoded(token[..<end]),
            let header = try? JSONDecoder().decode(TokenHeader.self, from: json)
        else { return nil }
        self = header
    }

    /// Whether `typ` is absent or names a JWT (`JWT`, `at+jwt`, with or without `application/`, any case):
    /// RFC 8725 §3.11 asks verifiers to refuse other kinds of token that happen to share a key.
    var hasAcceptedType: Bool {
        guard var type = typ?.lowercased() else { return true }
        if type.hasPrefix("application/") { type.removeFirst("application/".count) }
        return type == "jwt" || type == "at+jwt"
    }

    /// Unpadded base64url (RFC 7515 §2) through Foundation's decoder: the alphabet is mapped and the padding
    /// restored; anything outside the alphabet fails.
    private static func base64URLDecoded(_ part: ArraySlice<UInt8>) -> Data? {
        var base64: [UInt8] = []
        base64.reserveCapacity(part.count + 3)
        for byte in part {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                base64.append(byte)
            case UInt8(ascii: "-"): base64.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): base64.append(UInt8(ascii: "/"))
            default: return nil
            }
        }
        guard base64.count % 4 != 1 else { return nil }
        while base64.count % 4 != 0 { base64.append(UInt8(ascii: "=")) }
        return Data(base64Encoded: Data(base64))
    }
}
