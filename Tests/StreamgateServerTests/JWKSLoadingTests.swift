import CryptoExtras
import Foundation
import JWTKit
import Testing

@testable import StreamgateServer

/// Which keys of a JWKS document the verifier uses, and when a document is refused.
@Suite struct JWKSLoadingTests {
    typealias F = TokenFixtures

    /// A small RSA key jwt-kit refuses (it requires 2048 bits).
    static let rsa1024: [String: any Sendable] = {
        let key = try! _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024))
        let primitives = try! key.publicKey.getKeyPrimitives()
        return [
            "kty": "RSA", "kid": "small", "n": F.base64URL(primitives.modulus),
            "e": F.base64URL(primitives.publicExponent),
        ]
    }()

    @Test func keysTheVerifierCannotUseAreSkippedAndTheOthersWork() async throws {
        let capture = TokenLogCapture()
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let skipped: [[String: any Sendable]] = [
            F.rsaJWK(F.rsa2, kid: "enc", extra: ["use": "enc"]),
            F.rsaJWK(F.rsa2, kid: "forged\nwarning a fake line", extra: ["use": "enc"]),
            F.rsaJWK(F.rsa2, kid: "ops", extra: ["key_ops": ["encrypt", "wrapKey"]]),
            F.rsaJWK(F.rsa2, kid: "oaep", alg: "RSA-OAEP"),
            F.rsaJWK(F.rsa2, kid: nil),
            F.rsaJWK(F.rsa2, kid: "", alg: "RS256"),
            F.rsaJWK(F.rsa2, kid: "rsa-as-es", alg: "ES256"),
            ["kty": "oct", "kid": "symmetric", "k": F.base64URL("a shared secret, never in a JWKS")],
            ["kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"],
            ["kty": "OKP", "kid": "x25519", "crv": "X25519", "x": F.base64URL(F.ed25519.publicKey.rawRepresentation)],
            F.ecJWK(F.p256, kid: "p256-as-es384", alg: "ES384"),
            F.ecJWK(F.p256, kid: "no-curve", extra: ["crv": "P-192"]),
            F.okpJWK(F.ed25519, kid: "ed-as-es", alg: "ES256"),
            Self.rsa1024,
            ["kty": "RSA", "kid": "garbage", "n": "!!!", "e": "AQAB"],
            [
                "kty": "EC", "kid": "off-curve", "crv": "P-256", "x": F.base64URL(Data(repeating: 1, count: 32)),
                "y": F.base64URL(Data(repeating: 2, count: 32)),
            ],
            ["kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"],
            ["kty": "RSA", "kid": "use-type", "use": ["sig"], "n": "AQAB", "e": "AQAB"],
            ["kid": "no-kty"],
        ]
        let usable: [[String: any Sendable]] = [
            F.rsaJWK(F.rsa, kid: "rsa", extra: ["use": "sig", "key_ops": ["verify"]]),
            F.ecJWK(F.p256, kid: "p256", alg: "ES256", extra: ["use": "sig"]),
        ]
        var document = try JSONSerialization.jsonObject(with: F.jwksData(skipped + usable)) as! [String: Any]
        document["keys"] = (document["keys"] as! [Any]) + (["not an object", 42] as [Any])
        let path = directory.write("jwks.json", try JSONSerialization.data(withJSONObject: document))
        let verifier = try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: capture.logger)

        #expect(await verifier.verify(try await F.token(signer: .rs(256), kid: "rsa"), now: F.now).isAccepted)
        #expect(await verifier.verify(try await F.token(signer: .es256, kid: "p256"), now: F.now).isAccepted)
        for kid in [
            "enc", "ops", "oaep", "rsa-as-es", "symmetric", "k1", "x25519", "p256-as-es384", "no-curve",
            "ed-as-es", "small", "garbage", "off-curve", "use-type",
        ] {
            let signer: TokenTestSigner =
                kid.hasPrefix("p256") || kid == "no-curve" || kid == "off-curve" ? .es256 : .rs(256)
            let token = try await F.token(signer: signer, kid: kid)
            #expect(await verifier.verify(token, now: F.now) == .failure(.unknownKeyID), "\(kid)")
        }
        // One warning per skipped key (20 entries), each naming why.
        let warnings = capture.lines.filter { $0.hasPrefix("warning") && $0.contains("skipped") }
        #expect(warnings.count == skipped.count + 2)
        #expect(warnings.contains { $0.contains("\"enc\"") && $0.contains("not \"sig\"") })
        #expect(warnings.contains { $0.contains("\"ops\"") && $0.contains("key_ops") })
        #expect(warnings.contains { $0.contains("\"small\"") && $0.contains("key material") })
        #expect(warnings.contains { $0.contains("no kid") })
        #expect(!capture.lines.contains { $0.contains("\n") }, "a kid from the document cannot start a log line")

        // Skips are logged once, not on every refresh.
        #expect(await verifier.reloadJWKS())
        #expect(await verifier.reloadJWKS())
        let after = capture.lines.filter { $0.hasPrefix("warning") && $0.contains("skipped") }
        #expect(after == warnings, "\(after.filter { !warnings.contains($0) })")
    }

    @Test func privateKeyMaterialIsDroppedAndNoted() async throws {
        // A JWK exported with its private parts, as a careless issuer might publish it.
        let x = F.base64URL(F.ed25519.publicKey.rawRepresentation)
        let d = F.base64URL(F.ed25519.rawRepresentation)
        let json = #"{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"\#(x)","d":"\#(d)"}"#
        let exported = try JSONDecoder().decode(JWK.self, from: Data(json.utf8))
        #expect(exported.privateExponent != nil)
        let capture = TokenLogCapture()
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write(
            "jwks.json", #"{"keys":[\#(String(decoding: try JSONEncoder().encode(exported), as: UTF8.self))]}"#)
        let verifier = try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: capture.logger)
        #expect(await verifier.verify(try await F.token(signer: .eddsa, kid: "ed"), now: F.now).isAccepted)
        #expect(capture.lines.contains { $0.hasPrefix("warning") && $0.contains("private key material") })
    }

    @Test func aDuplicateKidKeepsTheFirstKey() async throws {
        let verifier = try await F.verifier(jwks: [F.rsaJWK(F.rsa, kid: "same"), F.rsaJWK(F.rsa2, kid: "same")])
        #expect(await verifier.verify(try await F.token(signer: .rs(256), kid: "same"), now: F.now).isAccepted)
        #expect(
            await verifier.verify(try await F.token(signer: .rsKey(256, F.rsa2), kid: "same"), now: F.now)
                == .failure(.invalidSignature))
    }

    @Test(arguments: [
        "", "garbage", "[]", "{}", #"{"keys":{}}"#, #"{"keys":[]}"#, #"{"keys":null}"#,
        #"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}"#,
        #"{"keys":[{"kty":"RSA","kid":"a","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
    ])
    func aFileWithoutAUsableKeyFailsTheStart(_ content: String) async throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", content)
        await #expect(throws: TokenSetupError.self) {
            try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: TokenLogCapture().logger)
        }
    }

    @Test func anUnreadableOrOversizedFileFailsTheStart() async throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        await #expect(throws: TokenSetupError.self) {
            try await TokenVerifier(
                policy: TokenPolicy(jwks: .file(directory.path("absent.json"))),
                logger: TokenLogCapture().logger)
        }
        // A usable key followed by padding past 1 MiB.
        let jwks = try F.jwksString([F.rsaJWK(F.rsa, kid: "rsa")])
        let oversized = String(jwks.dropLast()) + String(repeating: " ", count: JWKSFetcher.maxDocumentBytes) + "}"
        let path = directory.write("big.json", oversized)
        await #expect(throws: TokenSetupError.self) {
            try await TokenVerifier(policy: TokenPolicy(jwks: .file(path)), logger: TokenLogCapture().logger)
        }
        let justFits = directory.write(
            "fits.json",
            String(jwks.dropLast())
                + String(repeating: " ", count: JWKSFetcher.maxDocumentBytes - jwks.utf8.count) + "}")
        _ = try await TokenVerifier(policy: TokenPolicy(jwks: .file(justFits)), logger: TokenLogCapture().logger)
    }

    @Test func allowedAlgorithmsFollowTheKeyTypeAndCurve() throws {
        func algorithms(_ json: String) throws -> [String]? {
            JWKSKeySet.algorithms(for: try JSONDecoder().decode(JWK.self, from: Data(json.utf8)))
        }
        #expect(try algorithms(#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#) == JWKSKeySet.rsaAlgorithms)
        #expect(try algorithms(#"{"kty":"RSA","alg":"PS384","n":"AQAB","e":"AQAB"}"#) == ["PS384"])
        #expect(try algorithms(#"{"kty":"RSA","alg":"ES256","n":"AQAB","e":"AQAB"}"#) == nil)
        #expect(try algorithms(#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#) == ["ES256"])
        #expect(try algorithms(#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#) == ["ES384"])
        #expect(try algorithms(#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#) == ["ES512"])
        #expect(try algorithms(#"{"kty":"EC","crv":"P-521","alg":"ES256","x":"AA","y":"AA"}"#) == nil)
        #expect(try algorithms(#"{"kty":"EC","x":"AA","y":"AA"}"#) == nil)
        #expect(try algorithms(#"{"kty":"OKP","crv":"Ed25519","x":"AA"}"#) == ["EdDSA"])
        #expect(try algorithms(#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"AA"}"#) == ["EdDSA"])
        #expect(try algorithms(#"{"kty":"OKP","crv":"P-256","x":"AA"}"#) == nil)
    }
}
