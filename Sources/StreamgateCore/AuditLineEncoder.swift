/// One JSON object per record, as `streamgate replay` prints them for auditors and batch tools:
/// `{"channel","partition","offset","ts","headers":{…},"data"|"data_b64"}`.
public enum AuditLineEncoder {
    public static func line(
        channel: UnsafeRawBufferPointer, partition: Int32, offset: Int64, timestamp: Int64,
        headers: [(name: String, value: [UInt8])], payload: ServerFrameEncoder.RecordPayload
    ) -> [UInt8] {
        var out = Array(#"{"channel":"#.utf8)
        ServerFrameEncoder.appendString(&out, bytes: channel)
        out.append(contentsOf: #","partition":"#.utf8)
        ServerFrameEncoder.appendInteger(&out, Int64(partition))
        out.append(contentsOf: #","offset":"#.utf8)
        ServerFrameEncoder.appendInteger(&out, offset)
        out.append(contentsOf: #","ts":"#.utf8)
        ServerFrameEncoder.appendInteger(&out, timestamp)
        out.append(contentsOf: #","headers":{"#.utf8)
        for (index, header) in headers.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            ServerFrameEncoder.appendString(&out, header.name)
            out.append(UInt8(ascii: ":"))
            header.value.withUnsafeBytes { ServerFrameEncoder.appendString(&out, bytes: $0) }
        }
        out.append(UInt8(ascii: "}"))
        ServerFrameEncoder.appendPayload(&out, payload)
        out.append(UInt8(ascii: "}"))
        return out
    }
}
