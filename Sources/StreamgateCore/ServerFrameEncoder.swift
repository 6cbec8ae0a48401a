/// Writes server frames (PROTOCOL §5) as compact JSON text, appending to a byte array.
///
/// Payloads are copied as the JSON text that was published, never re-serialised.
public enum ServerFrameEncoder {
    /// What a delivered record carries.
    public enum RecordPayload {
        /// The value is JSON text: sent as `data`.
        case json(UnsafeRawBufferPointer)
        /// Any other bytes: sent base64-encoded as `data_b64`.
        case binary(UnsafeRawBufferPointer)
    }

    /// A gap announced in `subscribed` or in a `gap` frame.
    public struct Gap: Sendable, Equatable {
        public var from: Int64
        public var to: Int64
        public var reason: String
        public init(from: Int64, to: Int64, reason: String) {
            self.from = from
            self.to = to
            self.reason = reason
        }
    }

    public static func message(
        into out: inout [UInt8], channel: UnsafeRawBufferPointer, offset: Int64, timestamp: Int64,
        payload: RecordPayload, msgId: UnsafeRawBufferPointer?, sender: UnsafeRawBufferPointer?,
        traceparent: UnsafeRawBufferPointer? = nil
    ) {
        out.append(contentsOf: #"{"type":"message","channel":"#.utf8)
        appendString(&out, bytes: channel)
        out.append(contentsOf: #","offset":"#.utf8)
        appendInteger(&out, offset)
        out.append(contentsOf: #","ts":"#.utf8)
        appendInteger(&out, timestamp)
        appendPayload(&out, payload)
        if let msgId {
            out.append(contentsOf: #","msgId":"#.utf8)
            appendString(&out, bytes: msgId)
        }
        if let sender {
            out.append(contentsOf: #","sender":"#.utf8)
            appendString(&out, bytes: sender)
        }
        if let traceparent {
            out.append(contentsOf: #","traceparent":"#.utf8)
            appendString(&out, bytes: traceparent)
        }
        out.append(UInt8(ascii: "}"))
    }

    public static func ack(id: RequestID?, channel: ChannelName, partition: Int32, offset: Int64?) -> [UInt8] {
        var out = header("ack", id: id)
        out.append(contentsOf: #","channel":"#.utf8)
        appendString(&out, channel.value)
        out.append(contentsOf: #","partition":"#.utf8)
        appendInteger(&out, Int64(partition))
        out.append(contentsOf: #","offset":"#.utf8)
        if let offset { appendInteger(&out, offset) } else { out.append(contentsOf: "null".utf8) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// - Parameter persisted: `"no"` or `"unknown"`.
    public static func nack(id: RequestID?, code: ErrorCode, message: String, persisted: String) -> [UInt8] {
        var out = header("nack", id: id)
        out.append(contentsOf: #","code":"#.utf8)
        appendString(&out, code.rawValue)
        out.append(contentsOf: #","message":"#.utf8)
        appendString(&out, message)
        out.append(contentsOf: #","persisted":"#.utf8)
        appendString(&out, persisted)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func error(_ error: RequestError) -> [UInt8] {
        var out = header("error", id: error.id)
        out.append(contentsOf: #","code":"#.utf8)
        appendString(&out, error.code.rawValue)
        out.append(contentsOf: #","message":"#.utf8)
        appendString(&out, error.message)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func subscribed(id: RequestID?, channel: ChannelName, partition: Int32, offset: Int64, head: Int64,
                                  gap: Gap?) -> [UInt8] {
        var out = header("subscribed", id: id)
        out.append(contentsOf: #","channel":"#.utf8)
        appendString(&out, channel.value)
        out.append(contentsOf: #","partition":"#.utf8)
        appendInteger(&out, Int64(partition))
        out.append(contentsOf: #","offset":"#.utf8)
        appendInteger(&out, offset)
        out.append(contentsOf: #","head":"#.utf8)
        appendInteger(&out, head)
        if let gap {
            out.append(contentsOf: #","recovered":false,"gap":"#.utf8)
            appendGap(&out, gap)
        } else {
            out.append(contentsOf: #","recovered":true"#.utf8)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `moved` (PROTOCOL §9): the affinity channel is served at `url`; `offset` is the next offset this node
    /// would have delivered (present when ownership moved under a live subscription).
    public static func moved(id: RequestID?, channel: ChannelName, url: String, offset: Int64?) -> [UInt8] {
        var out = header("moved", id: id)
        out.append(contentsOf: #","channel":"#.utf8)
        appendString(&out, channel.value)
        out.append(contentsOf: #","url":"#.utf8)
        appendString(&out, url)
        if let offset {
            out.append(contentsOf: #","offset":"#.utf8)
            appendInteger(&out, offset)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func unsubscribed(id: RequestID?, channel: ChannelName) -> [UInt8] {
        var out = header("unsubscribed", id: id)
        out.append(contentsOf: #","channel":"#.utf8)
        appendString(&out, channel.value)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A token was accepted (PROTOCOL §8): who the connection now speaks for, until when.
    public static func authed(id: RequestID?, subject: String, expiresAt: Int64) -> [UInt8] {
        var out = header("authed", id: id)
        out.append(contentsOf: #","sub":"#.utf8)
        appendString(&out, subject)
        out.append(contentsOf: #","exp":"#.utf8)
        appendInteger(&out, expiresAt)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// A discontinuity discovered after `subscribed` (records pruned before this subscriber read them).
    public static func gap(channel: ChannelName, _ gap: Gap) -> [UInt8] {
        var out = Array(#"{"type":"gap","channel":"#.utf8)
        appendString(&out, channel.value)
        appendGapMembers(&out, gap)
        out.append(UInt8(ascii: "}"))
        return out
    }

    // MARK: - Pieces

    private static func header(_ type: String, id: RequestID?) -> [UInt8] {
        var out = Array(#"{"type":""#.utf8)
        out.append(contentsOf: type.utf8)
        out.append(UInt8(ascii: "\""))
        if let id {
            out.append(contentsOf: #","id":"#.utf8)
            out.append(contentsOf: id.json)
        }
        return out
    }

    private static func appendGap(_ out: inout [UInt8], _ gap: Gap) {
        out.append(UInt8(ascii: "{"))
        appendGapMembers(&out, gap, leadingComma: false)
        out.append(UInt8(ascii: "}"))
    }

    private static func appendGapMembers(_ out: inout [UInt8], _ gap: Gap, leadingComma: Bool = true) {
        if leadingComma { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: #""from":"#.utf8)
        appendInteger(&out, gap.from)
        out.append(contentsOf: #","to":"#.utf8)
        appendInteger(&out, gap.to)
        out.append(contentsOf: #","reason":"#.utf8)
        appendString(&out, gap.reason)
    }

    /// Appends `,"data":<json>` or `,"data_b64":"<base64>"`.
    static func appendPayload(_ out: inout [UInt8], _ payload: RecordPayload) {
        switch payload {
        case .json(let bytes):
            out.append(contentsOf: #","data":"#.utf8)
            out.append(contentsOf: bytes)
        case .binary(let bytes):
            out.append(contentsOf: #","data_b64":""#.utf8)
            out.append(contentsOf: Base64.encode(bytes))
            out.append(UInt8(ascii: "\""))
        }
    }

    /// Decimal digits, written without an intermediate string (this runs for every delivered record).
    static func appendInteger(_ out: inout [UInt8], _ value: Int64) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let start = out.count
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        out[start...].reverse()
    }

    static func appendString(_ out: inout [UInt8], _ string: String) {
        var string = string
        string.withUTF8 { appendString(&out, bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Appends `bytes` as a JSON string; invalid UTF-8 is replaced by U+FFFD.
    static func appendString(_ out: inout [UInt8], bytes: UnsafeRawBufferPointer) {
        guard UTF8Validation.isValid(bytes) else {
            appendString(&out, String(decoding: bytes, as: UTF8.self))
            return
        }
        out.append(UInt8(ascii: "\""))
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0a: out.append(contentsOf: #"\n"#.utf8)
            case 0x0d: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xf)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
