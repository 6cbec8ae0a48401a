import Foundation

/// Standard base64 (RFC 4648 §4, with padding), as `data_b64` carries it.
public enum Base64 {
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        guard bytes.count > 0 else { return [] }
        return Array(Data(bytes).base64EncodedData())
    }
}
