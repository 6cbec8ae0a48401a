import StreamgateCore
import Testing

@Suite struct HandshakeRulesTests {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="  // RFC 6455 §1.3's example: 16 bytes

    /// A valid upgrade request, with `changes` applied to its header fields.
    private func head(
        method: String = "GET", version: (Int, Int) = (1, 1), uri: String = "/v1/ws",
        headers: [(name: String, value: String)]? = nil,
        adding extra: [(name: String, value: String)] = [], removing removed: [String] = []
    ) -> HandshakeHead {
        var fields =
            headers ?? [
                ("Host", "gw.example.com"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", Self.key),
                ("Sec-WebSocket-Version", "13"),
            ]
        fields.removeAll { field in removed.contains { $0.lowercased() == field.name.lowercased() } }
        fields += extra
        return HandshakeHead(
            method: method, versionMajor: version.0, versionMinor: version.1, uri: uri,
            headers: fields)
    }

    private func evaluate(_ head: HandshakeHead, _ policy: HandshakePolicy = HandshakePolicy()) -> HandshakeVerdict {
        HandshakeRules.evaluate(head, policy: policy)
    }

    private func request(_ head: HandshakeHead, _ policy: HandshakePolicy = HandshakePolicy()) -> WebSocketRequest? {
        if case .webSocket(let request) = evaluate(head, policy) { return request }
        return nil
    }

    private func refusal(_ head: HandshakeHead, _ policy: HandshakePolicy = HandshakePolicy()) -> HandshakeRefusal? {
        if case .refuse(let refusal) = evaluate(head, policy) { return refusal }
        return nil
    }

    // MARK: - Accepted

    @Test func validUpgradeIsAccepted() throws {
        let accepted = try #require(request(head()))
        #expect(
            accepted
                == WebSocketRequest(
                    key: Self.key, offeredSubprotocols: [], subprotocol: nil, origin: nil,
                    authorization: .none))
    }

    @Test func namesAndTokensAreCaseInsensitiveAndListsAreSplit() throws {
        let mixed = head(headers: [
            ("hOST", "gw"), ("UPGRADE", "h2c, WebSocket"), ("connection", "keep-alive,  Upgrade "),
            ("sec-websocket-key", "  \(Self.key)\t"), ("SEC-WEBSOCKET-VERSION", "13"),
        ])
        let accepted = try #require(request(mixed))
        #expect(accepted.key == Self.key)
    }

    @Test func laterHTTPVersionsAreAccepted() {
        #expect(request(head(version: (1, 2))) != nil)
        #expect(request(head(version: (2, 0))) != nil)
    }

    // MARK: - Head size

    @Test func oversizedHeadIs431() {
        let big = head(adding: [("X-Filler", String(repeating: "a", count: HandshakeRules.maxHeadBytes))])
        #expect(refusal(big)?.status == 431)
        let plainBig = head(headers: [("Host", "gw"), ("X-Filler", String(repeating: "a", count: 20_000))])
        #expect(refusal(plainBig)?.status == 431)
        #expect(request(head(adding: [("X-Filler", String(repeating: "a", count: 15_000))])) != nil)
    }

    // MARK: - Tokens in the query

    @Test(arguments: [
        "/v1/ws?token=abc", "/v1/ws?from=latest&access_token=eyJhbGciOi.x.y", "/v1/ws?JWT=x", "/v1/ws?Auth=1",
        "/v1/ws?authorization=Bearer%20x", "/v1/ws?bearer", "/v1/ws?%74oken=secret", "/v1/ws?a=1;token=2",
        "/v1/ws?ACCESS%5fTOKEN=s", "/v1/ws?token=",
    ])
    func tokenInQueryIsRefused(uri: String) throws {
        let refused = try #require(refusal(head(uri: uri)))
        #expect(refused.status == 400)
        #expect(
            refused.message
                == "tokens in the URL are refused (they leak into logs); use the Authorization header or an auth frame")
    }

    @Test func tokenInQueryIsRefusedOnPlainRequestsToo() throws {
        let plain = head(uri: "/healthz?token=s3cr3t-value", headers: [("Host", "gw")])
        let refused = try #require(refusal(plain))
        #expect(refused.status == 400)
        #expect(!refused.message.contains("s3cr3t"))
    }

    @Test(arguments: [
        "/v1/ws?from=latest", "/v1/ws?tokens=1", "/v1/ws?mytoken=1", "/v1/ws?x=token", "/v1/ws#token=1",
        "/v1/ws/token", "/v1/ws?%2574oken=1",
    ])
    func otherQueriesPass(uri: String) {
        #expect(request(head(uri: uri)) != nil)
    }

    // MARK: - Plain HTTP

    @Test func requestsWithoutWebSocketUpgradeArePlain() {
        #expect(evaluate(head(headers: [("Host", "gw")])) == .plainHTTP)
        #expect(evaluate(head(removing: ["Upgrade"])) == .plainHTTP)
        #expect(evaluate(head(headers: [("Host", "gw"), ("Upgrade", "h2c"), ("Connection", "Upgrade")])) == .plainHTTP)
        #expect(evaluate(head(headers: [("Host", "gw"), ("Upgrade", "websockets")])) == .plainHTTP)
        // A plain request is the router's business, whatever its method or version.
        #expect(evaluate(head(method: "POST", version: (1, 0), headers: [])) == .plainHTTP)
    }

    @Test func upgradeListedInALaterHeaderIsAnAttempt() {
        let attempt = head(adding: [("Upgrade", "websocket")], removing: ["Upgrade"])
        #expect(request(head(headers: [("Upgrade", "h2c")] + attempt.headers)) != nil)
    }

    // MARK: - Attempts that are refused

    @Test func nonGetIs405() throws {
        let refused = try #require(refusal(head(method: "POST")))
        #expect(refused.status == 405)
        #expect(refused.headers == [HeaderPair("Allow", "GET")])
        #expect(refusal(head(method: "get"))?.status == 405)  // methods are case-sensitive
    }

    @Test func http10Is400() {
        #expect(refusal(head(version: (1, 0)))?.status == 400)
        #expect(refusal(head(version: (0, 9)))?.status == 400)
    }

    @Test func hostMustAppearExactlyOnce() {
        #expect(refusal(head(removing: ["Host"]))?.status == 400)
        #expect(refusal(head(adding: [("Host", "other")]))?.status == 400)
    }

    @Test func connectionMustListUpgrade() {
        #expect(refusal(head(removing: ["Connection"]))?.status == 400)
        #expect(refusal(head(adding: [("Connection", "keep-alive")], removing: ["Connection"]))?.status == 400)
        #expect(refusal(head(adding: [("Connection", "upgrades")], removing: ["Connection"]))?.status == 400)
        #expect(
            request(
                head(
                    adding: [("Connection", "close"), ("Connection", "upgrade")],
                    removing: ["Connection"])) != nil)
    }

    @Test(arguments: [
        "",  // empty
        "dGhlIHNhbXBsZSBub25jZQ",  // unpadded
        "dGhlIHNhbXBsZSBub25jZQ=",  // short padding
        "dGhlIHNhbXBsZSBub25jZR==",  // non-canonical: the last character's spare bits set
        "dGhlIHNhbXBsZSBub25j",  // 15 bytes
        "dGhlIHNhbXBsZSBub25jZXM=",  // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ==dGhl",  // trailing data
        "dGhlIHNhbXBsZSBub2-jZQ==",  // base64url alphabet
        "dGhlIHNhbXBsZSBub25j ZQ==",  // inner space
    ])
    func badKeyIs400(key: String) {
        let bad = head(adding: [("Sec-WebSocket-Key", key)], removing: ["Sec-WebSocket-Key"])
        #expect(refusal(bad)?.status == 400)
    }

    @Test func keyMustAppearExactlyOnce() {
        #expect(refusal(head(removing: ["Sec-WebSocket-Key"]))?.status == 400)
        #expect(refusal(head(adding: [("Sec-WebSocket-Key", Self.key)]))?.status == 400)
    }

    @Test func keyBytesDecodesSixteenBytes() {
        #expect(HandshakeRules.keyBytes(Self.key) == Array("the sample nonce".utf8))
        #expect(HandshakeRules.keyBytes("AAAAAAAAAAAAAAAAAAAAAA==") == Array(repeating: 0, count: 16))
        #expect(HandshakeRules.keyBytes("/////////////////////w==") == Array(repeating: 0xff, count: 16))
        #expect(HandshakeRules.keyBytes("/////////////////////x==") == nil)
    }

    @Test(arguments: ["8", "12", "14", "13, 8", " ", "013"])
    func otherVersionsAre426WithTheVersionHeader(version: String) throws {
        let refused = try #require(
            refusal(
                head(adding: [("Sec-WebSocket-Version", version)], removing: ["Sec-WebSocket-Version"])))
        #expect(refused.status == 426)
        #expect(refused.headers.first == HeaderPair("Sec-WebSocket-Version", "13"))
    }

    @Test func versionMustAppearExactlyOnce() {
        #expect(refusal(head(removing: ["Sec-WebSocket-Version"]))?.status == 426)
        #expect(refusal(head(adding: [("Sec-WebSocket-Version", "13")]))?.status == 426)
    }

    // MARK: - Origin

    @Test func originNotOnTheAllowlistIs403() {
        let policy = HandshakePolicy(allowedOrigins: ["https://app.example.com"])
        #expect(refusal(head(adding: [("Origin", "https://evil.example.com")]), policy)?.status == 403)
        #expect(refusal(head(adding: [("Origin", "null")]), policy)?.status == 403)
        #expect(
            refusal(
                head(adding: [("Origin", "https://app.example.com")]),
                HandshakePolicy(allowedOrigins: []))?.status == 403)
    }

    @Test func allowedOriginsPassCaseInsensitively() throws {
        let policy = HandshakePolicy(allowedOrigins: ["https://other.example", "https://App.Example.com"])
        let accepted = try #require(request(head(adding: [("Origin", "https://app.example.COM")]), policy))
        #expect(accepted.origin == "https://app.example.COM")
    }

    @Test func starAllowsEveryOrigin() {
        let policy = HandshakePolicy(allowedOrigins: ["https://app.example.com", "*"])
        #expect(request(head(adding: [("Origin", "https://anything.example")]), policy) != nil)
    }

    @Test func withoutOriginOrWithoutPolicyEveryRequestPasses() {
        #expect(request(head(), HandshakePolicy(allowedOrigins: ["https://app.example.com"])) != nil)
        #expect(request(head(adding: [("Origin", "https://evil.example.com")])) != nil)
    }

    @Test func severalOriginsAre400() {
        let twice = head(adding: [("Origin", "https://app.example.com"), ("Origin", "https://app.example.com")])
        #expect(refusal(twice)?.status == 400)
        #expect(refusal(twice, HandshakePolicy(allowedOrigins: ["*"]))?.status == 400)
    }

    // MARK: - Subprotocol

    @Test func noSubprotocolOfferedMeansNone() throws {
        #expect(try #require(request(head())).subprotocol == nil)
        #expect(try #require(request(head(adding: [("Sec-WebSocket-Protocol", " , ")]))).subprotocol == nil)
    }

    @Test func streamgateV1IsChosenWhenOffered() throws {
        let offered = head(adding: [
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Protocol", " streamgate.v1 "),
        ])
        let accepted = try #require(request(offered))
        #expect(accepted.subprotocol == "streamgate.v1")
        #expect(accepted.offeredSubprotocols == ["chat", "superchat", "streamgate.v1"])
    }

    @Test func otherSubprotocolsAreRefused() throws {
        let refused = try #require(refusal(head(adding: [("Sec-WebSocket-Protocol", "chat, Streamgate.V1")])))
        #expect(refused.status == 400)
        #expect(refused.message == "unsupported subprotocol; this gateway speaks streamgate.v1")
    }

    // MARK: - Authorization

    @Test(arguments: [
        ("Bearer abc.def-ghi_jkl~m+n/o==", "abc.def-ghi_jkl~m+n/o=="),
        ("bearer   eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ("BEARER x", "x"),
    ])
    func bearerTokenIsRead(value: String, token: String) throws {
        let accepted = try #require(request(head(adding: [("Authorization", value)])))
        #expect(accepted.authorization == .bearer(token))
    }

    @Test(arguments: [
        "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer  ", "Bearer\tabc", "Bearerabc", "Bearer a b",
        "Bearer ==", "Bearer a=b", "Bearer a,b", "Token abc", "",
    ])
    func otherAuthorizationIsInvalid(value: String) throws {
        let accepted = try #require(request(head(adding: [("Authorization", value)])))
        #expect(accepted.authorization == .invalid)
    }

    @Test func severalAuthorizationHeadersAreInvalid() throws {
        let twice = head(adding: [("Authorization", "Bearer a"), ("authorization", "Bearer a")])
        #expect(try #require(request(twice)).authorization == .invalid)
    }

    @Test func refusalsNeverEchoTheToken() {
        let secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"
        let heads = [
            head(uri: "/v1/ws?token=\(secret)"),
            head(method: "POST", adding: [("Authorization", "Bearer \(secret)")]),
            head(adding: [("Authorization", "Bearer \(secret)"), ("Sec-WebSocket-Protocol", secret)]),
        ]
        for head in heads {
            guard let refused = refusal(head) else {
                Issue.record("not refused")
                continue
            }
            #expect(!refused.message.contains(secret))
            #expect(!refused.headers.contains { $0.value.contains(secret) })
        }
    }

    // MARK: - Order

    @Test func checksRunInTheDocumentedOrder() {
        // Each head breaks every rule from one step on; the verdict must name that step.
        let broken = head(
            method: "PUT", version: (1, 0), uri: "/v1/ws?token=x",
            headers: [
                ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "8"), ("Origin", "https://evil.example"),
                ("Sec-WebSocket-Protocol", "chat"),
            ])
        let policy = HandshakePolicy(allowedOrigins: ["https://app.example.com"])
        var current = broken
        #expect(refusal(current, policy)?.message.hasPrefix("tokens in the URL") == true)
        current.uri = "/v1/ws"
        #expect(refusal(current, policy)?.status == 405)
        current.method = "GET"
        #expect(refusal(current, policy)?.message.contains("HTTP/1.1") == true)
        current.versionMinor = 1
        #expect(refusal(current, policy)?.message.contains("Host") == true)
        current.headers.append(("Host", "gw"))
        #expect(refusal(current, policy)?.message.contains("Connection") == true)
        current.headers.append(("Connection", "upgrade"))
        #expect(refusal(current, policy)?.message.contains("Sec-WebSocket-Key") == true)
        current.headers.append(("Sec-WebSocket-Key", Self.key))
        #expect(refusal(current, policy)?.status == 426)
        current.headers.removeAll { $0.name == "Sec-WebSocket-Version" }
        current.headers.append(("Sec-WebSocket-Version", "13"))
        #expect(refusal(current, policy)?.status == 403)
        current.headers.removeAll { $0.name == "Origin" }
        #expect(refusal(current, policy)?.message.contains("subprotocol") == true)
        current.headers.append(("Sec-WebSocket-Protocol", "streamgate.v1"))
        #expect(request(current, policy) != nil)
    }
}
