/// Decides how a Kafka record's value travels in a frame (PROTOCOL §2): as `data` when it is JSON, as
/// `data_b64` otherwise, so that every frame is valid JSON whoever wrote the record.
public enum RecordPayloadClassifier {
    /// - Parameter contentType: the record's `content-type` header, if any. Without one, a value that is
    ///   valid JSON is JSON.
    public static func classify(value: UnsafeRawBufferPointer, contentType: UnsafeRawBufferPointer?)
        -> ServerFrameEncoder.RecordPayload
    {
        let declaredBinary = contentType.map { !isJSONContentType($0) } ?? false
        if !declaredBinary, value.count > 0, UTF8Validation.isValid(value), JSONScanner.isValid(value) {
            return .json(value)
        }
        return .binary(value)
    }

    /// `application/json`, with parameters, or any `+json` type.
    static func isJSONContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        let text = String(decoding: value, as: UTF8.self).lowercased()
        let essence = text.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces() } ?? ""
        return essence == "application/json" || essence.hasSuffix("+json")
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
