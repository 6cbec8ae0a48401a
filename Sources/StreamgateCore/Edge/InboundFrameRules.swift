/// The header of one frame from a client, as the frame decoder read it (RFC 6455 §5.2).
public struct WebSocketFrameHeader: Sendable, Equatable {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    /// 0...15: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong; the rest are reserved.
    public var opcode: UInt8
    public var masked: Bool
    /// Payload length in bytes.
    public var length: Int

    public init(
        fin: Bool, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false, opcode: UInt8, masked: Bool,
        length: Int
    ) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.masked = masked
        self.length = length
    }

    /// Opcodes 8, 9 and 10 (and the reserved 11...15) are control frames.
    public var isControl: Bool { opcode & 0x08 != 0 }
}

/// Why a connection must be closed, with the close code to send (RFC 6455 §7.4.1).
public struct FrameViolation: Sendable, Equatable, Error {
    /// ``CloseCode/protocolError`` (1002), ``CloseCode/invalidUTF8`` (1007) or ``CloseCode/tooBig`` (1009).
    public var closeCode: UInt16
    /// Short ASCII text for the close frame, at most 123 bytes so it fits a control frame with the code.
    public var reason: String

    public init(closeCode: UInt16, reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    static func protocolError(_ reason: String) -> FrameViolation {
        FrameViolation(closeCode: CloseCode.protocolError, reason: reason)
    }

    static func tooBig(_ reason: String) -> FrameViolation {
        FrameViolation(closeCode: CloseCode.tooBig, reason: reason)
    }

    static let invalidText = FrameViolation(closeCode: CloseCode.invalidUTF8, reason: "text is not valid UTF-8")
}

/// What an admitted frame is.
public enum FrameDisposition: Sendable, Equatable {
    case ping, pong, close
    /// The first frame of a data message (also its last when the frame's FIN bit is set).
    case messageStart(isText: Bool)
    /// A later frame of a fragmented data message.
    case messageContinuation
}

/// The RFC 6455 §5 rules for the frames one client sends on one connection, as a pure state machine.
///
/// The owner decodes each frame header, asks ``admit(_:)`` about it, and for an admitted data frame (text,
/// binary or continuation) passes its unmasked payload to ``consume(_:fin:)``. Any violation means: send a close
/// frame with the violation's code and stop reading. Control frames may arrive between the fragments of a
/// message; their payloads are not fed here (a close payload goes to ``ClosePayloadRules/parse(_:)``).
///
/// Checked in ``admit(_:)``, in this order (all 1002 unless noted):
/// 1. the frame is masked (§5.1);
/// 2. RSV1–RSV3 are clear: no extension is ever negotiated (§5.2);
/// 3. the opcode is not reserved (3–7, 11–15);
/// 4. a control frame is at most 125 bytes and not fragmented (§5.5);
/// 5. a continuation continues a message, and a text or binary frame does not start one inside another (§5.4);
/// 6. a message has at most `maxFragments` frames (1009);
/// 7. a message's frames together have at most `maxMessageBytes` bytes (1009), checked from the header's length
///    before any payload is buffered.
///
/// ``consume(_:fin:)`` checks text as UTF-8 as it comes (1007), failing on the fragment where the text can no
/// longer be valid, not at the end of the message.
public struct InboundFrameRules: Sendable {
    /// Largest data message, in payload bytes summed over its frames.
    public let maxMessageBytes: Int
    /// Most frames in one data message: a bound on the work (and the bookkeeping) one message can cost.
    /// The default, 1024, is far above what real clients send (browsers send one frame per message).
    public let maxFragments: Int

    private struct Message: Sendable {
        var isText: Bool
        var bytes: Int
        var fragments: Int
        var text = UTF8StreamValidator()
    }

    /// The data message in progress, from its first admitted frame until its final payload is consumed.
    private var message: Message?
    /// Whether the message's final frame has been admitted (its payload may still be to come).
    private var finalFrameAdmitted = false

    /// - Parameters:
    ///   - maxMessageBytes: largest data message, summed over its frames; a message that would exceed it is
    ///     refused with 1009 before its payload is read.
    ///   - maxFragments: most frames in one data message (1009 beyond).
    public init(maxMessageBytes: Int, maxFragments: Int = 1024) {
        precondition(maxMessageBytes >= 0 && maxFragments >= 1, "limits must be positive")
        self.maxMessageBytes = maxMessageBytes
        self.maxFragments = maxFragments
    }

    /// Whether a fragmented message is in progress: the next data frame must be a continuation.
    public var inMessage: Bool { message != nil && !finalFrameAdmitted }

    /// Checks a frame header against RFC 6455 §5 and the limits, given the frames before it.
    /// - Parameter header: the decoded header of the next frame.
    /// - Returns: what the frame is, or the violation to close with. A refused frame changes no state.
    public mutating func admit(_ header: WebSocketFrameHeader) -> Result<FrameDisposition, FrameViolation> {
        guard header.masked else { return .failure(.protocolError("client frames must be masked")) }
        guard !header.rsv1, !header.rsv2, !header.rsv3 else {
            return .failure(.protocolError("reserved bits set without an extension"))
        }
        guard header.length >= 0 else { return .failure(.protocolError("invalid payload length")) }
        switch header.opcode {
        case 0x8, 0x9, 0xA:
            guard header.length <= 125 else { return .failure(.protocolError("control frame over 125 bytes")) }
            guard header.fin else { return .failure(.protocolError("fragmented control frame")) }
            switch header.opcode {
            case 0x8: return .success(.close)
            case 0x9: return .success(.ping)
            default: return .success(.pong)
            }
        case 0x0, 0x1, 0x2:
            break
        default:
            return .failure(.protocolError("reserved opcode \(header.opcode)"))
        }

        // A data frame. If the previous message's final payload was never consumed (an owner that skips empty
        // payloads), that message ends here.
        if finalFrameAdmitted, let previous = message {
            message = nil
            finalFrameAdmitted = false
            if previous.isText, !previous.text.isAtBoundary { return .failure(.invalidText) }
        }
        let disposition: FrameDisposition
        var current: Message
        if header.opcode == 0x0 {
            guard let ongoing = message else {
                return .failure(.protocolError("continuation frame without a message to continue"))
            }
            guard ongoing.fragments < maxFragments else {
                return .failure(.tooBig("message has more than \(maxFragments) fragments"))
            }
            current = ongoing
            current.fragments += 1
            disposition = .messageContinuation
        } else {
            guard message == nil else {
                return .failure(.protocolError("new data frame inside a fragmented message"))
            }
            current = Message(isText: header.opcode == 0x1, bytes: 0, fragments: 1)
            disposition = .messageStart(isText: current.isText)
        }
        // `current.bytes <= maxMessageBytes` always holds, so this cannot overflow.
        guard header.length <= maxMessageBytes - current.bytes else {
            return .failure(.tooBig("message over \(maxMessageBytes) bytes"))
        }
        current.bytes += header.length
        message = current
        finalFrameAdmitted = header.fin
        return .success(disposition)
    }

    /// Feeds the unmasked payload of the data frame just admitted.
    ///
    /// Text is checked as UTF-8 incrementally, failing as soon as a byte sequence can no longer be valid (even
    /// across fragments); at the end of a message an incomplete sequence fails. A payload may also be fed in
    /// several pieces, with `fin` only on the last piece.
    /// - Parameters:
    ///   - payload: the frame's payload bytes, unmasked.
    ///   - fin: the frame's FIN bit: when set, the message is complete and the state resets.
    /// - Returns: `nil`, or the violation (1007) to close with; the message is then abandoned.
    /// - Important: call it for every admitted data frame, empty payloads included; it ignores calls made
    ///   when no data message is in progress.
    public mutating func consume(_ payload: UnsafeRawBufferPointer, fin: Bool) -> FrameViolation? {
        guard var current = message else { return nil }
        if current.isText {
            guard current.text.feed(payload) else {
                message = nil
                finalFrameAdmitted = false
                return .invalidText
            }
        }
        if fin {
            message = nil
            finalFrameAdmitted = false
            if current.isText, !current.text.finish() { return .invalidText }
        } else {
            message = current
        }
        return nil
    }
}
