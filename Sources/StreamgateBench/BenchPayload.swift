import StreamgateCore

/// Payloads of an exact size. Timestamped ones carry the intended send time (monotonic nanoseconds of the
/// bench process) so a receiver in the same process can measure latency from it.
enum BenchPayload {
    /// A JSON string token of exactly `size` bytes (at least 2).
    static func padded(size: Int) -> [UInt8] {
        [UInt8(ascii: "\"")] + [UInt8](repeating: UInt8(ascii: "x"), count: max(0, size - 2)) + [UInt8(ascii: "\"")]
    }

    /// `{"t":NANOS,"p":"xxx…"}`, padded to `size` bytes when there is room.
    static func timestamped(_ nanoseconds: UInt64, size: Int) -> [UInt8] {
        var out = Array(#"{"t":"#.utf8)
        out.reserveCapacity(max(size, 40))
        out.append(contentsOf: String(nanoseconds).utf8)
        out.append(contentsOf: #","p":""#.utf8)
        let padding = max(0, size - out.count - 2)
        out.append(contentsOf: repeatElement(UInt8(ascii: "x"), count: padding))
        out.append(contentsOf: #""}"#.utf8)
        return out
    }

    /// The `t` member of a timestamped payload.
    static func timestamp(in json: UnsafeRawBufferPointer) -> UInt64? {
        guard let members = try? JSONScanner.objectMembers(json),
            let t = members.first(where: { $0.key == "t" }), t.value.kind == .number,
            let value = JSONScanner.decodeInt64(json, t.value.range), value >= 0
        else { return nil }
        return UInt64(value)
    }
}
