import CryptoExtras
import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import Testing

@testable import StreamgateServer

/// The RFC 8725 rules of `TokenVerifier`, one test (or one argument) per rule. Tokens are minted with jwt-kit;
/// malformed ones are written by hand.
@Suite struct TokenVerifierTests {
    typealias F = TokenFixtures

    // MARK: Every algorithm, with the key that allows it

    @Test(arguments: TokenTestSigner.allAlgorithms)
    func aTokenSignedWithTheKeyItNamesIsAccepted(_ signer: TokenTestSigner) async throws {
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        let token = try await F.token(signer: signer, kid: signer.isHMAC ? nil : signer.standardKid)
        let result = await verifier.verify(token, now: F.now)
        #expect(result == .success(VerifiedToken(subject: "alice", expiresAt: F.now + 600, permissions: .none)))
    }

    @Test func anRSAKeyWithoutAlgAcceptsEveryRSAAlgorithmEachTime() async throws {
        // jwt-kit makes the signer of an alg-less JWK from the first token's header and keeps it: one
        // collection per algorithm keeps RS256 and PS256 tokens for the same kid working in any order.
        let verifier = try await F.verifier(jwks: [F.rsaJWK(F.rsa, kid: "rsa")])
        for _ in 0..<2 {
            for signer in [TokenTestSigner.rs(256), .ps(256), .rs(384), .ps(384), .rs(512), .ps(512)] {
                let token = try await F.token(signer: signer, kid: "rsa")
                #expect(await verifier.verify(token, now: F.now).isAccepted, "\(signer)")
            }
        }
    }

    @Test func theVerifiedTokenCarriesSubjectExpiryAndPermissions() async throws {
        let verifier = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        claims.sub = "bob@example.test"
        claims.exp = Double(F.now) + 90.75
        claims.channels = ["sub": ["doc:42", "chat:*"], "pub": ["doc:42"]]
        let token = try await F.token(claims, signer: .hs(256))
        let verified = try await verifier.verify(token, now: F.now).get()
        #expect(verified.subject == "bob@example.test")
        #expect(verified.expiresAt == F.now + 90)
        #expect(
            verified.permissions
                == ChannelPermissions(
                    subscribe: [.exact("doc:42"), .prefix("chat:")],
                    publish: [.exact("doc:42")]))
    }

    // MARK: The key decides the algorithm

    @Test(arguments: ["none", "None", "NONE", "nOnE"])
    func algNoneIsRefused(_ alg: String) async throws {
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        let payload = try F.claimsJSON(TokenTestClaims())
        for header in [#"{"alg":"\#(alg)"}"#, #"{"alg":"\#(alg)","kid":"rsa"}"#, #"{"alg":"\#(alg)","typ":"JWT"}"#] {
            let unsigned = F.base64URL(header) + "." + F.base64URL(payload) + "."
            #expect(await verifier.verify(unsigned, now: F.now) == .failure(.algorithmNotAllowed))
            // The same, with a signature from the secret appended: still refused.
            let signed = try await F.craft(header: header, payload: payload, signer: .hs(256))
            #expect(await verifier.verify(signed, now: F.now) == .failure(.algorithmNotAllowed))
        }
    }

    @Test(arguments: [false, true])
    func anHMACHeaderOnAnRSAKeyIDIsRefused(withSecretConfigured: Bool) async throws {
        // The algorithm-confusion attack: the RSA public key is public, so an attacker signs HS256 with its
        // bytes as the HMAC secret and names the RSA key's kid.
        let verifier = try await F.verifier(secret: withSecretConfigured, jwks: F.standardJWKS)
        let publicKey = F.rsa.publicKey
        for secret in [
            Array(publicKey.pemRepresentation.utf8), Array(publicKey.derRepresentation),
            Array((publicKey.pemRepresentation + "\n").utf8),
        ] {
            for bits in [256, 384, 512] {
                let forged = try await F.token(signer: .hsKey(bits, secret), kid: "rsa")
                #expect(await verifier.verify(forged, now: F.now) == .failure(.algorithmNotAllowed))
            }
        }
    }

    @Test func aKeyWithItsOwnAlgAllowsOnlyThatAlg() async throws {
        let verifier = try await F.verifier(jwks: [F.rsaJWK(F.rsa, kid: "rs-only", alg: "RS256")])
        #expect(await verifier.verify(try await F.token(signer: .rs(256), kid: "rs-only"), now: F.now).isAccepted)
        for signer in [TokenTestSigner.ps(256), .rs(384), .rs(512), .ps(512)] {
            let token = try await F.token(signer: signer, kid: "rs-only")
            #expect(await verifier.verify(token, now: F.now) == .failure(.algorithmNotAllowed), "\(signer)")
        }
    }

    @Test func theCurveDecidesTheECAlgorithmAndOKPAllowsOnlyEdDSA() async throws {
        let verifier = try await F.verifier(jwks: F.standardJWKS)
        // Signed by the right key, but the header names an algorithm the key's type or curve does not have.
        let mismatches: [(TokenTestSigner, String, String)] = [
            (.es256, "p256", "ES384"), (.es256, "p256", "ES512"), (.es384, "p384", "ES256"),
            (.es256, "p256", "RS256"), (.eddsa, "ed", "ES256"), (.eddsa, "ed", "Ed25519"), (.rs(256), "rsa", "ES256"),
            (.rs(256), "rsa", "EdDSA"), (.es256, "p256", "HS256"), (.eddsa, "ed", "HS256"),
        ]
        for (signer, kid, alg) in mismatches {
            let token = try await F.token(signer: signer, kid: kid, alg: alg)
            #expect(await verifier.verify(token, now: F.now) == .failure(.algorithmNotAllowed), "\(kid) \(alg)")
        }
    }

    @Test func eachHMACVariantIsCheckedWithItsOwnDigest() async throws {
        let verifier = try await F.verifier(secret: true)
        // An HS256 signature presented as HS384 or HS512, and the other way round.
        for (signer, alg) in [
            (TokenTestSigner.hs(256), "HS384"), (.hs(256), "HS512"), (.hs(512), "HS256"), (.hs(384), "HS512"),
        ] {
            let token = try await F.token(signer: signer, alg: alg)
            #expect(await verifier.verify(token, now: F.now) == .failure(.invalidSignature), "\(signer) as \(alg)")
        }
    }

    @Test func withAJWKSTheKidIsRequiredAndMustBeKnown() async throws {
        let verifier = try await F.verifier(jwks: F.standardJWKS)
        #expect(await verifier.verify(try await F.token(signer: .rs(256)), now: F.now) == .failure(.missingKeyID))
        #expect(
            await verifier.verify(try await F.token(signer: .es256, kid: "nope"), now: F.now)
                == .failure(.unknownKeyID))
        #expect(
            await verifier.verify(try await F.token(signer: .eddsa, kid: ""), now: F.now)
                == .failure(.unknownKeyID))
        // A kid differing only in case is another kid.
        #expect(
            await verifier.verify(try await F.token(signer: .rs(256), kid: "RSA"), now: F.now)
                == .failure(.unknownKeyID))
    }

    @Test func jwtKitsDefaultKeyFallbackIsNotReachable() async throws {
        // Keys "first" and "second"; tokens signed by the first key (jwt-kit's default in a shared collection).
        let jwks = [F.rsaJWK(F.rsa, kid: "first", alg: "RS256"), F.ecJWK(F.p256, kid: "second")]
        let verifier = try await F.verifier(jwks: jwks)
        for kid in ["unknown", "", "First"] {
            let token = try await F.token(signer: .rs(256), kid: kid)
            #expect(await verifier.verify(token, now: F.now) == .failure(.unknownKeyID), "kid \(kid)")
        }
        #expect(await verifier.verify(try await F.token(signer: .rs(256)), now: F.now) == .failure(.missingKeyID))
        // Also with a secret configured: the unknown kid then means the secret, which this RS256 token is not for.
        let both = try await F.verifier(secret: true, jwks: jwks)
        #expect(
            await both.verify(try await F.token(signer: .rs(256), kid: "unknown"), now: F.now)
                == .failure(.unknownKeyID))
        #expect(await both.verify(try await F.token(signer: .rs(256)), now: F.now) == .failure(.missingKeyID))
    }

    @Test func jwtKitAloneWouldAcceptTheseTokens() async throws {
        // Why the verifier selects keys itself: one shared JWTKeyCollection verifies an unknown kid with its
        // first key, and an alg-less RSA key with whatever algorithm the header names. If jwt-kit changes this,
        // the protection above is still in place; this test then only needs its expectations flipped.
        let shared = JWTKeyCollection()
        let jwks = try F.jwksData([F.rsaJWK(F.rsa, kid: "first", alg: "RS256"), F.ecJWK(F.p256, kid: "second")])
        try await shared.add(jwks: JSONDecoder().decode(JWKS.self, from: jwks))
        let unknownKid = try await F.token(signer: .rs(256), kid: "unknown")
        _ = try await shared.verify(unknownKid, as: TokenTestClaims.self)
        let noKid = try await F.token(signer: .rs(256))
        _ = try await shared.verify(noKid, as: TokenTestClaims.self)
    }

    @Test func withASecretTokensWithoutAKnownKidUseTheSecret() async throws {
        let both = try await F.verifier(secret: true, jwks: F.standardJWKS)
        for kid in [nil, "hmac-1", "not-in-the-jwks"] {
            #expect(await both.verify(try await F.token(signer: .hs(256), kid: kid), now: F.now).isAccepted)
        }
        let secretOnly = try await F.verifier(secret: true)
        #expect(await secretOnly.verify(try await F.token(signer: .hs(384), kid: "anything"), now: F.now).isAccepted)
        for (signer, kid) in [(.rs(256), "rsa"), (.es256, "p256"), (.eddsa, "ed"), (.rs(256), nil)]
            as [(TokenTestSigner, String?)]
        {
            let token = try await F.token(signer: signer, kid: kid)
            #expect(await secretOnly.verify(token, now: F.now) == .failure(.algorithmNotAllowed))
        }
    }

    @Test func withoutASecretHMACTokensAreRefused() async throws {
        let verifier = try await F.verifier(jwks: F.standardJWKS)
        for kid in [nil, "unknown"] {
            #expect(
                await verifier.verify(try await F.token(signer: .hs(256), kid: kid), now: F.now)
                    == .failure(.algorithmNotAllowed))
        }
    }

    @Test func anUnknownAlgorithmIsRefused() async throws {
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        for alg in ["HS1", "RS1", "ES256K", "hs256", "rs256", "ML-DSA-65", "PS256 ", ""] {
            for kid in [nil, "rsa", "unknown"] {
                let token = try await F.token(signer: .hs(256), kid: kid, alg: alg)
                #expect(await verifier.verify(token, now: F.now) == .failure(.algorithmNotAllowed), "\(alg)")
            }
        }
    }

    @Test func aSignatureThatDoesNotVerifyIsRefused() async throws {
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        // Another key of the same type under a known kid.
        let otherRSA = try await F.token(signer: .rsKey(256, F.rsa2), kid: "rsa")
        #expect(await verifier.verify(otherRSA, now: F.now) == .failure(.invalidSignature))
        let otherP256 = try await F.token(signer: .es256Key(ES256PrivateKey()), kid: "p256")
        #expect(await verifier.verify(otherP256, now: F.now) == .failure(.invalidSignature))
        let otherSecret = try await F.token(signer: .hsKey(256, Array("another secret of thirty-two bytes".utf8)))
        #expect(await verifier.verify(otherSecret, now: F.now) == .failure(.invalidSignature))
        // A changed claims set under the original signature.
        for signer in TokenTestSigner.allAlgorithms {
            let token = try await F.token(signer: signer, kid: signer.isHMAC ? nil : signer.standardKid)
            var parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            var claims = TokenTestClaims()
            claims.sub = "mallory"
            parts[1] = F.base64URL(try F.claimsJSON(claims))
            #expect(await verifier.verify(parts.joined(separator: "."), now: F.now) == .failure(.invalidSignature))
            // No signature, and a truncated one.
            #expect(
                await verifier.verify(
                    parts[0] + "." + F.base64URL(try F.claimsJSON(TokenTestClaims())) + ".",
                    now: F.now) == .failure(.invalidSignature))
            // Four characters are three whole bytes: what is left still decodes.
            let original = token.split(separator: ".").map(String.init)
            let truncated = original[0] + "." + original[1] + "." + original[2].dropFirst(4)
            #expect(await verifier.verify(truncated, now: F.now) == .failure(.invalidSignature))
        }
    }

    // MARK: Header rules

    @Test func aCritHeaderIsRefused() async throws {
        let verifier = try await F.verifier(secret: true)
        let payload = try F.claimsJSON(TokenTestClaims())
        for crit in [#"["exp"]"#, "[]", #""b64""#, "null"] {
            let token = try await F.craft(
                header: #"{"alg":"HS256","crit":\#(crit)}"#, payload: payload,
                signer: .hs(256))
            #expect(await verifier.verify(token, now: F.now) == .failure(.unsupportedCritical), "\(crit)")
        }
    }

    @Test func typMustNameAJWT() async throws {
        let verifier = try await F.verifier(secret: true)
        let payload = try F.claimsJSON(TokenTestClaims())
        for typ in ["JWT", "jwt", "at+jwt", "application/jwt", "application/at+JWT"] {
            let token = try await F.craft(
                header: #"{"alg":"HS256","typ":"\#(typ)"}"#, payload: payload,
                signer: .hs(256))
            #expect(await verifier.verify(token, now: F.now).isAccepted, "\(typ)")
        }
        for typ in ["JWE", "dpop+jwt", "logout+jwt", "secevent+jwt", ""] {
            let token = try await F.craft(
                header: #"{"alg":"HS256","typ":"\#(typ)"}"#, payload: payload,
                signer: .hs(256))
            #expect(await verifier.verify(token, now: F.now) == .failure(.unsupportedType), "\(typ)")
        }
    }

    // MARK: Size and shape

    @Test func aTokenOverTheLimitIsRefusedBeforeParsing() async throws {
        let verifier = try await F.verifier(secret: true)
        #expect(await verifier.verify(String(repeating: "a", count: 8193), now: F.now) == .failure(.tooLarge))
        #expect(await verifier.verify(String(repeating: "é", count: 4097), now: F.now) == .failure(.tooLarge))
        #expect(await verifier.verify(String(repeating: "a", count: 8192), now: F.now) == .failure(.malformed))

        var claims = TokenTestClaims()
        claims.channels = ["sub": (0..<400).map { "doc:\($0)" }]
        let big = try await F.token(claims, signer: .hs(256))
        let fits = try await F.verifier(secret: true, maxTokenBytes: big.utf8.count)
        #expect(await fits.verify(big, now: F.now).isAccepted)
        let tooSmall = try await F.verifier(secret: true, maxTokenBytes: big.utf8.count - 1)
        #expect(await tooSmall.verify(big, now: F.now) == .failure(.tooLarge))
    }

    @Test func malformedTokensAreRefused() async throws {
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        let good = try await F.token(signer: .hs(256)).split(separator: ".").map(String.init)
        let b: (String) -> String = F.base64URL
        let handWritten = [
            "", ".", "..", "...", "abc", "a.b", good[0] + "." + good[1], good.joined(separator: ".") + ".",
            good.joined(separator: ".") + ".x.y", "!!!." + good[1] + "." + good[2], good[0] + ".%%%." + good[2],
            good[0] + "." + good[1] + ".***", good[0] + "=." + good[1] + "." + good[2],
            " " + good.joined(separator: "."), good.joined(separator: ".") + "\n",
            b("not json") + "." + good[1] + "." + good[2], b("[1,2]") + "." + good[1] + "." + good[2],
            b(#"{"alg":"HS256""#) + "." + good[1] + "." + good[2], b("{}") + "." + good[1] + "." + good[2],
            b(#"{"alg":256}"#) + "." + good[1] + "." + good[2], b(#"{"alg":null}"#) + "." + good[1] + "." + good[2],
            b(#"{"alg":"HS256","kid":7}"#) + "." + good[1] + "." + good[2],
            b(#"{"alg":"HS256","typ":["JWT"]}"#) + "." + good[1] + "." + good[2],
            good[0] + "." + b("not json") + "." + good[2], good[0] + "." + b("[]") + "." + good[2],
            good[0] + "." + b("") + "." + good[2],
        ]
        for token in handWritten {
            #expect(await verifier.verify(token, now: F.now) == .failure(.malformed), "\(token.debugDescription)")
        }
        // Correctly signed, yet not a claims set of the right types.
        let badClaims = [
            "not json", "[]", "42", #"{"sub":"alice","exp":"1764150600"}"#, #"{"sub":42,"exp":1764150600}"#,
            #"{"sub":"alice","exp":1764150600,"nbf":"soon"}"#, #"{"sub":"alice","exp":1764150600,"aud":42}"#,
            #"{"sub":"alice","exp":1764150600,"iss":["a"]}"#, #"{"sub":"alice","exp":1764150600,"channels":["doc:1"]}"#,
            #"{"sub":"alice","exp":1764150600,"channels":{"sub":"doc:1"}}"#,
            #"{"sub":"alice","exp":1764150600,"channels":{"sub":[1]}}"#,
        ]
        for claims in badClaims {
            let token = try await F.craft(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: claims, signer: .hs(256))
            #expect(await verifier.verify(token, now: F.now) == .failure(.malformed), "\(claims)")
        }
    }

    // MARK: Claims

    @Test func expIsRequiredAndEnforcedWithTheLeeway() async throws {
        let verifier = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        claims.exp = nil
        #expect(
            await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
                == .failure(.missingExpiration))
        for (exp, expected) in [(F.now - 30, true), (F.now - 31, false), (F.now, true), (F.now - 3600, false)] {
            claims.exp = Double(exp)
            let result = await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
            #expect(expected ? result.isAccepted : result == .failure(.expired), "exp now\(exp - F.now)")
        }
        claims.exp = Double(F.now) - 30.5
        #expect(await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now) == .failure(.expired))
        claims.exp = 1e300
        #expect(
            await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
                == .failure(.invalidExpiration))

        let strict = try await F.verifier(secret: true, leeway: 0)
        claims.exp = Double(F.now - 1)
        #expect(await strict.verify(try await F.token(claims, signer: .hs(256)), now: F.now) == .failure(.expired))
    }

    @Test func nbfAndIatAreHonouredWithTheLeeway() async throws {
        let verifier = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        for (nbf, accepted) in [(F.now + 30, true), (F.now + 31, false), (F.now - 100, true)] {
            claims.nbf = Double(nbf)
            let result = await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
            #expect(accepted ? result.isAccepted : result == .failure(.notYetValid))
        }
        claims.nbf = nil
        for (iat, accepted) in [(F.now + 30, true), (F.now + 31, false), (F.now - 100, true)] {
            claims.iat = Double(iat)
            let result = await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
            #expect(accepted ? result.isAccepted : result == .failure(.issuedInFuture))
        }
    }

    @Test func issIsCheckedWhenConfigured() async throws {
        let verifier = try await F.verifier(secret: true, issuer: "https://id.example.test")
        let open = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        for (iss, accepted) in [
            ("https://id.example.test", true), ("https://id.example.test/", false),
            ("https://evil.example.test", false), (nil, false),
        ] as [(String?, Bool)] {
            claims.iss = iss
            let token = try await F.token(claims, signer: .hs(256))
            let result = await verifier.verify(token, now: F.now)
            #expect(accepted ? result.isAccepted : result == .failure(.invalidIssuer), "\(iss ?? "nil")")
            #expect(await open.verify(token, now: F.now).isAccepted)
        }
    }

    @Test func audIsCheckedWhenConfigured() async throws {
        let verifier = try await F.verifier(secret: true, audience: "streamgate")
        let open = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        let cases: [(TokenTestAudience?, Bool)] = [
            (.one("streamgate"), true), (.many(["other", "streamgate"]), true), (.many(["streamgate"]), true),
            (.one("other"), false), (.many(["other"]), false), (.many([]), false), (nil, false),
            (.one("Streamgate"), false),
        ]
        for (aud, accepted) in cases {
            claims.aud = aud
            let token = try await F.token(claims, signer: .hs(256))
            let result = await verifier.verify(token, now: F.now)
            #expect(accepted ? result.isAccepted : result == .failure(.invalidAudience), "\(String(describing: aud))")
            #expect(await open.verify(token, now: F.now).isAccepted)
        }
    }

    @Test func subIsRequiredBoundedAndFreeOfControlCharacters() async throws {
        let verifier = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        let cases: [(String?, TokenRejection?)] = [
            (nil, .missingSubject), ("", .missingSubject), (String(repeating: "a", count: 256), nil),
            (String(repeating: "a", count: 257), .invalidSubject), (String(repeating: "é", count: 128), nil),
            (String(repeating: "é", count: 129), .invalidSubject), ("alice\nadmin", .invalidSubject),
            ("alice\u{0}", .invalidSubject), ("\u{7F}", .invalidSubject), ("al\u{85}ice", .invalidSubject),
            ("\u{1B}[31malice", .invalidSubject), ("Zoë 🚀", nil), ("user:42", nil),
        ]
        for (sub, rejection) in cases {
            claims.sub = sub
            let result = await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
            if let rejection {
                #expect(result == .failure(rejection), "\(sub.debugDescription)")
            } else {
                #expect((try? result.get())?.subject == sub)
            }
        }
    }

    @Test func theChannelsClaimBecomesThePermissions() async throws {
        let verifier = try await F.verifier(secret: true)
        var claims = TokenTestClaims()
        claims.channels = nil
        #expect(
            (try await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now).get()).permissions
                == .none)
        claims.channels = ["sub": ["*"]]
        #expect(
            (try await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now).get()).permissions
                == ChannelPermissions(subscribe: [.any], publish: []))
        claims.channels = [:]
        #expect(
            (try await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now).get()).permissions
                == .none)
        for invalid in [["sub": ["doc:42", "bad channel"]], ["pub": ["*doc"]], ["pub": [""]], ["sub": ["a*b*"]]] {
            claims.channels = invalid
            #expect(
                await verifier.verify(try await F.token(claims, signer: .hs(256)), now: F.now)
                    == .failure(.invalidChannels), "\(invalid)")
        }
        let nullChannels = try await F.craft(
            header: #"{"alg":"HS256"}"#,
            payload: #"{"sub":"a","exp":1764150600,"channels":null}"#, signer: .hs(256))
        #expect((try await verifier.verify(nullChannels, now: F.now).get()).permissions == .none)
    }

    // MARK: Configuration, concurrency, logs

    @Test func aVerifierWithoutKeysRefusesEverything() async throws {
        let verifier = try await TokenVerifier(policy: TokenPolicy(), logger: TokenLogCapture().logger)
        #expect(!TokenPolicy().isEnabled)
        #expect(await verifier.verify(try await F.token(signer: .hs(256)), now: F.now) == .failure(.notConfigured))
        #expect(await verifier.reloadJWKS() == false)
        await verifier.runRefresh()  // returns at once
    }

    @Test func settingsOutOfRangeAreRefused() async throws {
        let bad = [
            TokenPolicy(hmacSecret: []), TokenPolicy(hmacSecret: Array(F.secret.prefix(31))),
            TokenPolicy(hmacSecret: F.secret, jwksRefreshSeconds: 0),
            TokenPolicy(hmacSecret: F.secret, jwksRefreshSeconds: .infinity),
            TokenPolicy(hmacSecret: F.secret, leewaySeconds: -1), TokenPolicy(hmacSecret: F.secret, maxTokenBytes: 0),
            TokenPolicy(jwks: .url("ftp://127.0.0.1/jwks")), TokenPolicy(jwks: .url("https://")),
            TokenPolicy(jwks: .file("/nonexistent/jwks.json")),
        ]
        for policy in bad {
            await #expect(throws: TokenSetupError.self) {
                try await TokenVerifier(policy: policy, logger: TokenLogCapture().logger)
            }
        }
    }

    @Test func eachHMACAlgorithmNeedsASecretAsLongAsItsHash() async throws {
        await #expect(throws: TokenSetupError.self) {
            try await TokenVerifier(
                policy: TokenPolicy(hmacSecret: Array(F.secret.prefix(31))),
                logger: TokenLogCapture().logger)
        }
        for (length, accepted) in [(32, ["HS256"]), (48, ["HS256", "HS384"]), (64, ["HS256", "HS384", "HS512"])] {
            let capture = TokenLogCapture()
            let secret = Array(F.secret.prefix(length))
            let verifier = try await TokenVerifier(policy: TokenPolicy(hmacSecret: secret), logger: capture.logger)
            for bits in [256, 384, 512] {
                // Minted with a secret long enough for jwt-kit; the verifier decides on the algorithm first.
                let signer: TokenTestSigner = secret.count * 8 >= bits ? .hsKey(bits, secret) : .hs(bits)
                let result = await verifier.verify(try await F.token(signer: signer), now: F.now)
                if accepted.contains("HS\(bits)") {
                    #expect(result.isAccepted, "\(length) bytes, HS\(bits)")
                } else {
                    #expect(result == .failure(.algorithmNotAllowed), "\(length) bytes, HS\(bits)")
                }
            }
            #expect(capture.lines.contains { $0.contains("too short") } == (length < 64))
        }
    }

    @Test func secretFilesLoseOneTrailingNewline() throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        for (content, expected) in [
            ("abc\n", "abc"), ("abc\r\n", "abc"), ("abc\n\n", "abc\n"), ("abc", "abc"),
            ("\n", ""),
        ] {
            let path = directory.write("secret", content)
            #expect(try TokenPolicy.readSecretFile(path) == Array(expected.utf8), "\(content.debugDescription)")
        }
        #expect(throws: TokenSetupError.self) { try TokenPolicy.readSecretFile(directory.path("missing")) }
    }

    @Test func theConfigurationMapsOntoThePolicy() throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        var configuration = GatewayConfiguration()
        #expect(try !TokenPolicy(configuration: configuration).isEnabled)
        configuration.jwtSecretFile = directory.write("secret", "s3cret\n")
        configuration.jwks = "https://id.example.test/.well-known/jwks.json"
        configuration.jwksRefreshSeconds = 60
        configuration.jwtIssuer = "https://id.example.test"
        configuration.jwtAudience = "streamgate"
        let policy = try TokenPolicy(configuration: configuration)
        #expect(policy.hmacSecret == Array("s3cret".utf8))
        #expect(policy.jwks == .url("https://id.example.test/.well-known/jwks.json"))
        #expect(policy.jwksRefreshSeconds == 60)
        #expect(policy.issuer == "https://id.example.test" && policy.audience == "streamgate")
        #expect(policy.leewaySeconds == 30 && policy.maxTokenBytes == 8192)
    }

    @Test func jwksLocationsAndTheirLogForm() {
        #expect(JWKSSource("https://id.example.test/jwks") == .url("https://id.example.test/jwks"))
        #expect(JWKSSource("HTTP://127.0.0.1:8080/jwks") == .url("HTTP://127.0.0.1:8080/jwks"))
        #expect(JWKSSource("/etc/streamgate/jwks.json") == .file("/etc/streamgate/jwks.json"))
        #expect(JWKSSource("jwks.json") == .file("jwks.json"))
        #expect(
            JWKSSource.url("https://user:pw@id.example.test/jwks?key=secret#x").description
                == "https://id.example.test/jwks")
        #expect(JWKSFetcher.isInsecure("http://id.example.test/jwks"))
        #expect(JWKSFetcher.isInsecure("http://10.0.0.1/jwks"))
        for secure in [
            "https://id.example.test/jwks", "http://127.0.0.1:1/jwks", "http://localhost/jwks",
            "http://[::1]:80/jwks",
        ] {
            #expect(!JWKSFetcher.isInsecure(secure), "\(secure)")
        }
    }

    @Test func manyConcurrentVerificationsAllSucceedWhileKeysReload() async throws {
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", try F.jwksString(F.standardJWKS))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(hmacSecret: F.secret, jwks: .file(path)),
            logger: TokenLogCapture().logger)
        var tokens: [String] = []
        for signer in TokenTestSigner.allAlgorithms {
            tokens.append(try await F.token(signer: signer, kid: signer.isHMAC ? nil : signer.standardKid))
        }
        let allTokens = tokens
        let failures = await withTaskGroup(of: Int.self) { group in
            for round in 0..<40 {
                for token in allTokens {
                    group.addTask { await verifier.verify(token, now: F.now).isAccepted ? 0 : 1 }
                }
                if round % 10 == 0 {
                    group.addTask { await verifier.reloadJWKS() ? 0 : 1 }
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }

    @Test func logsAndReasonsNeverContainTokens() async throws {
        let capture = TokenLogCapture()
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        let path = directory.write("jwks.json", try F.jwksString(F.standardJWKS))
        let verifier = try await TokenVerifier(
            policy: TokenPolicy(
                hmacSecret: F.secret, jwks: .file(path),
                issuer: "iss", audience: "aud"),
            logger: capture.logger)
        var tokens = [
            try await F.token(signer: .hs(256)), try await F.token(signer: .rs(256), kid: "rsa"),
            try await F.token(signer: .rs(256), kid: "unknown-kid-value"),
            try await F.token(signer: .hsKey(256, Array(F.rsa.publicKey.pemRepresentation.utf8)), kid: "rsa"),
        ]
        var claims = TokenTestClaims()
        claims.sub = "secret-subject\n"
        tokens.append(try await F.token(claims, signer: .es256, kid: "p256"))
        tokens.append("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
        var reasons: Set<String> = []
        for token in tokens {
            if case .failure(let rejection) = await verifier.verify(token, now: F.now) {
                reasons.insert(rejection.reason)
            }
        }
        directory.write("jwks.json", "garbage")
        #expect(await verifier.reloadJWKS() == false)
        let known: Set<String> = [
            TokenRejection.invalidIssuer.reason, TokenRejection.unknownKeyID.reason,
            TokenRejection.algorithmNotAllowed.reason,
        ]
        #expect(reasons.isSubset(of: known))
        let log = capture.lines.joined(separator: "\n")
        for token in tokens {
            for part in token.split(separator: ".") where part.count > 8 {
                #expect(!log.contains(part))
            }
        }
        #expect(!log.contains("unknown-kid-value") && !log.contains("secret-subject"))
    }
}

// MARK: - Fixtures shared by the Token* and JWKS* suites

/// Claims as a test wants them, wrong ones included.
struct TokenTestClaims: JWTPayload {
    var sub: String? = "alice"
    var exp: Double? = Double(TokenFixtures.now + 600)
    var nbf: Double?
    var iat: Double?
    var iss: String?
    var aud: TokenTestAudience?
    var channels: [String: [String]]?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

enum TokenTestAudience: Codable, Sendable {
    case one(String)
    case many([String])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            self = .one(one)
        } else {
            self = .many(try container.decode([String].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .one(let value): try container.encode(value)
        case .many(let values): try container.encode(values)
        }
    }
}

/// A private key (or secret) that mints test tokens, and the algorithm it signs with.
enum TokenTestSigner: Sendable, CustomTestStringConvertible {
    case hs(Int)
    case hsKey(Int, [UInt8])
    case rs(Int)
    case rsKey(Int, JWTKit.Insecure.RSA.PrivateKey)
    case ps(Int)
    case es256
    case es256Key(ES256PrivateKey)
    case es384
    case eddsa

    static let allAlgorithms: [TokenTestSigner] = [
        .hs(256), .hs(384), .hs(512), .rs(256), .ps(256), .es256, .es384, .eddsa,
    ]

    var testDescription: String {
        switch self {
        case .hs(let bits), .hsKey(let bits, _): "HS\(bits)"
        case .rs(let bits), .rsKey(let bits, _): "RS\(bits)"
        case .ps(let bits): "PS\(bits)"
        case .es256, .es256Key: "ES256"
        case .es384: "ES384"
        case .eddsa: "EdDSA"
        }
    }

    var isHMAC: Bool {
        switch self {
        case .hs, .hsKey: true
        default: false
        }
    }

    /// The kid of this signer's public key in ``TokenFixtures/standardJWKS``.
    var standardKid: String {
        switch self {
        case .hs, .hsKey: "hmac"
        case .rs, .rsKey, .ps: "rsa"
        case .es256, .es256Key: "p256"
        case .es384: "p384"
        case .eddsa: "ed"
        }
    }

    private static func digest(_ bits: Int) -> DigestAlgorithm {
        switch bits {
        case 384: .sha384
        case 512: .sha512
        default: .sha256
        }
    }

    /// A jwt-kit collection holding only this signing key.
    func collection() async throws -> JWTKeyCollection {
        let keys = JWTKeyCollection()
        switch self {
        case .hs(let bits):
            await keys.add(hmac: HMACKey(from: TokenFixtures.secret), digestAlgorithm: Self.digest(bits))
        case .hsKey(let bits, let secret):
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: Self.digest(bits))
        case .rs(let bits): await keys.add(rsa: TokenFixtures.rsa, digestAlgorithm: Self.digest(bits))
        case .rsKey(let bits, let key): await keys.add(rsa: key, digestAlgorithm: Self.digest(bits))
        case .ps(let bits): await keys.add(pss: TokenFixtures.rsa, digestAlgorithm: Self.digest(bits))
        case .es256: await keys.add(ecdsa: TokenFixtures.p256)
        case .es256Key(let key): await keys.add(ecdsa: key)
        case .es384: await keys.add(ecdsa: TokenFixtures.p384)
        case .eddsa: await keys.add(eddsa: TokenFixtures.ed25519)
        }
        return keys
    }
}

enum TokenFixtures {
    /// The clock of every test: 2025-11-26T09:40:00Z.
    static let now: Int64 = 1_764_150_000
    /// 64 bytes: long enough for HS512.
    static let secret = Array("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".utf8)
    static let rsa = makeRSA()
    static let rsa2 = makeRSA()
    static let p256 = ES256PrivateKey()
    static let p384 = ES384PrivateKey()
    static let ed25519 = try! EdDSA.PrivateKey(curve: .ed25519)

    private static func makeRSA() -> JWTKit.Insecure.RSA.PrivateKey {
        try! JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
    }

    /// One key of each kind: RSA without `alg` (every RSA algorithm), P-256, P-384 and Ed25519.
    static var standardJWKS: [[String: any Sendable]] {
        [rsaJWK(rsa, kid: "rsa"), ecJWK(p256, kid: "p256"), ecJWK(p384, kid: "p384"), okpJWK(ed25519, kid: "ed")]
    }

    static func verifier(
        secret: Bool = false, jwks: [[String: any Sendable]]? = nil, issuer: String? = nil, audience: String? = nil,
        leeway: Double = 30, maxTokenBytes: Int = 8192, logger: Logger = TokenLogCapture().logger
    ) async throws -> TokenVerifier {
        var policy = TokenPolicy(
            hmacSecret: secret ? self.secret : nil, issuer: issuer, audience: audience,
            leewaySeconds: leeway, maxTokenBytes: maxTokenBytes)
        // The verifier reads a JWKS file when it is made; these verifiers never reload it.
        let directory = try TokenTestDirectory()
        defer { directory.remove() }
        if let jwks {
            policy.jwks = .file(directory.write("jwks.json", try jwksString(jwks)))
        }
        return try await TokenVerifier(policy: policy, logger: logger)
    }

    static func token(
        _ claims: TokenTestClaims = TokenTestClaims(), signer: TokenTestSigner, kid: String? = nil, alg: String? = nil
    ) async throws -> String {
        var header = JWTHeader()
        if let kid { header.kid = kid }
        if let alg { header.alg = alg }
        return try await signer.collection().sign(claims, header: header)
    }

    /// A token from hand-written header and claims JSON, signed by jwt-kit with the signer's key.
    static func craft(header: String, payload: String, signer: TokenTestSigner) async throws -> String {
        let algorithm = try await signer.collection().getKey()
        let input = base64URL(header) + "." + base64URL(payload)
        return input + "." + base64URL(Data(try algorithm.sign(Array(input.utf8))))
    }

    static func claimsJSON(_ claims: TokenTestClaims) throws -> String {
        String(decoding: try JSONEncoder().encode(claims), as: UTF8.self)
    }

    static func base64URL(_ string: String) -> String { base64URL(Data(string.utf8)) }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func rsaJWK(
        _ key: JWTKit.Insecure.RSA.PrivateKey, kid: String?, alg: String? = nil,
        extra: [String: any Sendable] = [:]
    ) -> [String: any Sendable] {
        let primitives = try! key.publicKey.getKeyPrimitives()
        var jwk: [String: any Sendable] = [
            "kty": "RSA", "n": base64URL(primitives.modulus),
            "e": base64URL(primitives.publicExponent),
        ]
        if let kid { jwk["kid"] = kid }
        if let alg { jwk["alg"] = alg }
        return jwk.merging(extra) { $1 }
    }

    static func ecJWK(
        _ key: ES256PrivateKey, kid: String, alg: String? = nil,
        extra: [String: any Sendable] = [:]
    ) -> [String: any Sendable] {
        ecJWK(parameters: key.parameters!, curve: "P-256", kid: kid, alg: alg, extra: extra)
    }

    static func ecJWK(
        _ key: ES384PrivateKey, kid: String, alg: String? = nil,
        extra: [String: any Sendable] = [:]
    ) -> [String: any Sendable] {
        ecJWK(parameters: key.parameters!, curve: "P-384", kid: kid, alg: alg, extra: extra)
    }

    static func ecJWK(
        parameters: ECDSAParameters, curve: String, kid: String, alg: String?,
        extra: [String: any Sendable]
    ) -> [String: any Sendable] {
        var jwk: [String: any Sendable] = ["kty": "EC", "crv": curve, "x": parameters.x, "y": parameters.y, "kid": kid]
        if let alg { jwk["alg"] = alg }
        return jwk.merging(extra) { $1 }
    }

    static func okpJWK(
        _ key: EdDSA.PrivateKey, kid: String, alg: String? = nil,
        extra: [String: any Sendable] = [:]
    ) -> [String: any Sendable] {
        var jwk: [String: any Sendable] = [
            "kty": "OKP", "crv": "Ed25519", "x": base64URL(key.publicKey.rawRepresentation),
            "kid": kid,
        ]
        if let alg { jwk["alg"] = alg }
        return jwk.merging(extra) { $1 }
    }

    static func jwksData(_ keys: [[String: any Sendable]]) throws -> Data {
        try JSONSerialization.data(withJSONObject: ["keys": keys], options: [.sortedKeys])
    }

    static func jwksString(_ keys: [[String: any Sendable]]) throws -> String {
        String(decoding: try jwksData(keys), as: UTF8.self)
    }
}

/// A folder for one test's files; the test removes it (`defer { directory.remove() }`).
final class TokenTestDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("streamgate-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ content: String) -> String { write(name, Data(content.utf8)) }

    @discardableResult
    func write(_ name: String, _ content: Data) -> String {
        let path = path(name)
        try! content.write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }
}

/// Collects what a logger writes, one line per entry: level, message and metadata.
final class TokenLogCapture: Sendable {
    private let box = NIOLockedValueBox<[String]>([])

    var lines: [String] { box.withLockedValue { $0 } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(capture: self) }
    }

    fileprivate func append(_ line: String) { box.withLockedValue { $0.append(line) } }

    private struct Handler: LogHandler {
        let capture: TokenLogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        var metadataProvider: Logger.MetadataProvider?

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.append("\(event.level) \(event.message) \(rendered)")
        }
    }
}

extension Result where Success == VerifiedToken, Failure == TokenRejection {
    var isAccepted: Bool {
        if case .success = self { return true }
        return false
    }
}
