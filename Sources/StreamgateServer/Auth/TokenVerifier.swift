import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import StreamgateCore

/// Checks bearer tokens as RFC 8725 advises (PROTOCOL §8, SECURITY "Tokens").
///
/// The configured key decides the algorithm, never the token: the verifier reads `kid` and `alg` from the
/// header, selects the one key (and algorithm) that `kid` names, or the HMAC secret, and refuses the token
/// unless its `alg` is one that key allows. Only then does jwt-kit verify the signature, with a collection that
/// holds that key alone. `alg: none`, `crit` headers, unknown key ids and an `alg` that does not fit the key
/// (an HS256 header on an RSA key id: the algorithm-confusion attack) are refused before any cryptography.
///
/// `verify` may be called from any number of connections at once. The JWKS is swapped whole on a reload:
/// a verification sees the old set or the new one, never a mix.
///
/// - Important: Nothing here logs a token, a part of one, or a value taken from one.
public final class TokenVerifier: Sendable {
    private let policy: TokenPolicy
    private let logger: Logger
    private let parser = DefaultJWTParser()
    /// `HS256`/`HS384`/`HS512` → a collection holding the secret with that digest.
    private let hmac: [String: JWTKeyCollection]
    private let jwks: NIOLockedValueBox<JWKSState>

    private struct JWKSState {
        var keys = JWKSKeySet()
        /// Whether any load has succeeded since the start.
        var loaded = false
        /// Loads started, and the number of the one installed: a slow load never replaces a newer one.
        var started = 0
        var installed = 0
        /// Notes already logged, so that a refresh does not repeat them every interval.
        var logged: Set<String> = []
    }

    /// Each HMAC algorithm, its digest and the shortest secret it may use (the hash size).
    private static let hmacAlgorithms: [(String, DigestAlgorithm, Int)] = [
        ("HS256", .sha256, 32), ("HS384", .sha384, 48), ("HS512", .sha512, 64),
    ]

    private enum LogKey {
        static let source = "jwks.source"
        static let keys = "jwks.keys"
        static let kids = "jwks.kids"
        static let error = "error"
        static let secretBytes = "jwt.secret_bytes"
        static let refused = "jwt.refused_algorithms"
    }

    /// Prepares the HMAC secret and loads the JWKS.
    ///
    /// A JWKS file is read now and must hold at least one usable key. A JWKS URL is fetched now; when that
    /// fails the verifier starts without JWKS keys (logging an error), and tokens that need them are refused
    /// with ``TokenRejection/keysUnavailable`` until ``reloadJWKS()`` or ``runRefresh()`` succeeds.
    ///
    /// - Parameters:
    ///   - policy: What is accepted.
    ///   - logger: For key loads; verifications log nothing.
    /// - Throws: ``TokenSetupError`` for settings out of range or an unusable JWKS file.
    public init(policy: TokenPolicy, logger: Logger) async throws {
        try policy.validate()
        self.policy = policy
        self.logger = logger
        var hmac: [String: JWTKeyCollection] = [:]
        if let secret = policy.hmacSecret {
            // RFC 7518 §3.2: the key must be at least as long as the hash (jwt-kit asserts it, too).
            var refused: [String] = []
            for (name, digest, bytes) in Self.hmacAlgorithms {
                guard secret.count >= bytes else {
                    refused.append("\(name) (needs \(bytes))")
                    continue
                }
                hmac[name] = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: digest)
            }
            if !refused.isEmpty {
                logger.info(
                    "the JWT secret is too short for some HMAC algorithms; their tokens are refused",
                    metadata: [
                        LogKey.secretBytes: "\(secret.count)",
                        LogKey.refused: "\(refused.joined(separator: ", "))",
                    ])
            }
        }
        self.hmac = hmac
        self.jwks = NIOLockedValueBox(JWKSState())

        guard let source = policy.jwks else { return }
        if case .url(let string) = source, JWKSFetcher.isInsecure(string) {
            logger.warning(
                "the JWKS URL is plain http off loopback: anyone on the path can replace the keys; use https",
                metadata: [LogKey.source: "\(source)"])
        }
        switch source {
        case .file:
            try await install(load(source))
        case .url:
            do {
                try await install(load(source))
            } catch {
                logger.error(
                    "cannot load the JWKS; tokens that need its keys are refused until a refresh succeeds",
                    metadata: [LogKey.source: "\(source)", LogKey.error: "\(error)"])
            }
        }
    }

    /// Checks a token and returns what it grants, or why it is refused.
    ///
    /// - Parameters:
    ///   - token: The compact JWT, as sent (without `Bearer `).
    ///   - now: Seconds since 1970; the time rules compare `exp`, `nbf` and `iat` with it.
    public func verify(_ token: String, now: Int64 = TokenVerifier.currentTime()) async
        -> Result<VerifiedToken, TokenRejection>
    {
        guard policy.isEnabled else { return .failure(.notConfigured) }
        guard token.utf8.count <= policy.maxTokenBytes else { return .failure(.tooLarge) }
        let bytes = Array(token.utf8)

        // Shape first, by jwt-kit: three base64url parts, a JSON header, a claims set of the right types and a
        // signature that decodes. Nothing read here is trusted or acted on.
        guard (try? parser.parse(bytes, as: TokenClaims.self)) != nil,
            let header = TokenHeader(compactToken: bytes)
        else { return .failure(.malformed) }
        guard !header.hasCritical else { return .failure(.unsupportedCritical) }
        guard header.hasAcceptedType else { return .failure(.unsupportedType) }

        let collection: JWTKeyCollection
        switch selectKey(for: header) {
        case .success(let selected): collection = selected
        case .failure(let rejection): return .failure(rejection)
        }

        let claims: TokenClaims
        do {
            claims = try await collection.verify(bytes, as: TokenClaims.self)
        } catch {
            return .failure(.invalidSignature)
        }
        return check(claims, now: now)
    }

    /// The collection that may verify this header's token: the key the RFC 8725 rules select, fixed to the
    /// header's algorithm, or why there is none.
    private func selectKey(for header: TokenHeader) -> Result<JWTKeyCollection, TokenRejection> {
        let algorithm = header.alg
        guard algorithm.lowercased() != "none" else { return .failure(.algorithmNotAllowed) }
        let keys = jwks.withLockedValue { $0.keys.collections }
        if let kid = header.kid, let byAlgorithm = keys[kid] {
            guard let collection = byAlgorithm[algorithm] else { return .failure(.algorithmNotAllowed) }
            return .success(collection)
        }
        if let collection = hmac[algorithm] {
            return .success(collection)
        }
        // Not for the secret: only a JWKS key can take it, and only with a public-key algorithm.
        guard policy.jwks != nil, JWKSKeySet.publicKeyAlgorithms.contains(algorithm) else {
            return .failure(.algorithmNotAllowed)
        }
        guard header.kid != nil else { return .failure(.missingKeyID) }
        return .failure(keys.isEmpty ? .keysUnavailable : .unknownKeyID)
    }

    /// The claim rules, on claims whose signature is verified.
    private func check(_ claims: TokenClaims, now: Int64) -> Result<VerifiedToken, TokenRejection> {
        let now = Double(now)
        let leeway = policy.leewaySeconds
        guard let exp = claims.exp?.value.timeIntervalSince1970 else { return .failure(.missingExpiration) }
        let expSeconds = exp.rounded(.down)
        guard expSeconds.isFinite, expSeconds > -9.0e18, expSeconds < 9.0e18 else {
            return .failure(.invalidExpiration)
        }
        guard exp + leeway >= now else { return .failure(.expired) }
        if let nbf = claims.nbf?.value.timeIntervalSince1970, nbf > now + leeway {
            return .failure(.notYetValid)
        }
        if let iat = claims.iat?.value.timeIntervalSince1970, iat > now + leeway {
            return .failure(.issuedInFuture)
        }
        if let issuer = policy.issuer, claims.iss?.value != issuer {
            return .failure(.invalidIssuer)
        }
        if let audience = policy.audience, !(claims.aud?.value.contains(audience) ?? false) {
            return .failure(.invalidAudience)
        }
        guard let subject = claims.sub?.value, !subject.isEmpty else { return .failure(.missingSubject) }
        guard subject.utf8.count <= 256,
            !subject.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { return .failure(.invalidSubject) }

        var permissions = ChannelPermissions.none
        if let channels = claims.channels {
            let parsed = ChannelPermissions.parse(subscribe: channels.sub ?? [], publish: channels.pub ?? [])
            guard parsed.invalid.isEmpty else { return .failure(.invalidChannels) }
            permissions = parsed.permissions
        }
        return .success(VerifiedToken(subject: subject, expiresAt: Int64(expSeconds), permissions: permissions))
    }

    /// Refreshes the JWKS every ``TokenPolicy/jwksRefreshSeconds`` until the calling task is cancelled.
    ///
    /// A failed refresh (source unreachable, HTTP error, not a JWKS, no usable key) logs a warning and keeps
    /// the last good key set. While no key set has ever loaded, it retries sooner: after 5 s, doubling up to
    /// the refresh interval, so a node that started during an identity-provider outage recovers quickly.
    /// Returns at once when no JWKS is configured.
    public func runRefresh() async {
        guard policy.jwks != nil else { return }
        var retrySeconds = 5.0
        while !Task.isCancelled {
            let loaded = jwks.withLockedValue { $0.loaded }
            let delay = loaded ? policy.jwksRefreshSeconds : min(retrySeconds, policy.jwksRefreshSeconds)
            do {
                try await Task.sleep(for: .seconds(delay))
            } catch {
                return
            }
            if !(await reloadJWKS()) { retrySeconds = min(retrySeconds * 2, policy.jwksRefreshSeconds) }
        }
    }

    /// Reads or fetches the JWKS now and, if it holds a usable key, makes it the key set (keys that left the
    /// document stop verifying at once). Used by ``runRefresh()`` and on SIGHUP.
    ///
    /// - Returns: Whether the new set was accepted; on `false` the last good set stays (and a warning is
    ///   logged).
    @discardableResult
    public func reloadJWKS() async -> Bool {
        guard let source = policy.jwks else { return false }
        do {
            try await install(load(source))
            return true
        } catch {
            logger.warning(
                "JWKS refresh failed; keeping the last good keys",
                metadata: [LogKey.source: "\(source)", LogKey.error: "\(error)"])
            return false
        }
    }

    /// Reads and parses the JWKS; a load is numbered when it starts.
    private func load(_ source: JWKSSource) async throws -> (number: Int, keys: JWKSKeySet) {
        let number = jwks.withLockedValue { state in
            state.started += 1
            return state.started
        }
        let keys = try await JWKSKeySet.load(JWKSFetcher.read(source))
        return (number, keys)
    }

    private func install(_ load: (number: Int, keys: JWKSKeySet)) {
        let (installed, newNotes, changed) = jwks.withLockedValue { state in
            guard load.number > state.installed else { return (false, [String](), false) }
            let changed = Set(state.keys.collections.keys) != Set(load.keys.collections.keys)
            state.installed = load.number
            state.keys = load.keys
            state.loaded = true
            let newNotes = load.keys.notes.filter { state.logged.insert($0.id).inserted }.map(\.message)
            return (true, newNotes, changed)
        }
        guard installed else { return }
        let source = policy.jwks.map { "\($0)" } ?? ""
        for note in newNotes {
            logger.warning("JWKS key not used as is: \(note)", metadata: [LogKey.source: "\(source)"])
        }
        if !changed {
            logger.debug(
                "JWKS refreshed", metadata: [LogKey.source: "\(source)", LogKey.keys: "\(load.keys.keyCount)"])
        } else {
            logger.info(
                "JWKS loaded",
                metadata: [
                    LogKey.source: "\(source)", LogKey.keys: "\(load.keys.keyCount)",
                    LogKey.kids:
                        "\(load.keys.collections.keys.sorted().map(\.debugDescription).joined(separator: ","))",
                ])
        }
    }

    /// The default clock of ``verify(_:now:)``: whole seconds since 1970.
    public static func currentTime() -> Int64 {
        Int64(Date().timeIntervalSince1970.rounded(.down))
    }
}
