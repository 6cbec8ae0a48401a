import Foundation
import JWTKit
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import StreamgateServer

/// Reloading and refreshing a JWKS: rotation, and keeping the last good keys when the source fails.
@Suite struct JWKSRefreshTests {
    typealias F = TokenFixtures

    @Test func aFileRewrittenWithGarbageKeepsTheLastGoodKeys() async throws {
        let capture = TokenLogCapture()
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", try F.jwksString([F.rsaJWK(F.rsa, kid: "a")]))
        let verifier = try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: capture.logger)
        let token = try await F.token(signer: .rs(256), kid: "a")
        #expect(await verifier.verify(token, now: F.now).isAccepted)

        for garbage in ["garbage", "{\"keys\":[]}", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"AA\"}]}", ""] {
            directory.write("jwks.json", garbage)
            #expect(await verifier.reloadJWKS() == false)
            #expect(await verifier.verify(token, now: F.now).isAccepted)
        }
        try FileManager.default.removeItem(atPath: path)
        #expect(await verifier.reloadJWKS() == false)
        #expect(await verifier.verify(token, now: F.now).isAccepted)
        #expect(
            capture.lines.filter { $0.hasPrefix("warning") && $0.contains("keeping the last good keys") }.count == 5)
    }

    @Test func aRotationAddsTheNewKidAndRemovesTheOldOne() async throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", try F.jwksString([F.rsaJWK(F.rsa, kid: "2025-11")]))
        let verifier = try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: TokenLogCapture().logger)
        let old = try await F.token(signer: .rs(256), kid: "2025-11")
        let new = try await F.token(signer: .es256, kid: "2025-12")
        #expect(await verifier.verify(old, now: F.now).isAccepted)
        #expect(await verifier.verify(new, now: F.now) == .failure(.unknownKeyID))

        // Overlap: both keys published.
        directory.write(
            "jwks.json", try F.jwksString([F.rsaJWK(F.rsa, kid: "2025-11"), F.ecJWK(F.p256, kid: "2025-12")]))
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.verify(old, now: F.now).isAccepted)
        #expect(await verifier.verify(new, now: F.now).isAccepted)

        // The old key withdrawn: its tokens stop verifying at once.
        directory.write("jwks.json", try F.jwksString([F.ecJWK(F.p256, kid: "2025-12")]))
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.verify(old, now: F.now) == .failure(.unknownKeyID))
        #expect(await verifier.verify(new, now: F.now).isAccepted)

        // A kid reused for another key: the new key is the one that verifies.
        directory.write("jwks.json", try F.jwksString([F.ecJWK(F.p384, kid: "2025-12")]))
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.verify(new, now: F.now) == .failure(.algorithmNotAllowed))
        #expect(await verifier.verify(try await F.token(signer: .es384, kid: "2025-12"), now: F.now).isAccepted)
    }

    @Test func anUnreachableURLStartsWithoutKeysAndRefusesTheirTokens() async throws {
        let capture = TokenLogCapture()
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(hmacSecret: F.secret, jwks: .url("http://127.0.0.1:1/jwks.json")),
            logger: capture.logger)
        #expect(capture.lines.contains { $0.hasPrefix("error") && $0.contains("cannot load the JWKS") })
        #expect(
            await verifier.verify(try await F.token(signer: .rs(256), kid: "rsa"), now: F.now)
                == .failure(.keysUnavailable))
        #expect(await verifier.verify(try await F.token(signer: .rs(256)), now: F.now) == .failure(.missingKeyID))
        // The secret works regardless.
        #expect(await verifier.verify(try await F.token(signer: .hs(256)), now: F.now).isAccepted)
        #expect(await verifier.reloadJWKS() == false)
        #expect(!capture.lines.contains { $0.contains("plain http") })
    }

    @Test func aPlainHTTPURLOffLoopbackIsWarnedAbout() async throws {
        // 0.0.0.0 is not a loopback name, yet connecting to it fails at once here (nothing listens on port 1).
        let capture = TokenLogCapture()
        _ = try await TokenVerifier(policy: TokenPolicy(jwks: .url("http://0.0.0.0:1/jwks")), logger: capture.logger)
        #expect(capture.lines.contains { $0.hasPrefix("warning") && $0.contains("plain http") })
    }

    @Test func whileNoKeysEverLoadedTheRefreshRetriesSoon() async throws {
        let server = try await JWKSTestServer.start()
        server.respond(.status(503))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(jwks: .url(server.url), jwksRefreshSeconds: 300), logger: TokenLogCapture().logger)
        let refresh = Task { await verifier.runRefresh() }
        server.respond(.json(try F.jwksString([F.okpJWK(F.ed25519, kid: "ed")])))
        let token = try await F.token(signer: .eddsa, kid: "ed")
        let clock = ContinuousClock()
        let started = clock.now
        var accepted = false
        while !accepted, clock.now - started < .seconds(10) {
            try await Task.sleep(for: .milliseconds(100))
            accepted = await verifier.verify(token, now: F.now).isAccepted
        }
        #expect(accepted, "the first retry comes after 5 s, not after the 300 s interval")
        refresh.cancel()
        await refresh.value
        try await server.stop()
    }

    @Test func aURLSourceLoadsRotatesAndKeepsItsKeysThroughFailures() async throws {
        let server = try await JWKSTestServer.start()
        server.respond(.json(try F.jwksString([F.rsaJWK(F.rsa, kid: "a")])))
        let capture = TokenLogCapture()
        let verifier = try await TokenVerifier(policy: TokenPolicy(jwks: .url(server.url)), logger: capture.logger)
        let tokenA = try await F.token(signer: .rs(256), kid: "a")
        #expect(await verifier.verify(tokenA, now: F.now).isAccepted)

        let failures: [JWKSTestServer.Response] = [
            .status(500), .status(404), .status(204), .json("garbage"), .json(#"{"keys":[]}"#),
            .redirect(to: server.url), .huge(declaringLength: true), .huge(declaringLength: false),
        ]
        for failure in failures {
            server.respond(failure)
            #expect(await verifier.reloadJWKS() == false, "\(failure)")
            #expect(await verifier.verify(tokenA, now: F.now).isAccepted, "\(failure)")
        }
        let warnings = capture.lines.filter { $0.hasPrefix("warning") }
        #expect(warnings.contains { $0.contains("HTTP status 500") })
        #expect(warnings.contains { $0.contains("redirected") })
        #expect(warnings.filter { $0.contains("larger than 1048576 bytes") }.count == 2)

        server.respond(.json(try F.jwksString([F.ecJWK(F.p256, kid: "b")])))
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.verify(try await F.token(signer: .es256, kid: "b"), now: F.now).isAccepted)
        #expect(await verifier.verify(tokenA, now: F.now) == .failure(.unknownKeyID))

        try await server.stop()
        #expect(await verifier.reloadJWKS() == false)
        #expect(await verifier.verify(try await F.token(signer: .es256, kid: "b"), now: F.now).isAccepted)
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let server = try await JWKSTestServer.start()
        server.respond(.json(try F.jwksString([F.rsaJWK(F.rsa, kid: "a")])))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(jwks: .url(server.url)), logger: TokenLogCapture().logger)
        server.respond(.silence)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await verifier.reloadJWKS() == false)
        let elapsed = clock.now - started
        #expect(elapsed >= .seconds(4) && elapsed < .seconds(15), "\(elapsed)")
        #expect(await verifier.verify(try await F.token(signer: .rs(256), kid: "a"), now: F.now).isAccepted)
        try await server.stop()
    }

    @Test func aURLThatFailedAtTheStartRecoversOnRefresh() async throws {
        let server = try await JWKSTestServer.start()
        server.respond(.status(503))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(jwks: .url(server.url)), logger: TokenLogCapture().logger)
        let token = try await F.token(signer: .eddsa, kid: "ed")
        #expect(await verifier.verify(token, now: F.now) == .failure(.keysUnavailable))
        server.respond(.json(try F.jwksString([F.okpJWK(F.ed25519, kid: "ed")])))
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.verify(token, now: F.now).isAccepted)
        try await server.stop()
    }

    @Test func runRefreshPicksUpChangesUntilCancelled() async throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", try F.jwksString([F.rsaJWK(F.rsa, kid: "a")]))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(jwks: .file(path), jwksRefreshSeconds: 0.1),
            logger: TokenLogCapture().logger)
        let refresh = Task { await verifier.runRefresh() }
        directory.write("jwks.json", "garbage")
        try await Task.sleep(for: .milliseconds(350))
        let tokenA = try await F.token(signer: .rs(256), kid: "a")
        #expect(await verifier.verify(tokenA, now: F.now).isAccepted)

        directory.write("jwks.json", try F.jwksString([F.ecJWK(F.p256, kid: "b")]))
        let tokenB = try await F.token(signer: .es256, kid: "b")
        var accepted = false
        for _ in 0..<100 where !accepted {
            try await Task.sleep(for: .milliseconds(50))
            accepted = await verifier.verify(tokenB, now: F.now).isAccepted
        }
        #expect(accepted)
        #expect(await verifier.verify(tokenA, now: F.now) == .failure(.unknownKeyID))
        refresh.cancel()
        await refresh.value
    }
}

/// A loopback HTTP server answering every request with the response set last.
final class JWKSTestServer: Sendable {
    enum Response: Sendable, CustomStringConvertible {
        case json(String)
        case status(Int)
        case redirect(to: String)
        /// 2 MiB of JSON-looking bytes, with a `Content-Length` or chunked.
        case huge(declaringLength: Bool)
        /// Accept the request and never answer.
        case silence

        var description: String {
            switch self {
            case .json(let body): "json \(body.prefix(20))"
            case .status(let code): "status \(code)"
            case .redirect: "redirect"
            case .huge(let declared): "huge (length declared: \(declared))"
            case .silence: "silence"
            }
        }
    }

    private let channel: any Channel
    private let response: NIOLockedValueBox<Response>

    var url: String { "http://127.0.0.1:\(channel.localAddress!.port!)/.well-known/jwks.json" }

    private init(channel: any Channel, response: NIOLockedValueBox<Response>) {
        self.channel = channel
        self.response = response
    }

    static func start() async throws -> JWKSTestServer {
        let response = NIOLockedValueBox<Response>(.status(404))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(response: response))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return JWKSTestServer(channel: channel, response: response)
    }

    func respond(_ next: Response) { response.withLockedValue { $0 = next } }

    func stop() async throws { try await channel.close() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let response: NIOLockedValueBox<Response>

        init(response: NIOLockedValueBox<Response>) {
            self.response = response
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            var headers = HTTPHeaders()
            let status: HTTPResponseStatus
            var body: [ByteBuffer] = []
            switch response.withLockedValue({ $0 }) {
            case .silence:
                return
            case .json(let text):
                status = .ok
                headers.add(name: "Content-Type", value: "application/json")
                body = [ByteBuffer(string: text)]
            case .status(let code):
                status = HTTPResponseStatus(statusCode: code)
            case .redirect(let target):
                status = .found
                headers.add(name: "Location", value: target)
            case .huge(let declaringLength):
                status = .ok
                let chunk = ByteBuffer(repeating: UInt8(ascii: " "), count: 64 * 1024)
                body = Array(repeating: chunk, count: 32)
                if !declaringLength { headers.add(name: "Transfer-Encoding", value: "chunked") }
            }
            if !headers.contains(name: "Transfer-Encoding") {
                headers.add(name: "Content-Length", value: "\(body.reduce(0) { $0 + $1.readableBytes })")
            }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil)
            for part in body { context.write(wrapOutboundOut(.body(.byteBuffer(part))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
