// Fuzz target for HandshakeRules: the input is a request head as text. Lines end with CRLF or LF; the first is
// `METHOD URI HTTP/x.y` (missing parts take `GET`, `/`, 1.1), the next ones up to an empty line are `name: value`
// (lines without a colon are skipped). The head is evaluated under several Origin policies.
//
// Invariants, checked against an independent reading of the head: `.plainHTTP` only without `Upgrade: websocket`;
// `.webSocket` only for GET, HTTP/1.1 or later, one Host, `Connection: upgrade`, exactly one key that is the
// canonical base64 of 16 bytes, version 13, at most one Origin, a supported subprotocol, and a bearer token read
// from exactly one `Authorization`; a refusal has a known status and a fixed one-line message; an allowlist
// only ever adds a 403 for an Origin that is not on it, and `"*"` changes nothing.
import FuzzSupport
import StreamgateCore

enum HandshakeFuzz {
    static let app = "https://app.example.com"
    static let policies = [
        HandshakePolicy(allowedOrigins: [app]), HandshakePolicy(allowedOrigins: ["*"]),
        HandshakePolicy(allowedOrigins: []),
    ]

    static func run(_ input: UnsafeRawBufferPointer) {
        let head = parse(Array(input))
        let open = HandshakeRules.evaluate(head, policy: HandshakePolicy())
        precondition(HandshakeRules.evaluate(head, policy: HandshakePolicy()) == open, "not deterministic")
        check(open, head)
        for policy in policies {
            let verdict = HandshakeRules.evaluate(head, policy: policy)
            check(verdict, head)
            // An allowlist only ever adds a 403, and only for a request that carries an Origin.
            if verdict != open {
                precondition(
                    verdict == .refuse(HandshakeRefusal(status: 403, message: "origin not allowed")),
                    "a policy changed more than the Origin check")
                guard case .webSocket(let request) = open, let origin = request.origin else {
                    preconditionFailure("403 without an Origin")
                }
                precondition(policy.allowedOrigins?.contains("*") == false, "\"*\" refused an origin")
                precondition(
                    !(policy.allowedOrigins ?? []).contains { lower($0) == lower(origin) }, "listed origin refused")
            }
        }
    }

    static func check(_ verdict: HandshakeVerdict, _ head: HandshakeHead) {
        let upgrades = values(head, "upgrade").contains { tokens($0).contains("websocket") }
        switch verdict {
        case .plainHTTP:
            precondition(!upgrades, "an upgrade taken for plain HTTP")
        case .webSocket(let request):
            precondition(upgrades, "a WebSocket request without Upgrade: websocket")
            precondition(head.method == "GET", "method \(head.method) upgraded")
            precondition(head.versionMajor > 1 || (head.versionMajor == 1 && head.versionMinor >= 1), "old HTTP")
            precondition(values(head, "host").count == 1, "Host not exactly once")
            precondition(values(head, "connection").contains { tokens($0).contains("upgrade") }, "no Connection")
            precondition(values(head, "sec-websocket-key") == [request.key], "key not the one sent")
            // The key decodes to 16 bytes and is their canonical encoding.
            guard let key = HandshakeRules.keyBytes(request.key) else { preconditionFailure("invalid key") }
            precondition(key.count == 16, "key of \(key.count) bytes")
            let encoded = key.withUnsafeBytes { Base64.encode($0) }
            precondition(encoded == Array(request.key.utf8), "key is not canonical base64")
            precondition(values(head, "sec-websocket-version") == ["13"], "version not 13")
            precondition(values(head, "origin").count <= 1, "several origins")
            precondition(request.origin == values(head, "origin").first, "origin not the one sent")
            let offered = values(head, "sec-websocket-protocol").flatMap(tokens(caseSensitive: true))
            precondition(request.offeredSubprotocols == offered, "offered subprotocols misread")
            precondition(request.subprotocol == (offered.isEmpty ? nil : HandshakeRules.subprotocol), "subprotocol")
            precondition(offered.isEmpty || offered.contains(HandshakeRules.subprotocol), "unsupported subprotocol")
            let authorizations = values(head, "authorization")
            switch request.authorization {
            case .none: precondition(authorizations.isEmpty, "Authorization ignored")
            case .invalid: precondition(!authorizations.isEmpty, "no Authorization, yet invalid")
            case .bearer(let token):
                precondition(authorizations.count == 1, "several Authorization headers accepted")
                let value = Array(authorizations[0].utf8)
                precondition(lower(String(decoding: value.prefix(7), as: UTF8.self)) == "bearer ", "not Bearer")
                precondition(!token.isEmpty && value.suffix(token.utf8.count).elementsEqual(token.utf8), "token")
                precondition(!token.utf8.contains { $0 == 0x20 || $0 == 0x09 || $0 == 0x2C }, "token with separators")
            }
        case .refuse(let refusal):
            precondition([400, 403, 405, 426, 431].contains(refusal.status), "status \(refusal.status)")
            let message = Array(refusal.message.utf8)
            precondition(!message.isEmpty && message.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "message not one line")
            // Nothing from the request is echoed: the message is one of the fixed texts.
            precondition(!refusal.message.contains("%") && !refusal.message.contains("="), "echoed query")
            if refusal.status == 426 {
                precondition(refusal.headers.contains(HeaderPair("Sec-WebSocket-Version", "13")), "426 without 13")
            }
        }
    }

    // MARK: - An independent reading of the head, for the checks

    static func lower(_ text: String) -> String {
        String(decoding: text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    static func trim(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        return Array(Array(Array(bytes).drop(while: isSpace).reversed().drop(while: isSpace)).reversed())
    }

    /// Values of the headers whose lower-cased name is `name`, trimmed.
    static func values(_ head: HandshakeHead, _ name: String) -> [String] {
        head.headers.filter { lower($0.name) == name }.map { String(decoding: trim($0.value.utf8), as: UTF8.self) }
    }

    static func tokens(_ value: String) -> [String] { tokens(caseSensitive: false)(value) }

    static func tokens(caseSensitive: Bool) -> (String) -> [String] {
        { value in
            value.utf8.split(separator: 0x2C).map { String(decoding: trim($0), as: UTF8.self) }.filter { !$0.isEmpty }
                .map { caseSensitive ? $0 : lower($0) }
        }
    }

    // MARK: - Input

    static func parse(_ bytes: [UInt8]) -> HandshakeHead {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            line.last == 0x0D ? line.dropLast() : line
        }
        let requestLine = lines.isEmpty ? [] : lines.removeFirst().split(separator: 0x20)
        let method = requestLine.count > 0 ? String(decoding: requestLine[0], as: UTF8.self) : "GET"
        let uri = requestLine.count > 1 ? String(decoding: requestLine[1], as: UTF8.self) : "/"
        var major = 1
        var minor = 1
        if requestLine.count > 2 {
            let version = String(decoding: requestLine[2], as: UTF8.self)
            let numbers = version.dropFirst("HTTP/".count).split(separator: ".", omittingEmptySubsequences: false)
            major = numbers.count > 0 ? Int(numbers[0]) ?? 0 : 0
            minor = numbers.count > 1 ? Int(numbers[1]) ?? 0 : 0
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: 0x3A) else { continue }
            headers.append(
                (
                    String(decoding: line[..<colon], as: UTF8.self),
                    String(decoding: line[(colon + 1)...], as: UTF8.self)
                ))
        }
        return HandshakeHead(method: method, versionMajor: major, versionMinor: minor, uri: uri, headers: headers)
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        HandshakeFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    @main struct FuzzHandshakeEngine {
        static func main() { FuzzDriver.runEngine(fuzz) }
    }
#else
    /// Without the fuzzing engine: replays a corpus (default `Tests/fuzz/handshake/`; any files or folders given).
    @main struct FuzzHandshakeReplay {
        static func main() { FuzzDriver.replay(name: "fuzz-handshake", defaultPath: "Tests/fuzz/handshake/") { HandshakeFuzz.run($0) } }
    }
#endif
