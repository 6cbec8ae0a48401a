/// A request frame from a client (PROTOCOL §4), validated.
public enum ClientRequest: Sendable, Equatable {
    case auth(id: RequestID?, token: String)
    case subscribe(id: RequestID?, channel: ChannelName, from: StartPosition)
    case unsubscribe(id: RequestID?, channel: ChannelName)
    /// `channel` is `nil` when the frame omitted it (allowed on a connection bound to one channel).
    case publish(id: RequestID?, channel: ChannelName?, payload: Payload, msgId: String?, traceparent: String?)

    public var id: RequestID? {
        switch self {
        case .auth(let id, _), .subscribe(let id, _, _), .unsubscribe(let id, _), .publish(let id, _, _, _, _): id
        }
    }
}

/// A request's `id`, kept as the JSON text the client sent (a string or an integer) so it is echoed exactly.
public struct RequestID: Sendable, Hashable {
    /// The id's JSON text, such as `7` or `"a-1"`.
    public let json: [UInt8]
    public init(json: [UInt8]) { self.json = json }
}

/// A published payload.
public enum Payload: Sendable, Equatable {
    /// The `data` value's JSON text exactly as the client sent it.
    case json([UInt8])
    /// The decoded bytes of `data_b64`.
    case binary([UInt8])

    public var bytes: [UInt8] {
        switch self {
        case .json(let bytes), .binary(let bytes): bytes
        }
    }

    public var contentType: String {
        switch self {
        case .json: "application/json"
        case .binary: "application/octet-stream"
        }
    }
}

/// Why a frame was refused: the error to send back, with the request's id when it could be read.
public struct RequestError: Error, Sendable, Equatable {
    public var id: RequestID?
    public var code: ErrorCode
    public var message: String

    public init(id: RequestID?, code: ErrorCode, message: String) {
        self.id = id
        self.code = code
        self.message = message
    }
}
