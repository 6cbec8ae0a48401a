/// One JSON object per record, as `streamgate replay` prints them for auditors and batch tools:
/// `{"channel","partition","offset","ts","headers":{…},"data"|"data_b64"}`.
///
/// JSON data is copied as stored except that line breaks become spaces, so each record stays on one line.
/// That changes no value: in valid JSON a raw line break can only be white space between tokens.
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
        let payloadStart = out.count
        ServerFrameEncoder.appendPayload(&out, payload)
        if case .json = payload {
            for index in payloadStart..<out.count where out[index] == 0x0a || out[index] == 0x0d { out[index] = 0x20 }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
