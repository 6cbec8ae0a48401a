/// Why a connection or a request failed.
///
/// A struct over a private code so that new cases never break callers; compare ``code`` with the
/// `static let` codes of ``Code``.
public struct StreamgateClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case connectFailed, upgradeRefused, connectionClosed, nack, serverError, protocolViolation, invalidArgument
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// TCP connect or handshake failed before any HTTP answer.
        public static let connectFailed = Code(.connectFailed)
        /// The server answered the upgrade request with something other than `101` (see ``status``).
        public static let upgradeRefused = Code(.upgradeRefused)
        /// The connection closed before the request was answered (see ``closeCode``).
        public static let connectionClosed = Code(.connectionClosed)
        /// The server answered a publish with `nack` (see ``serverCode`` and ``persisted``).
        public static let nack = Code(.nack)
        /// The server answered a request with an `error` frame (see ``serverCode``).
        public static let serverError = Code(.serverError)
        /// The server sent something streamgate.v1 does not allow.
        public static let protocolViolation = Code(.protocolViolation)
        /// The caller passed something that cannot be sent.
        public static let invalidArgument = Code(.invalidArgument)

        public var description: String { "\(base)" }
    }

    public var code: Code
    /// Human-readable explanation (the server's `message` when it sent one).
    public var message: String
    /// HTTP status of a refused upgrade.
    public var status: Int?
    /// `Location` of a refused upgrade answered with a redirect (affinity placement).
    public var location: String?
    /// The server's error code, such as `bad_request` or `kafka_unavailable`.
    public var serverCode: String?
    /// For a `nack`: `"no"` (definitely not stored) or `"unknown"` (retry with the same msgId).
    public var persisted: String?
    /// WebSocket close code received, when the connection closed.
    public var closeCode: UInt16?

    public init(
        code: Code, message: String, status: Int? = nil, location: String? = nil, serverCode: String? = nil,
        persisted: String? = nil, closeCode: UInt16? = nil
    ) {
        self.code = code
        self.message = message
        self.status = status
        self.location = location
        self.serverCode = serverCode
        self.persisted = persisted
        self.closeCode = closeCode
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let status { text += " (HTTP \(status))" }
        if let serverCode { text += " [\(serverCode)]" }
        if let persisted { text += " persisted=\(persisted)" }
        if let closeCode { text += " close=\(closeCode)" }
        return text
    }
}
