/// Why a token was refused.
///
/// `reason` is one of the constants below: short, fixed text that is safe to send to the client (in an `error`
/// frame or a `WWW-Authenticate` description) and to log. It never contains the token, any of its parts or any
/// value taken from it.
public struct TokenRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { reason }

    /// No HMAC secret and no JWKS are configured.
    public static let notConfigured = TokenRejection(reason: "authentication not configured")
    /// Larger than ``TokenPolicy/maxTokenBytes``; refused before any parsing.
    public static let tooLarge = TokenRejection(reason: "token too large")
    /// Not three base64url parts, a header or claims set that is not the JSON it must be, or a claim of the
    /// wrong type.
    public static let malformed = TokenRejection(reason: "malformed token")
    /// The header lists `crit` extensions; none are supported (RFC 7515 §4.1.11).
    public static let unsupportedCritical = TokenRejection(reason: "unsupported critical header")
    /// The header's `typ` names something other than a JWT access token (RFC 8725 §3.11).
    public static let unsupportedType = TokenRejection(reason: "unsupported token type")
    /// `alg` is `none`, or not an algorithm the selected key allows (RFC 8725 §3.1).
    public static let algorithmNotAllowed = TokenRejection(reason: "algorithm not allowed")
    /// A JWKS is configured, the token is not for the HMAC secret, and it names no `kid`.
    public static let missingKeyID = TokenRejection(reason: "missing key id")
    /// The token's `kid` is not in the current JWKS.
    public static let unknownKeyID = TokenRejection(reason: "unknown key id")
    /// The token needs a JWKS key, and no JWKS has been loaded yet.
    public static let keysUnavailable = TokenRejection(reason: "signing keys unavailable")
    /// The signature does not verify with the selected key.
    public static let invalidSignature = TokenRejection(reason: "invalid signature")
    /// No `exp` claim (it is required).
    public static let missingExpiration = TokenRejection(reason: "missing exp claim")
    /// `exp` is not a representable time.
    public static let invalidExpiration = TokenRejection(reason: "invalid exp claim")
    /// `exp` plus the leeway is in the past.
    public static let expired = TokenRejection(reason: "token expired")
    /// `nbf` is later than now plus the leeway.
    public static let notYetValid = TokenRejection(reason: "token not yet valid")
    /// `iat` is later than now plus the leeway.
    public static let issuedInFuture = TokenRejection(reason: "token issued in the future")
    /// `iss` is missing or differs from the configured issuer.
    public static let invalidIssuer = TokenRejection(reason: "invalid issuer")
    /// `aud` is missing or does not contain the configured audience.
    public static let invalidAudience = TokenRejection(reason: "invalid audience")
    /// No `sub` claim, or an empty one.
    public static let missingSubject = TokenRejection(reason: "missing sub claim")
    /// `sub` is longer than 256 bytes or contains control characters.
    public static let invalidSubject = TokenRejection(reason: "invalid sub claim")
    /// The `channels` claim lists an entry that is neither a channel name nor a prefix ending in `*`.
    public static let invalidChannels = TokenRejection(reason: "invalid channels claim")
}
