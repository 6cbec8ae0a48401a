import NIOCore

/// Cuts a stream of concatenated JSON objects into one buffer per object, however the stream is chunked.
///
/// etcd's gateway writes each message of a streaming call as one JSON object followed by a newline, but an HTTP
/// body chunk may end inside an object or hold several. The splitter tracks nesting depth and string state
/// across chunks (braces inside strings and escaped quotes do not count), skips whitespace between objects, and
/// scans each byte once.
struct EtcdJSONStreamSplitter {
    /// The largest object accepted by default: 64 MiB. A watch batch holds the changes of up to a thousand
    /// revisions, so it can be far larger than any one value etcd accepts (1.5 MiB by default); the cap only
    /// stops a broken peer from growing the buffer without end.
    static let defaultMaximumObjectBytes = 64 << 20

    /// The size above which an unfinished object is a ``EtcdError/Code/badResponse``.
    let maximumObjectBytes: Int

    private var buffer = ByteBuffer()
    /// How many bytes of the current object (from the reader index) were already scanned.
    private var scanned = 0
    private var depth = 0
    private var inString = false
    private var escaped = false

    /// - Parameter maximumObjectBytes: the size above which an unfinished object is an error.
    init(maximumObjectBytes: Int = Self.defaultMaximumObjectBytes) {
        self.maximumObjectBytes = maximumObjectBytes
    }

    /// True when no bytes of an unfinished object are buffered.
    var isEmpty: Bool {
        self.buffer.readableBytesView.allSatisfy(Self.isWhitespace)
    }

    /// Adds the next chunk of the stream.
    mutating func append(_ chunk: ByteBuffer) {
        self.buffer.writeImmutableBuffer(chunk)
    }

    /// The next complete object, or nil until more bytes are appended.
    /// - Throws: ``EtcdError/Code/badResponse`` when something other than an object starts, or an object grows
    ///   beyond ``maximumObjectBytes``.
    mutating func next() throws -> ByteBuffer? {
        if self.scanned == 0 {
            while let byte = self.buffer.getInteger(at: self.buffer.readerIndex, as: UInt8.self),
                Self.isWhitespace(byte)
            {
                self.buffer.moveReaderIndex(forwardBy: 1)
            }
            guard let first = self.buffer.getInteger(at: self.buffer.readerIndex, as: UInt8.self) else {
                self.buffer.clear()
                return nil
            }
            guard first == UInt8(ascii: "{") else {
                throw EtcdError.badResponse(
                    "expected a JSON object in the stream, found \(EtcdWire.preview(self.buffer))"
                )
            }
        }

        var (index, depth, inString, escaped) = (self.scanned, self.depth, self.inString, self.escaped)
        let end: Int? = self.buffer.withUnsafeReadableBytes { bytes in
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if inString {
                    if escaped {
                        escaped = false
                    } else if byte == UInt8(ascii: "\\") {
                        escaped = true
                    } else if byte == UInt8(ascii: "\"") {
                        inString = false
                    }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""):
                    inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        return index
                    }
                default:
                    break
                }
            }
            return nil
        }

        guard let end else {
            (self.scanned, self.depth, self.inString, self.escaped) = (index, depth, inString, escaped)
            if self.scanned > self.maximumObjectBytes {
                throw EtcdError.badResponse(
                    "a streamed JSON object exceeds \(self.maximumObjectBytes) bytes"
                )
            }
            self.buffer.discardReadBytes()
            return nil
        }
        (self.scanned, self.depth, self.inString, self.escaped) = (0, 0, false, false)
        return self.buffer.readSlice(length: end)
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\t")
    }
}
