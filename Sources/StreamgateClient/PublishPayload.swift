/// What a publish carries.
public enum PublishPayload: Sendable, Hashable {
    /// JSON text, sent as `data` exactly as given (the gateway stores these bytes). It must be one valid
    /// JSON value; the gateway answers anything else with `bad_request`.
    case json(String)
    /// JSON text as UTF-8 bytes, sent as `data` exactly as given. Cheapest for pre-built payloads.
    case jsonBytes([UInt8])
    /// Any bytes, sent base64-encoded as `data_b64`; the gateway stores the decoded bytes.
    case binary([UInt8])
}
