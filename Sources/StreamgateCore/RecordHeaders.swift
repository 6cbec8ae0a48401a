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

    /// - Parameters:
    ///   - contentType: `application/json` or `application/octet-stream`.
    ///   - msgID: the client's idempotency key, if it gave one.
    ///   - sender: the authenticated subject, or `anonymous`.
    ///   - connection: the connection id.
    ///   - node: the gateway node id.
    ///   - traceparent: the trace context the client supplied, if any.
    public init(
        contentType: String, msgID: String? = nil, sender: String, connection: String, node: String,
        traceparent: String? = nil
    ) {
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
        var fields: [(name: String, value: String)] = []
        fields.reserveCapacity(6)
        fields.append((Name.contentType, contentType))
        fields.append((Name.sender, sender))
        fields.append((Name.connection, connection))
        fields.append((Name.node, node))
        if let msgID { fields.append((Name.msgID, msgID)) }
        if let traceparent { fields.append((Name.traceparent, traceparent)) }
        return fields
    }

    /// One of the contract's headers.
    public enum Known: Sendable { case contentType, msgID, sender, connection, node, traceparent }

    /// Which of the contract's headers a raw header name is (exact, case-sensitive bytes); no allocation.
    ///
    /// - Parameters:
    ///   - name: the header name's bytes, without a terminating NUL.
    public static func known(_ name: UnsafeRawBufferPointer) -> Known? {
        if matches(Name.contentType, name) { return .contentType }
        if matches(Name.sender, name) { return .sender }
        if matches(Name.connection, name) { return .connection }
        if matches(Name.node, name) { return .node }
        if matches(Name.msgID, name) { return .msgID }
        if matches(Name.traceparent, name) { return .traceparent }
        return nil
    }

    /// Byte equality by hand over the literal's own storage: this runs for every header of every record read,
    /// and generic sequence comparisons (or a loop over a collection of names) allocate in unoptimised builds.
    private static func matches(_ literal: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
        // The names are literals: their UTF-8 count is stored, so lengths rule out most candidates for free,
        // and `withUTF8` lends their contiguous bytes without copying.
        guard literal.utf8.count == bytes.count else { return false }
        var literal = literal
        return literal.withUTF8 { utf8 in
            for index in 0..<utf8.count where utf8[index] != bytes[index] { return false }
            return true
        }
    }
}
