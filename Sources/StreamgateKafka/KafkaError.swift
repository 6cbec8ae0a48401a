import CRDKafka

/// An error reported by librdkafka, or by the wrapper around it.
///
/// A struct over librdkafka's numeric error code so that new codes never break callers.
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value.
    public let code: Int32
    /// Human-readable explanation.
    public let message: String
    /// The handle this error came from can no longer be used.
    public let isFatal: Bool

    public init(code: Int32, message: String, isFatal: Bool = false) {
        self.code = code
        self.message = message
        self.isFatal = isFatal
    }

    init(_ err: rd_kafka_resp_err_t, message: String? = nil, isFatal: Bool = false) {
        self.code = err.rawValue
        self.message = message ?? String(cString: rd_kafka_err2str(err))
        self.isFatal = isFatal
    }

    /// librdkafka's symbolic name of the code, such as `_MSG_TIMED_OUT`.
    public var name: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code))) }

    /// The local producer queue is full: back off, do not drop.
    public var isQueueFull: Bool { code == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue }

    /// The requested offset is outside the partition's retained log. With `auto.offset.reset=error`
    /// librdkafka reports this as `_AUTO_OFFSET_RESET`.
    public var isOffsetOutOfRange: Bool {
        code == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE.rawValue || code == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET.rawValue
    }

    /// The wrapper's own misuse errors (configuration, arguments).
    public static func invalidArgument(_ message: String) -> KafkaError {
        KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, message: message)
    }

    public static func timedOut(_ message: String) -> KafkaError {
        KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, message: message)
    }

    public var description: String { "\(name): \(message)" }
}

/// Reads a NUL-terminated error buffer filled by librdkafka.
func string(fromErrorBuffer buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
