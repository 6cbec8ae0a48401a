import NIOCore
import StreamgateCore

/// Writes request frames (PROTOCOL §4) as compact JSON text into buffers that keep room in front for the
/// WebSocket frame header, so each frame leaves as one contiguous buffer.
enum ClientFrameEncoder {
    /// Largest WebSocket client frame header: 2 bytes, 8 of extended length, 4 of masking key.
    static let headroom = 14

    static func publish(
        id: Int64, channel: String?, payload: PublishPayload, msgId: String?,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let payloadSize: Int
        switch payload {
        case .json(let text): payloadSize = text.utf8.count
        case .jsonBytes(let bytes): payloadSize = bytes.count
        case .binary(let bytes): payloadSize = (bytes.count + 2) / 3 * 4 + 2
        }
        var buffer = start(
            allocator, capacity: 64 + (channel?.utf8.count ?? 0) + payloadSize + (msgId?.utf8.count ?? 0))
        buffer.writeStaticString(#"{"type":"publish","id":"#)
        writeInteger(&buffer, id)
        if let channel {
            buffer.writeStaticString(#","channel":"#)
            writeString(&buffer, channel)
        }
        switch payload {
        case .json(let text):
            buffer.writeStaticString(#","data":"#)
            buffer.writeString(text)
        case .jsonBytes(let bytes):
            buffer.writeStaticString(#","data":"#)
            buffer.writeBytes(bytes)
        case .binary(let bytes):
            buffer.writeStaticString(#","data_b64":""#)
            buffer.writeBytes(bytes.withUnsafeBytes { Base64.encode($0) })
            buffer.writeStaticString("\"")
        }
        if let msgId {
            buffer.writeStaticString(#","msgId":"#)
            writeString(&buffer, msgId)
        }
        buffer.writeStaticString("}")
        return buffer
    }

    static func subscribe(id: Int64, channel: String, from: SubscribeStart, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        var buffer = start(allocator, capacity: 96 + channel.utf8.count)
        buffer.writeStaticString(#"{"type":"subscribe","id":"#)
        writeInteger(&buffer, id)
        buffer.writeStaticString(#","channel":"#)
        writeString(&buffer, channel)
        buffer.writeStaticString(#","from":"#)
        switch from {
        case .latest: buffer.writeStaticString(#""latest""#)
        case .earliest: buffer.writeStaticString(#""earliest""#)
        case .offset(let offset, let partition):
            buffer.writeStaticString(#"{"offset":"#)
            writeInteger(&buffer, offset)
            if let partition {
                buffer.writeStaticString(#","partition":"#)
                writeInteger(&buffer, Int64(partition))
            }
            buffer.writeStaticString("}")
        case .time(let time):
            buffer.writeStaticString(#"{"time":"#)
            writeString(&buffer, time)
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("}")
        return buffer
    }

    static func unsubscribe(id: Int64, channel: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = start(allocator, capacity: 64 + channel.utf8.count)
        buffer.writeStaticString(#"{"type":"unsubscribe","id":"#)
        writeInteger(&buffer, id)
        buffer.writeStaticString(#","channel":"#)
        writeString(&buffer, channel)
        buffer.writeStaticString("}")
        return buffer
    }

    /// Copies caller-made frame text behind the header room.
    static func raw(_ bytes: some Sequence<UInt8>, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = start(allocator, capacity: bytes.underestimatedCount)
        buffer.writeBytes(bytes)
        return buffer
    }

    private static func start(_ allocator: ByteBufferAllocator, capacity: Int) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headroom + capacity)
        buffer.moveWriterIndex(forwardBy: headroom)
        buffer.moveReaderIndex(forwardBy: headroom)
        return buffer
    }

    private static func writeInteger(_ buffer: inout ByteBuffer, _ value: Int64) {
        buffer.writeString(String(value))
    }

    /// Writes `text` as a JSON string token.
    static func writeString(_ buffer: inout ByteBuffer, _ text: String) {
        buffer.writeStaticString("\"")
        var plainStart = text.utf8.startIndex
        var index = plainStart
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                buffer.writeBytes(utf8[plainStart..<index])
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString(#"\""#)
                case UInt8(ascii: "\\"): buffer.writeStaticString(#"\\"#)
                case 0x0a: buffer.writeStaticString(#"\n"#)
                case 0x0d: buffer.writeStaticString(#"\r"#)
                case 0x09: buffer.writeStaticString(#"\t"#)
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    buffer.writeStaticString(#"\u00"#)
                    buffer.writeInteger(hex[Int(byte >> 4)])
                    buffer.writeInteger(hex[Int(byte & 0xf)])
                }
                plainStart = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        buffer.writeBytes(utf8[plainStart..<index])
        buffer.writeStaticString("\"")
    }
}
