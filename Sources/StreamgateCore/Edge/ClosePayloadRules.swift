/// The payload of a close frame from a client (RFC 6455 §5.5.1, §7.4).
public enum ClosePayloadRules {
    /// Reads a close frame's payload.
    ///
    /// Empty → `.success(nil)` (no code given). One byte → 1002. Otherwise a big-endian code and a UTF-8 reason:
    /// a code a peer may not send (``CloseCode/isValidReceived(_:)``: below 1000, 1004–1006, 1015, 1016–2999,
    /// 5000 and above) → 1002; a reason that is not valid UTF-8 → 1007.
    /// - Parameter payload: the unmasked payload (at most 125 bytes after ``InboundFrameRules/admit(_:)``).
    /// - Returns: the code and reason, `nil` for an empty payload, or the violation to close with.
    public static func parse(_ payload: UnsafeRawBufferPointer) -> Result<
        (code: UInt16, reason: String)?, FrameViolation
    > {
        guard payload.count > 0 else { return .success(nil) }
        guard payload.count >= 2 else {
            return .failure(.protocolError("close payload of one byte"))
        }
        let code = UInt16(payload[0]) << 8 | UInt16(payload[1])
        guard CloseCode.isValidReceived(code) else {
            return .failure(.protocolError("invalid close code \(code)"))
        }
        let reason = UnsafeRawBufferPointer(rebasing: payload[2...])
        guard UTF8Validation.isValid(reason) else {
            return .failure(FrameViolation(closeCode: CloseCode.invalidUTF8, reason: "close reason is not valid UTF-8"))
        }
        return .success((code, String(decoding: reason, as: UTF8.self)))
    }
}
