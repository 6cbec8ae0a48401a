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
        record.forEachHeader { name, value in
            switch headerName(name) {
            case .contentType: contentType = value
            case .msgId: msgId = value
            case .sender: sender = value
            case .other: break
            }
        }
        let value = record.value
        let payload = RecordPayloadClassifier.classify(value: value, contentType: contentType)
        var out: [UInt8] = []
        out.reserveCapacity(value.count + record.key.count + 96)
        ServerFrameEncoder.message(
            into: &out, channel: record.key, offset: record.offset, timestamp: record.timestampMilliseconds,
            payload: payload, msgId: msgId, sender: sender)
        return out
    }

    private enum HeaderName { case contentType, msgId, sender, other }

    private static func headerName(_ name: UnsafePointer<CChar>) -> HeaderName {
        switch UInt8(bitPattern: name[0]) {
        case UInt8(ascii: "c"): return strcmp(name, "content-type") == 0 ? .contentType : .other
        case UInt8(ascii: "s"):
            if strcmp(name, "sg-msg-id") == 0 { return .msgId }
            if strcmp(name, "sg-sender") == 0 { return .sender }
            return .other
        default: return .other
        }
    }
}
