/// An HTTP/1.x request head, as the server's HTTP decoder read it.
public struct HandshakeHead: Sendable {
    /// The method as sent, e.g. `GET`.
    public var method: String
    public var versionMajor: Int
    public var versionMinor: Int
    /// The request target as sent, e.g. `/v1/ws?from=latest`.
    public var uri: String
    /// The header fields in order, duplicates kept, names as sent.
    public var headers: [(name: String, value: String)]

    public init(
        method: String, versionMajor: Int, versionMinor: Int, uri: String, headers: [(name: String, value: String)]
    ) {
        self.method = method
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.uri = uri
        self.headers = headers
    }

    /// The values of every header field called `name` (compared case-insensitively), in order, without the
    /// optional whitespace around them.
    public func values(_ name: String) -> [String] {
        let wanted = Array(name.utf8)
        return headers.compactMap { field in
            HTTPText.equalsIgnoringCase(Array(field.name.utf8), wanted) ? HTTPText.trimmed(field.value) : nil
        }
    }

    /// A lower bound of the head's size on the wire: request line, fields with their `:` and line ends, the
    /// empty line. Values without their surrounding whitespace count less than they took, never more.
    public var minimumWireSize: Int {
        var size = method.utf8.count + 1 + uri.utf8.count + 1 + "HTTP/1.1\r\n".utf8.count + 2
        for field in headers {
            size += field.name.utf8.count + 1 + HTTPText.trimmed(field.value).utf8.count + 2
        }
        return size
    }
}

/// What a node accepts beyond RFC 6455.
public struct HandshakePolicy: Sendable {
    /// nil: no Origin check. Otherwise the allowed origins, compared case-insensitively as serialized origins
    /// (`https://app.example.com`); `"*"` allows any.
    public var allowedOrigins: [String]?

    public init(allowedOrigins: [String]? = nil) {
        self.allowedOrigins = allowedOrigins
    }

    /// Whether a page of `origin` may use the gateway (upgrades, and reading `locate`): any without an
    /// allowlist.
    public func allows(origin: String) -> Bool {
        guard let allowedOrigins else { return true }
        return HandshakeRules.isAllowed(origin: origin, by: allowedOrigins)
    }
}

/// One response header field.
public struct HeaderPair: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An HTTP answer that refuses a request.
public struct HandshakeRefusal: Sendable, Equatable, Error {
    /// HTTP status code.
    public var status: Int
    /// One line for the response body. It never repeats anything from the request, so never a token.
    public var message: String
    /// Response header fields to add (e.g. `Sec-WebSocket-Version: 13` with 426).
    public var headers: [HeaderPair]

    public init(status: Int, message: String, headers: [HeaderPair] = []) {
        self.status = status
        self.message = message
        self.headers = headers
    }
}

/// The `Authorization` header of an upgrade request.
public enum AuthorizationHeader: Sendable, Equatable {
    /// No `Authorization` header.
    case none
    /// Exactly one `Authorization: Bearer <token>` (RFC 6750 §2.1); the token is not verified here.
    case bearer(String)
    /// Another scheme, an empty or malformed token, or more than one `Authorization` header.
    case invalid
}

/// An upgrade request that passed every rule.
public struct WebSocketRequest: Sendable, Equatable {
    /// The `Sec-WebSocket-Key` as sent, without surrounding whitespace: base64 of 16 bytes.
    public var key: String
    /// Every subprotocol offered, from all `Sec-WebSocket-Protocol` headers, comma lists split and trimmed.
    public var offeredSubprotocols: [String]
    /// ``HandshakeRules/subprotocol`` when offered (to be echoed in the 101), nil when none was offered.
    public var subprotocol: String?
    /// The `Origin` header, when sent.
    public var origin: String?
    public var authorization: AuthorizationHeader

    public init(
        key: String, offeredSubprotocols: [String], subprotocol: String?, origin: String?,
        authorization: AuthorizationHeader
    ) {
        self.key = key
        self.offeredSubprotocols = offeredSubprotocols
        self.subprotocol = subprotocol
        self.origin = origin
        self.authorization = authorization
    }
}

/// What to do with a request head.
public enum HandshakeVerdict: Sendable, Equatable {
    /// Not a WebSocket upgrade attempt (no `Upgrade` header naming `websocket`): the router handles it.
    case plainHTTP
    /// A valid upgrade: answer 101 (after authentication and placement).
    case webSocket(WebSocketRequest)
    /// Answer with this refusal and no upgrade.
    case refuse(HandshakeRefusal)
}

/// The opening-handshake rules (RFC 6455 §4.2.1, RFC 9112) as a pure function of the request head.
///
/// ``evaluate(_:policy:)`` checks, in this order, stopping at the first failure:
/// 1. the head is at most ``maxHeadBytes`` (431), a second line of defence behind the HTTP decoder;
/// 2. no query parameter carries a token (``tokenQueryParameters``, names case-insensitive and
///    percent-decoded; 400), for every request, plain or upgrade, so tokens never reach a log;
/// 3. some `Upgrade` header lists the token `websocket`; if not, the request is ``HandshakeVerdict/plainHTTP``;
/// 4. the method is `GET` (405, with `Allow: GET`);
/// 5. the version is HTTP/1.1 or later (400);
/// 6. there is exactly one `Host` header (400);
/// 7. some `Connection` header lists the token `upgrade` (400);
/// 8. there is exactly one `Sec-WebSocket-Key`, base64 (RFC 4648 §4, padded, canonical) of exactly 16 bytes (400);
/// 9. there is exactly one `Sec-WebSocket-Version`, and it is `13` (426, with `Sec-WebSocket-Version: 13`);
/// 10. there is at most one `Origin` (400), and when ``HandshakePolicy/allowedOrigins`` is set it is on the list
///     (403); a request without `Origin` does not come from a browser and passes;
/// 11. when subprotocols are offered, ``subprotocol`` is among them (400);
/// 12. the `Authorization` header is read into ``AuthorizationHeader`` (never refused here: the caller answers
///     ``AuthorizationHeader/invalid`` with 401).
///
/// Header names and the `Upgrade` and `Connection` tokens are compared case-insensitively (ASCII), subprotocols
/// exactly; values without their surrounding whitespace, and byte for byte (strings that Unicode deems equivalent
/// are still different tokens).
/// Refusal messages are fixed texts: nothing from the request is echoed.
public enum HandshakeRules {
    /// Largest request head accepted (PROTOCOL §10): beyond it, 431.
    public static let maxHeadBytes = 16 * 1024
    /// The one subprotocol this gateway speaks.
    public static let subprotocol = "streamgate.v1"
    /// Query parameter names (lower case) that are taken to carry a token.
    public static let tokenQueryParameters = ["token", "access_token", "jwt", "auth", "authorization", "bearer"]

    static let tokenInQuery = HandshakeRefusal(
        status: 400,
        message: "tokens in the URL are refused (they leak into logs); use the Authorization header or an auth frame")
    static let headTooLarge = HandshakeRefusal(
        status: 431, message: "request head over \(maxHeadBytes) bytes")
    static let notGet = HandshakeRefusal(
        status: 405, message: "a WebSocket upgrade must use GET", headers: [HeaderPair("Allow", "GET")])
    static let oldHTTP = HandshakeRefusal(
        status: 400, message: "a WebSocket upgrade needs HTTP/1.1 or later")
    static let badHost = HandshakeRefusal(
        status: 400, message: "a request needs exactly one Host header")
    static let noConnectionUpgrade = HandshakeRefusal(
        status: 400, message: "a WebSocket upgrade needs a Connection header with the token upgrade")
    static let badKey = HandshakeRefusal(
        status: 400, message: "a WebSocket upgrade needs exactly one Sec-WebSocket-Key: base64 of 16 bytes")
    static let badVersion = HandshakeRefusal(
        status: 426, message: "this gateway speaks WebSocket version 13",
        headers: [HeaderPair("Sec-WebSocket-Version", "13"), HeaderPair("Upgrade", "websocket")])
    static let severalOrigins = HandshakeRefusal(
        status: 400, message: "more than one Origin header")
    static let originRefused = HandshakeRefusal(
        status: 403, message: "origin not allowed")
    static let badSubprotocol = HandshakeRefusal(
        status: 400, message: "unsupported subprotocol; this gateway speaks \(subprotocol)")

    /// Applies the handshake rules to a request head.
    /// - Parameters:
    ///   - head: the request line and header fields.
    ///   - policy: the node's Origin allowlist.
    /// - Returns: plain HTTP for the router, a valid WebSocket request, or the refusal to answer with.
    public static func evaluate(_ head: HandshakeHead, policy: HandshakePolicy) -> HandshakeVerdict {
        guard head.minimumWireSize <= maxHeadBytes else { return .refuse(headTooLarge) }
        guard !queryCarriesToken(head.uri) else { return .refuse(tokenInQuery) }
        guard head.values("Upgrade").contains(where: { listContains($0, "websocket") }) else { return .plainHTTP }

        guard head.method.utf8.elementsEqual("GET".utf8) else { return .refuse(notGet) }
        guard head.versionMajor > 1 || (head.versionMajor == 1 && head.versionMinor >= 1) else {
            return .refuse(oldHTTP)
        }
        guard head.values("Host").count == 1 else { return .refuse(badHost) }
        guard head.values("Connection").contains(where: { listContains($0, "upgrade") }) else {
            return .refuse(noConnectionUpgrade)
        }
        let keys = head.values("Sec-WebSocket-Key")
        guard keys.count == 1, let key = keys.first, keyBytes(key) != nil else { return .refuse(badKey) }
        guard head.values("Sec-WebSocket-Version").map({ Array($0.utf8) }) == [Array("13".utf8)] else {
            return .refuse(badVersion)
        }

        let origins = head.values("Origin")
        guard origins.count <= 1 else { return .refuse(severalOrigins) }
        let origin = origins.first
        if let allowed = policy.allowedOrigins, let origin, !isAllowed(origin: origin, by: allowed) {
            return .refuse(originRefused)
        }

        let offered = head.values("Sec-WebSocket-Protocol").flatMap(listTokens)
        let chosen: String?
        if offered.isEmpty {
            chosen = nil
        } else if offered.contains(where: { $0.utf8.elementsEqual(subprotocol.utf8) }) {
            chosen = subprotocol
        } else {
            return .refuse(badSubprotocol)
        }

        return .webSocket(
            WebSocketRequest(
                key: key, offeredSubprotocols: offered, subprotocol: chosen, origin: origin,
                authorization: authorization(head.values("Authorization"))))
    }

    /// The 16 bytes a `Sec-WebSocket-Key` encodes, or nil when it is not padded, canonical base64
    /// (RFC 4648 §4, §3.5) of exactly 16 bytes. Surrounding whitespace is ignored.
    public static func keyBytes(_ key: String) -> [UInt8]? {
        let text = Array(HTTPText.trimmed(key).utf8)
        // 16 bytes: five full groups and one group of one byte, "xx==".
        guard text.count == 24, text[22] == UInt8(ascii: "="), text[23] == UInt8(ascii: "=") else { return nil }
        var values: [UInt8] = []
        values.reserveCapacity(22)
        for byte in text[0..<22] {
            guard let value = base64Value(byte) else { return nil }
            values.append(value)
        }
        // The last character holds 2 bits of the 16th byte; its 4 low bits must be zero (canonical form).
        guard values[21] & 0x0F == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for group in stride(from: 0, to: 20, by: 4) {
            let (a, b, c, d) = (values[group], values[group + 1], values[group + 2], values[group + 3])
            bytes.append(a << 2 | b >> 4)
            bytes.append(b << 4 | c >> 2)
            bytes.append(c << 6 | d)
        }
        bytes.append(values[20] << 2 | values[21] >> 4)
        return bytes
    }

    /// Whether the query string of `uri` has a parameter named like a token (``tokenQueryParameters``),
    /// whatever its value (even empty): names are percent-decoded and compared case-insensitively.
    public static func queryCarriesToken(_ uri: String) -> Bool {
        let bytes = Array(uri.utf8)
        guard let question = bytes.firstIndex(of: UInt8(ascii: "?")) else { return false }
        let end = bytes[question...].firstIndex(of: UInt8(ascii: "#")) ?? bytes.endIndex
        let query = bytes[(question + 1)..<end]
        let names = tokenQueryParameters.map { Array($0.utf8) }
        for parameter in query.split(whereSeparator: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: ";") }) {
            let rawName = parameter.prefix(while: { $0 != UInt8(ascii: "=") })
            let name = HTTPText.lowercased(percentDecoded(rawName))
            if names.contains(name) { return true }
        }
        return false
    }

    // MARK: - Pieces

    /// Whether a comma-separated header value lists `token` (case-insensitive).
    static func listContains(_ value: String, _ token: String) -> Bool {
        let wanted = Array(token.utf8)
        return value.utf8.split(separator: UInt8(ascii: ",")).contains { element in
            HTTPText.equalsIgnoringCase(HTTPText.trimmed(Array(element)), wanted)
        }
    }

    /// The non-empty elements of a comma-separated header value, without surrounding whitespace.
    static func listTokens(_ value: String) -> [String] {
        value.utf8.split(separator: UInt8(ascii: ",")).compactMap { element in
            let token = HTTPText.trimmed(Array(element))
            return token.isEmpty ? nil : String(decoding: token, as: UTF8.self)
        }
    }

    static func isAllowed(origin: String, by allowed: [String]) -> Bool {
        let sent = Array(origin.utf8)
        return allowed.contains { entry in
            let entry = Array(HTTPText.trimmed(entry).utf8)
            return entry == [UInt8(ascii: "*")] || HTTPText.equalsIgnoringCase(sent, entry)
        }
    }

    /// `Bearer <token>`: the scheme in any case, one or more spaces, then an RFC 6750 b64token
    /// (`[A-Za-z0-9-._~+/]+=*`).
    static func authorization(_ values: [String]) -> AuthorizationHeader {
        guard let value = values.first else { return .none }
        guard values.count == 1 else { return .invalid }
        let bytes = Array(value.utf8)
        let scheme = Array("bearer".utf8)
        guard bytes.count > scheme.count, HTTPText.equalsIgnoringCase(Array(bytes[0..<scheme.count]), scheme),
            bytes[scheme.count] == UInt8(ascii: " ")
        else { return .invalid }
        let token = bytes[scheme.count...].drop(while: { $0 == UInt8(ascii: " ") })
        let body = token.prefix(while: isB64TokenCharacter)
        guard !body.isEmpty, token[body.endIndex...].allSatisfy({ $0 == UInt8(ascii: "=") }) else { return .invalid }
        return .bearer(String(decoding: token, as: UTF8.self))
    }

    private static func isB64TokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"),
            UInt8(ascii: "/"):
            true
        default:
            false
        }
    }

    private static func base64Value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// `%XX` decoded; a `%` not followed by two hex digits stays as it is.
    private static func percentDecoded(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%"), index + 2 < bytes.endIndex,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// ASCII-only text helpers for HTTP field names and tokens (which are ASCII; other bytes compare as they are).
private enum HTTPText {
    static func lowercased(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0 }
    }

    static func equalsIgnoringCase(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && lowercased(a) == lowercased(b)
    }

    static func isWhitespace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    static func trimmed(_ bytes: [UInt8]) -> [UInt8] {
        guard let first = bytes.firstIndex(where: { !isWhitespace($0) }),
            let last = bytes.lastIndex(where: { !isWhitespace($0) })
        else { return [] }
        return Array(bytes[first...last])
    }

    static func trimmed(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.first.map(isWhitespace) == true || bytes.last.map(isWhitespace) == true else { return text }
        return String(decoding: trimmed(bytes), as: UTF8.self)
    }
}
