/// The headers the gateway writes on every record it produces (PROTOCOL §2): what auditors, batch jobs and
/// the gateway's own readers rely on. The names are spelled once, here.
public struct RecordHeaders: Sendable, Equatable {
    /// The header names.
    public enum Name {
        public static let contentType = "content-type"
        public static let msgID = "sg-msg-id"
        public static let sender = "sg-sender"
        public static let connection = "sg-conn"
        public static let node = "sg-node"
        public static let traceparent = "traceparent"
    }

    /// `application/json` or `application/octet-stream`.
    public var contentType: String
    /// The client's idempotency key, when it gave one.
    public var msgID: String?
    /// The authenticated subject, or `anonymous`.
    public var sender: String
    /// The connection id.
    public var connection: String
    /// The gateway node id.
    public var node: String
    /// The W3C trace context the client supplied.
    public var traceparent: String?

    public init(contentType: String, msgID: String? = nil, sender: String, connection: String, node: String,
                traceparent: String? = nil) {
        self.contentType = contentType
        self.msgID = msgID
        self.sender = sender
        self.connection = connection
        self.node = node
        self.traceparent = traceparent
    }

    /// The headers in the order they are written to a record: content-type, sg-sender, sg-conn, sg-node, then
    /// sg-msg-id and traceparent when present.
    public var fields: [(name: String, value: String)] {
        var fields = [(Name.contentType, contentType), (Name.sender, sender), (Name.connection, connection),
                      (Name.node, node)]
        if let msgID { fields.append((Name.msgID, msgID)) }
        if let traceparent { fields.append((Name.traceparent, traceparent)) }
        return fields
    }

    /// One of the contract's headers.
    public enum Known: Sendable { case contentType, msgID, sender, connection, node, traceparent }

    /// Which of the contract's headers a raw header name is; no allocation.
    public static func known(_ name: UnsafeRawBufferPointer) -> Known? {
        func equals(_ literal: StaticString) -> Bool {
            literal.utf8CodeUnitCount == name.count
                && literal.withUTF8Buffer { $0.elementsEqual(name) }
        }
        switch name.count {
        case 12: return equals("content-type") ? .contentType : nil
        case 9:
            if equals("sg-msg-id") { return .msgID }
            if equals("sg-sender") { return .sender }
            return nil
        case 7:
            if equals("sg-conn") { return .connection }
            return equals("sg-node") ? .node : nil
        case 11: return equals("traceparent") ? .traceparent : nil
        default: return nil
        }
    }
}
