import Foundation

/// Where a JWKS document (RFC 7517 §5) comes from.
public enum JWKSSource: Sendable, Equatable, CustomStringConvertible {
    /// A local file, read again on every refresh (so rotating keys is rewriting the file).
    case file(String)
    /// An `https://` URL (or `http://`, meant for tests on loopback), fetched again on every refresh.
    case url(String)

    /// `--jwks` as given: a value starting with `http://` or `https://` is a URL, anything else a path.
    public init(_ location: String) {
        let lowercased = location.lowercased()
        if lowercased.hasPrefix("https://") || lowercased.hasPrefix("http://") {
            self = .url(location)
        } else {
            self = .file(location)
        }
    }

    /// For logs: a URL without its query, fragment or credentials, which may carry secrets.
    public var description: String {
        switch self {
        case .file(let path):
            return path
        case .url(let string):
            guard var components = URLComponents(string: string) else { return "(unparsable URL)" }
            components.user = nil
            components.password = nil
            components.query = nil
            components.fragment = nil
            return components.string ?? "(unparsable URL)"
        }
    }
}
