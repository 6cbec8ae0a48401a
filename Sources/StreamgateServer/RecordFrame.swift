import StreamgateCore
import StreamgateKafka

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Encodes a consumed record as a `message` frame, once, for every subscriber of its channel.
enum RecordFrame {
    /// Builds the frame's JSON text from a borrowed record.
    ///
    /// `data` carries the value when its content type is JSON (or absent) and the bytes are valid JSON;
    /// anything else travels as `data_b64`, so a frame is always valid JSON.
    static func encode(_ record: KafkaRecordView) -> [UInt8] {
        var contentType: UnsafeRawBufferPointer?
        var msgId: UnsafeRawBufferPointer?
        var sender: UnsafeRawBufferPointer?
        var traceparent: UnsafeRawBufferPointer?
        record.forEachHeader { name, value in
            switch RecordHeaders.known(UnsafeRawBufferPointer(start: name, count: strlen(name))) {
            case .contentType: contentType = value
            case .msgID: msgId = value
            case .sender: sender = value
            // Back to the subscribers as it travelled, when it is a W3C trace context (any producer writes
            // headers; a malformed one is left out rather than passed on).
            case .traceparent:
                if PublishFieldRules.isValidTraceparent(String(decoding: value, as: UTF8.self)) {
                    traceparent = value
                }
            case .connection, .node, nil: break
            }
        }
        let value = record.value
        let payload = RecordPayloadClassifier.classify(value: value, contentType: contentType)
        var out: [UInt8] = []
        out.reserveCapacity(value.count + record.key.count + 96)
        ServerFrameEncoder.message(
            into: &out, channel: record.key, offset: record.offset, timestamp: record.timestampMilliseconds,
            payload: payload, msgId: msgId, sender: sender, traceparent: traceparent)
        return out
    }
}
