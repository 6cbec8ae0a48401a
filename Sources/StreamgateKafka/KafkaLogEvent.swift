import CRDKafka
import Logging

/// Forwards librdkafka's log and error events to a swift-log `Logger`.
enum KafkaLogEvent {
    /// Logs a `RD_KAFKA_EVENT_LOG` event at the matching level.
    static func log(_ event: OpaquePointer, to logger: Logger) {
        var facility: UnsafePointer<CChar>?
        var text: UnsafePointer<CChar>?
        var level: Int32 = 0
        guard rd_kafka_event_log(event, &facility, &text, &level) == 0, let text else { return }
        let message = Logger.Message(stringLiteral: String(cString: text))
        let metadata: Logger.Metadata = ["kafka.facility": .string(facility.map { String(cString: $0) } ?? "")]
        switch level {
        case ...3: logger.error(message, metadata: metadata)
        case 4: logger.warning(message, metadata: metadata)
        case 5, 6: logger.info(message, metadata: metadata)
        default: logger.debug(message, metadata: metadata)
        }
    }

    /// Reads a `RD_KAFKA_EVENT_ERROR` event.
    static func error(_ event: OpaquePointer) -> KafkaError {
        let code = rd_kafka_event_error(event)
        let text = rd_kafka_event_error_string(event).map { String(cString: $0) }
        return KafkaError(code, message: text, isFatal: rd_kafka_event_error_is_fatal(event) != 0)
    }
}
