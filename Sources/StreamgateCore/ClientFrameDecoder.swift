import Foundation

/// Turns a text frame into a ``ClientRequest``, or the ``RequestError`` to answer with.
public struct ClientFrameDecoder: Sendable {
    /// Largest payload accepted in a publish (the `data` JSON text or the decoded `data_b64`).
    public var maxPayloadBytes: Int

    public init(maxPayloadBytes: Int) {
        self.maxPayloadBytes = maxPayloadBytes
    }

    public func decode(_ bytes: UnsafeRawBufferPointer) -> Result<ClientRequest, RequestError> {
        let members: [(key: String, value: JSONScanner.Value)]
        do {
            members = try JSONScanner.objectMembers(bytes)
        } catch {
            if let kind = JSONScanner.topLevelKind(bytes) {
                return .failure(RequestError(id: nil, code: .badRequest, message: "a frame must be a JSON object, not \(kind)"))
            }
            return .failure(RequestError(id: nil, code: .badRequest, message: "malformed JSON: \(error)"))
        }
        var fields: [String: JSONScanner.Value] = [:]
        for member in members {
            if fields.updateValue(member.value, forKey: member.key) != nil {
                return .failure(RequestError(id: nil, code: .badRequest, message: "duplicate member \"\(member.key)\""))
            }
        }
        var reader = FieldReader(bytes: bytes, fields: fields)
        do {
            reader.id = try reader.requestID()
            guard let type = try reader.string("type") else { throw reader.error("missing \"type\"") }
            switch type {
            case "auth":
                guard let token = try reader.string("token"), !token.isEmpty else { throw reader.error("missing \"token\"") }
                return .success(.auth(id: reader.id, token: token))
            case "subscribe":
                let channel = try reader.requiredChannel()
                let from = try reader.startPosition()
                return .success(.subscribe(id: reader.id, channel: channel, from: from))
            case "unsubscribe":
                return .success(.unsubscribe(id: reader.id, channel: try reader.requiredChannel()))
            case "publish":
                let channel = try reader.channel()
                let payload = try reader.payload(maxBytes: maxPayloadBytes)
                let msgId = try reader.string("msgId")
                if let msgId, !PublishFieldRules.isValidMessageID(msgId) {
                    throw reader.error("\"msgId\" must be 1 to \(PublishFieldRules.maxMessageIDBytes) bytes with no control characters")
                }
                let traceparent = try reader.string("traceparent")
                if let traceparent, !PublishFieldRules.isValidTraceparent(traceparent) {
                    throw reader.error("\"traceparent\" must be a W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>, lower case")
                }
                return .success(.publish(id: reader.id, channel: channel, payload: payload, msgId: msgId,
                                         traceparent: traceparent))
            default:
                throw reader.error("unknown type \"\(type)\"")
            }
        } catch let error as RequestError {
            return .failure(error)
        } catch {
            return .failure(RequestError(id: reader.id, code: .badRequest, message: "\(error)"))
        }
    }
}

/// Reads typed fields out of a scanned object.
private struct FieldReader {
    let bytes: UnsafeRawBufferPointer
    let fields: [String: JSONScanner.Value]
    var id: RequestID?

    func error(_ message: String, code: ErrorCode = .badRequest) -> RequestError {
        RequestError(id: id, code: code, message: message)
    }

    func requestID() throws -> RequestID? {
        guard let value = fields["id"] else { return nil }
        let json = Array(bytes[value.range])
        switch value.kind {
        case .string where value.range.count <= 130:
            return RequestID(json: json)
        case .number where JSONScanner.decodeInt64(bytes, value.range) != nil:
            return RequestID(json: json)
        default:
            throw RequestError(id: nil, code: .badRequest, message: "\"id\" must be a string of at most 128 bytes or an integer")
        }
    }

    func string(_ name: String) throws -> String? {
        guard let value = fields[name] else { return nil }
        guard value.kind == .string else { throw error("\"\(name)\" must be a string") }
        return try JSONScanner.decodeString(bytes, value.range)
    }

    func channel() throws -> ChannelName? {
        guard let name = try string("channel") else { return nil }
        guard let channel = ChannelName(name) else {
            throw error("invalid channel name: 1 to 200 bytes of [A-Za-z0-9._~:@/-]")
        }
        return channel
    }

    func requiredChannel() throws -> ChannelName {
        guard let channel = try channel() else { throw error("missing \"channel\"") }
        return channel
    }

    func startPosition() throws -> StartPosition {
        guard let value = fields["from"] else { return .latest }
        switch value.kind {
        case .string:
            switch try JSONScanner.decodeString(bytes, value.range) {
            case "latest": return .latest
            case "earliest": return .earliest
            default: throw error("\"from\" must be \"latest\", \"earliest\", {\"offset\":N} or {\"time\":\"RFC3339\"}")
            }
        case .object:
            let inner = try JSONScanner.objectMembers(UnsafeRawBufferPointer(rebasing: bytes[value.range]))
            let slice = UnsafeRawBufferPointer(rebasing: bytes[value.range])
            var offset: Int64?
            var partition: Int32?
            var time: Int64?
            for member in inner {
                switch (member.key, member.value.kind) {
                case ("offset", .number):
                    guard let number = JSONScanner.decodeInt64(slice, member.value.range), number >= 0 else {
                        throw error("\"from.offset\" must be a non-negative integer")
                    }
                    offset = number
                case ("partition", .number):
                    guard let number = JSONScanner.decodeInt64(slice, member.value.range), number >= 0,
                        number <= Int64(Int32.max)
                    else { throw error("\"from.partition\" must be a non-negative integer") }
                    partition = Int32(number)
                case ("time", .string):
                    let text = try JSONScanner.decodeString(slice, member.value.range)
                    guard let milliseconds = RFC3339.milliseconds(text) else {
                        throw error("\"from.time\" must be an RFC 3339 date-time")
                    }
                    time = milliseconds
                default:
                    throw error("unexpected \"from.\(member.key)\" (or wrong type)")
                }
            }
            switch (offset, partition, time) {
            case (let offset?, let partition, nil): return .offset(offset, partition: partition)
            case (nil, nil, let time?): return .time(milliseconds: time)
            default: throw error("\"from\" takes either {\"offset\":N[,\"partition\":P]} or {\"time\":\"RFC3339\"}")
            }
        default:
            throw error("\"from\" must be \"latest\", \"earliest\", {\"offset\":N} or {\"time\":\"RFC3339\"}")
        }
    }

    func payload(maxBytes: Int) throws -> Payload {
        switch (fields["data"], fields["data_b64"]) {
        case (let data?, nil):
            guard data.range.count <= maxBytes else {
                throw error("payload of \(data.range.count) bytes is over the limit of \(maxBytes)", code: .tooLarge)
            }
            return .json(Array(bytes[data.range]))
        case (nil, let encoded?):
            guard encoded.kind == .string else { throw error("\"data_b64\" must be a base64 string") }
            guard (encoded.range.count - 2) / 4 * 3 <= maxBytes + 3 else {
                throw error("payload is over the limit of \(maxBytes) bytes", code: .tooLarge)
            }
            let text = try JSONScanner.decodeString(bytes, encoded.range)
            guard let decoded = Data(base64Encoded: text) else { throw error("\"data_b64\" is not valid base64") }
            guard decoded.count <= maxBytes else {
                throw error("payload of \(decoded.count) bytes is over the limit of \(maxBytes)", code: .tooLarge)
            }
            return .binary(Array(decoded))
        case (nil, nil):
            throw error("a publish needs \"data\" or \"data_b64\"")
        case (_?, _?):
            throw error("a publish takes \"data\" or \"data_b64\", not both")
        }
    }
}
