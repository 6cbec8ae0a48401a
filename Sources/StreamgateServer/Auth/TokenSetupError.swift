/// A token configuration that cannot be used: an unreadable secret or JWKS file, a JWKS without a usable key,
/// a setting out of range. Thrown when a ``TokenVerifier`` is made, so a node refuses to start rather than run
/// with authentication it cannot perform.
public struct TokenSetupError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
