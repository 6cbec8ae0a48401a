/// The `code` of an `error` or `nack` frame (PROTOCOL §7). Extensible: new codes are new constants.
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let badRequest = ErrorCode("bad_request")
    public static let unauthorized = ErrorCode("unauthorized")
    public static let forbidden = ErrorCode("forbidden")
    public static let unknownNamespace = ErrorCode("unknown_namespace")
    public static let tooLarge = ErrorCode("too_large")
    public static let rateLimited = ErrorCode("rate_limited")
    public static let limitExceeded = ErrorCode("limit_exceeded")
    public static let notSubscribed = ErrorCode("not_subscribed")
    public static let alreadySubscribed = ErrorCode("already_subscribed")
    public static let kafkaUnavailable = ErrorCode("kafka_unavailable")
    public static let `internal` = ErrorCode("internal")
}

/// WebSocket close codes the gateway uses (PROTOCOL §7).
public enum CloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let invalidUTF8: UInt16 = 1007
    public static let policy: UInt16 = 1008
    public static let tooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011
    public static let tryAgainLater: UInt16 = 1013
    public static let pingTimeout: UInt16 = 4000
    public static let unauthorized: UInt16 = 4001
    public static let forbidden: UInt16 = 4003
    public static let slowConsumer: UInt16 = 4008
    public static let moved: UInt16 = 4302

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4): 1000–1003, 1007–1014 and 3000–4999.
    /// 1004–1006 and 1015 are reserved for local use and must never be on the wire.
    public static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}
