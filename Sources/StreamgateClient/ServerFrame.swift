import NIOCore
import StreamgateCore

/// One frame from the server: its raw JSON text, and light parsing on demand.
///
/// ``kind`` is found cheaply (the server writes `"type"` first); ``fields()`` scans the whole frame once with
/// `JSONScanner` and returns the members a client routes on. Payloads are not decoded: ``Fields/data`` is the
/// byte range of the `data` value in ``bytes``, to be read in place.
public struct ServerFrame: Sendable {
    /// The frame's `type`.
    public enum Kind: Sendable, Hashable {
        case message, ack, nack, subscribed, unsubscribed, error, gap, moved, authed
        /// A type this library does not know, or a frame that is not a JSON object with a `type` string.
        case other
    }

    /// A request id echoed by the server: an integer or a string.
    public enum ID: Sendable, Hashable {
        case int(Int64)
        case string(String)
    }

    /// The members of a frame that clients route and resume on. Absent members are `nil`.
    public struct Fields: Sendable {
        public var type: String
        public var id: ID?
        public var channel: String?
        public var partition: Int32?
        /// `offset` of a message, ack or subscribed frame.
        public var offset: Int64?
        public var head: Int64?
        /// `ts` of a message frame (milliseconds since the epoch).
        public var timestamp: Int64?
        public var recovered: Bool?
        public var code: String?
        public var message: String?
        public var persisted: String?
        /// `from`/`to`/`reason` of a gap frame, or of the `gap` object of a subscribed frame.
        public var gap: SubscribeReply.Gap?
        /// Byte range of the `data` value's JSON text within the frame's readable bytes.
        public var data: Range<Int>?
        /// Byte range of the `data_b64` string token (quotes included) within the frame's readable bytes.
        public var dataBase64: Range<Int>?
    }

    /// The frame's JSON text.
    public let bytes: ByteBuffer
    /// The frame's type.
    public let kind: Kind

    /// Wraps one text frame's payload.
    public init(bytes: ByteBuffer) {
        self.bytes = bytes
        self.kind = bytes.withUnsafeReadableBytes { Self.quickKind($0) } ?? Self.slowKind(bytes)
    }

    /// The frame as a string.
    public var text: String { String(buffer: bytes) }

    /// Scans the frame with `JSONScanner` and returns its routing members.
    ///
    /// - Throws: `JSONScanner.Failure` when the frame is not a JSON object.
    public func fields() throws -> Fields {
        try bytes.withUnsafeReadableBytes { try Self.fields(of: $0) }
    }

    /// Calls `body` with the `data` value's JSON text, in place; `nil` when the frame has no `data`.
    public func withData<R>(_ fields: Fields, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard let range = fields.data else { return nil }
        return try bytes.withUnsafeReadableBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    static func fields(of raw: UnsafeRawBufferPointer) throws -> Fields {
        var fields = Fields(type: "")
        for (key, value) in try JSONScanner.objectMembers(raw) {
            switch (key, value.kind) {
            case ("type", .string): fields.type = try JSONScanner.decodeString(raw, value.range)
            case ("id", .number): fields.id = JSONScanner.decodeInt64(raw, value.range).map(ID.int)
            case ("id", .string): fields.id = .string(try JSONScanner.decodeString(raw, value.range))
            case ("channel", .string): fields.channel = try JSONScanner.decodeString(raw, value.range)
            case ("partition", .number):
                fields.partition = JSONScanner.decodeInt64(raw, value.range).map { Int32(truncatingIfNeeded: $0) }
            case ("offset", .number): fields.offset = JSONScanner.decodeInt64(raw, value.range)
            case ("head", .number): fields.head = JSONScanner.decodeInt64(raw, value.range)
            case ("ts", .number): fields.timestamp = JSONScanner.decodeInt64(raw, value.range)
            case ("recovered", .bool): fields.recovered = raw[value.range.lowerBound] == UInt8(ascii: "t")
            case ("code", .string): fields.code = try JSONScanner.decodeString(raw, value.range)
            case ("message", .string): fields.message = try JSONScanner.decodeString(raw, value.range)
            case ("persisted", .string): fields.persisted = try JSONScanner.decodeString(raw, value.range)
            case ("gap", .object): fields.gap = try gap(in: UnsafeRawBufferPointer(rebasing: raw[value.range]))
            case ("data", _): fields.data = value.range
            case ("data_b64", .string): fields.dataBase64 = value.range
            default: break
            }
        }
        if fields.type == "gap" { fields.gap = try gap(in: raw) }
        return fields
    }

    private static func gap(in raw: UnsafeRawBufferPointer) throws -> SubscribeReply.Gap? {
        var from: Int64?
        var to: Int64?
        var reason = ""
        for (key, value) in try JSONScanner.objectMembers(raw) {
            switch (key, value.kind) {
            case ("from", .number): from = JSONScanner.decodeInt64(raw, value.range)
            case ("to", .number): to = JSONScanner.decodeInt64(raw, value.range)
            case ("reason", .string): reason = try JSONScanner.decodeString(raw, value.range)
            default: break
            }
        }
        guard let from, let to else { return nil }
        return SubscribeReply.Gap(from: from, to: to, reason: reason)
    }

    // MARK: - Kind

    private static let typePrefix = Array(#"{"type":""#.utf8)

    /// Reads the type when the frame starts `{"type":"…"` (the gateway always writes it first); `nil` otherwise.
    static func quickKind(_ raw: UnsafeRawBufferPointer) -> Kind? {
        let prefix = typePrefix.count
        guard raw.count > prefix + 2 else { return nil }
        for index in 0..<prefix where raw[index] != typePrefix[index] { return nil }
        var end = prefix
        while end < raw.count, end - prefix <= 12, raw[end] != UInt8(ascii: "\"") {
            if raw[end] == UInt8(ascii: "\\") { return nil }
            end += 1
        }
        guard end < raw.count, raw[end] == UInt8(ascii: "\"") else { return nil }
        return kind(UnsafeRawBufferPointer(rebasing: raw[prefix..<end]))
    }

    private static func slowKind(_ bytes: ByteBuffer) -> Kind {
        guard let type = try? bytes.withUnsafeReadableBytes({ try fields(of: $0) }).type else { return .other }
        return Array(type.utf8).withUnsafeBytes { kind($0) }
    }

    private static func kind(_ name: UnsafeRawBufferPointer) -> Kind {
        func equals(_ word: StaticString) -> Bool {
            word.utf8CodeUnitCount == name.count
                && (0..<name.count).allSatisfy { name[$0] == word.utf8Start[$0] }
        }
        switch name.first {
        case UInt8(ascii: "m"): return equals("message") ? .message : equals("moved") ? .moved : .other
        case UInt8(ascii: "a"): return equals("ack") ? .ack : equals("authed") ? .authed : .other
        case UInt8(ascii: "n"): return equals("nack") ? .nack : .other
        case UInt8(ascii: "s"): return equals("subscribed") ? .subscribed : .other
        case UInt8(ascii: "u"): return equals("unsubscribed") ? .unsubscribed : .other
        case UInt8(ascii: "e"): return equals("error") ? .error : .other
        case UInt8(ascii: "g"): return equals("gap") ? .gap : .other
        default: return .other
        }
    }
}
