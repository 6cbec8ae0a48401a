import Foundation

/// How tokens are checked (PROTOCOL §8). Authentication is on when an HMAC secret or a JWKS is configured.
public struct TokenPolicy: Sendable {
    /// Shared secret for HS256, HS384 and HS512 tokens (`--jwt-secret-file`: the file's bytes, one trailing
    /// newline stripped; see ``readSecretFile(_:)``). `nil`: no HMAC tokens.
    ///
    /// RFC 7518 §3.2 requires a key at least as long as the hash: at least 32 bytes (HS256); HS384 tokens
    /// are accepted only with 48 bytes or more, HS512 tokens with 64 or more.
    public var hmacSecret: [UInt8]?
    /// Public keys for RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA tokens, selected by `kid`
    /// (`--jwks`). `nil`: no public-key tokens.
    public var jwks: JWKSSource?
    /// How often the JWKS is read or fetched again. 300 s follows a key rotation within minutes at no
    /// measurable cost; a failed refresh keeps the last good keys.
    public var jwksRefreshSeconds: Double = 300
    /// When set, `iss` must equal it (`--jwt-issuer`).
    public var issuer: String?
    /// When set, `aud` (a string or an array) must contain it (`--jwt-audience`).
    public var audience: String?
    /// Clock skew tolerated for `exp`, `nbf` and `iat`. 30 s covers hosts kept in sync by a time service
    /// without keeping an expired token alive for long.
    public var leewaySeconds: Double = 30
    /// Largest token accepted; a larger one is refused before it is parsed. 8 KiB holds an RS512 token with a
    /// few hundred channel patterns, and is the common limit for one HTTP header line.
    public var maxTokenBytes: Int = 8192

    /// Whether clients must present a token.
    public var isEnabled: Bool { hmacSecret != nil || jwks != nil }

    public init(
        hmacSecret: [UInt8]? = nil,
        jwks: JWKSSource? = nil,
        jwksRefreshSeconds: Double = 300,
        issuer: String? = nil,
        audience: String? = nil,
        leewaySeconds: Double = 30,
        maxTokenBytes: Int = 8192
    ) {
        self.hmacSecret = hmacSecret
        self.jwks = jwks
        self.jwksRefreshSeconds = jwksRefreshSeconds
        self.issuer = issuer
        self.audience = audience
        self.leewaySeconds = leewaySeconds
        self.maxTokenBytes = maxTokenBytes
    }

    /// The token settings of a node's configuration; reads the secret file now.
    public init(configuration: GatewayConfiguration) throws {
        self.init(
            hmacSecret: try configuration.jwtSecretFile.map(Self.readSecretFile),
            jwks: configuration.jwks.map(JWKSSource.init),
            jwksRefreshSeconds: configuration.jwksRefreshSeconds,
            issuer: configuration.jwtIssuer,
            audience: configuration.jwtAudience
        )
    }

    /// A secret file's bytes with one trailing newline (`\n` or `\r\n`) stripped, as editors add one.
    public static func readSecretFile(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenSetupError("cannot read the JWT secret file \(path)")
        }
        var bytes = [UInt8](data)
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        }
        return bytes
    }

    /// The settings' own consistency, checked when a verifier is made.
    func validate() throws {
        if let hmacSecret, hmacSecret.count < 32 {
            throw TokenSetupError("the JWT secret has \(hmacSecret.count) bytes; HMAC tokens need at least 32")
        }
        guard jwksRefreshSeconds.isFinite, jwksRefreshSeconds > 0 else {
            throw TokenSetupError("the JWKS refresh interval must be a positive number of seconds")
        }
        guard leewaySeconds.isFinite, leewaySeconds >= 0 else {
            throw TokenSetupError("the token leeway must be zero or a positive number of seconds")
        }
        guard maxTokenBytes > 0 else {
            throw TokenSetupError("the token size limit must be positive")
        }
        if case .url(let string) = jwks {
            guard let url = URL(string: string), let scheme = url.scheme?.lowercased(),
                scheme == "https" || scheme == "http", url.host?.isEmpty == false
            else {
                throw TokenSetupError("the JWKS URL \(JWKSSource.url(string)) is not an http(s) URL")
            }
        }
    }
}
