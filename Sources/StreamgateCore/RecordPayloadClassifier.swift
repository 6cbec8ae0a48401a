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

    /// `application/json`, with parameters, or any `+json` type; compared as bytes, without allocating.
    static func isJSONContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        var end = value.firstIndex(of: UInt8(ascii: ";")) ?? value.count
        var start = 0
        while start < end, value[start] == UInt8(ascii: " ") { start += 1 }
        while end > start, value[end - 1] == UInt8(ascii: " ") { end -= 1 }
        let essence = UnsafeRawBufferPointer(rebasing: value[start..<end])
        return equalsIgnoringCase(essence, "application/json") || hasSuffixIgnoringCase(essence, "+json")
    }

    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ ascii: StaticString) -> Bool {
        bytes.count == ascii.utf8CodeUnitCount && hasSuffixIgnoringCase(bytes, ascii)
    }

    private static func hasSuffixIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ ascii: StaticString) -> Bool {
        let count = ascii.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let base = bytes.count - count
        for index in 0..<count {
            let byte = bytes[base + index]
            let lower = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if lower != ascii.utf8Start[index] { return false }
        }
        return true
    }
}
