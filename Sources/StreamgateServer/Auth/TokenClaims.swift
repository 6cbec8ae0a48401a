import Foundation
import JWTKit

/// The claims set of a Streamgate token, as jwt-kit decodes it. A claim of the wrong JSON type fails the
/// decoding (the token is malformed).
///
/// `verify(using:)` checks nothing: the time, issuer and audience rules need the verifier's clock and policy,
/// so ``TokenVerifier`` applies them to the decoded claims once the signature is verified.
struct TokenClaims: JWTPayload, Equatable {
    /// The `channels` claim: `{"sub": ["doc:42", "chat:*"], "pub": ["doc:42"]}`; a missing list is empty.
    struct Channels: Codable, Sendable, Equatable {
        var sub: [String]?
        var pub: [String]?
    }

    var sub: SubjectClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var channels: Channels?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
