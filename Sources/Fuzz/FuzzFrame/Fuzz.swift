// Fuzz target for the frame rules: InboundFrameRules, ClosePayloadRules and UTF8StreamValidator.
//
// Input format (parsed here, so any bytes are an input):
//   byte 0        limits: bits 0-2 pick maxMessageBytes from `messageLimits`, bits 3-7 pick maxFragments
//   then frames   [FIN RSV1 RSV2 RSV3 opcode:4] [MASK len:7] [16-bit length if len == 126 | 64-bit if 127]
//                 payload (already unmasked; cut short when the input ends)
// After a violation or a close the connection would end: the harness starts a new one with the same limits.
//
// Invariants: a refused frame breaks a rule of RFC 6455 §5 (1002) or a limit (1009), and changes no state; an
// admitted frame breaks none, and the limits hold; `inMessage` matches a plain model; text fails (1007) exactly
// when it can no longer become valid UTF-8 or ends inside a character; a close payload is read as its bytes say;
// every reason is short printable ASCII. The whole input also goes through UTF8StreamValidator, whole, in
// pieces and byte by byte, and must agree with UTF8Validation, failing on the first impossible byte.
import FuzzSupport
import StreamgateCore

enum FrameFuzz {
    static let messageLimits = [0, 1, 5, 16, 125, 300, 4096, Int.max]

    static func run(_ input: UnsafeRawBufferPointer) {
        checkValidator(input)
        guard let config = input.first else { return }
        let maxMessageBytes = messageLimits[Int(config & 7)]
        let fragmentChoice = Int(config >> 3)
        let maxFragments = fragmentChoice == 31 ? 1024 : fragmentChoice % 6 + 1
        var connection = Connection(maxMessageBytes: maxMessageBytes, maxFragments: maxFragments)
        var index = 1
        while index + 2 <= input.count {
            let first = input[index]
            let second = input[index + 1]
            index += 2
            var length = Int(second & 0x7F)
            if length >= 126 {
                let width = length == 126 ? 2 : 8
                guard index + width <= input.count else { return }
                var value: UInt64 = 0
                for offset in 0..<width { value = value << 8 | UInt64(input[index + offset]) }
                index += width
                length = Int(value & UInt64(Int.max))
            }
            let header = WebSocketFrameHeader(
                fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
                opcode: first & 0x0F, masked: second & 0x80 != 0, length: length)
            let available = min(length, input.count - index)
            let payload = UnsafeRawBufferPointer(rebasing: input[index..<(index + available)])
            index += available
            if !connection.receive(header, payload) {
                connection = Connection(maxMessageBytes: maxMessageBytes, maxFragments: maxFragments)
            }
        }
    }

    /// The rules under test and a plain model of what they must decide.
    struct Connection {
        let maxMessageBytes: Int
        let maxFragments: Int
        var rules: InboundFrameRules
        var inMessage = false
        var isText = false
        var messageBytes = 0
        var fragments = 0
        var text: [UInt8] = []

        init(maxMessageBytes: Int, maxFragments: Int) {
            self.maxMessageBytes = maxMessageBytes
            self.maxFragments = maxFragments
            rules = InboundFrameRules(maxMessageBytes: maxMessageBytes, maxFragments: maxFragments)
        }

        /// One frame; false when the connection must close.
        mutating func receive(_ header: WebSocketFrameHeader, _ payload: UnsafeRawBufferPointer) -> Bool {
            precondition(rules.inMessage == inMessage, "inMessage disagrees with the model")
            let opcode = header.opcode
            let isData = opcode <= 2
            let isControl = opcode >= 8 && opcode <= 10
            switch rules.admit(header) {
            case .failure(let violation):
                checkReason(violation)
                let broken =
                    !header.masked || header.rsv1 || header.rsv2 || header.rsv3 || (!isData && !isControl)
                    || (isControl && (header.length > 125 || !header.fin))
                    || (opcode == 0 && !inMessage) || ((opcode == 1 || opcode == 2) && inMessage)
                let tooBig =
                    isData
                    && (header.length > maxMessageBytes - (opcode == 0 ? messageBytes : 0)
                        || (opcode == 0 && fragments >= maxFragments))
                switch violation.closeCode {
                case 1002: precondition(broken, "1002 for a frame that breaks no rule: \(header)")
                case 1009: precondition(!broken && tooBig, "1009 for a frame within the limits: \(header)")
                default: preconditionFailure("admit answered \(violation.closeCode)")
                }
                precondition(rules.inMessage == inMessage, "a refused frame changed the state")
                return false
            case .success(let disposition):
                precondition(header.masked && !header.rsv1 && !header.rsv2 && !header.rsv3, "admitted \(header)")
                switch disposition {
                case .ping, .pong, .close:
                    precondition(isControl && header.fin && header.length <= 125, "admitted control \(header)")
                    precondition(disposition == (opcode == 8 ? .close : opcode == 9 ? .ping : .pong))
                    return opcode == 8 ? checkClose(payload) : true
                case .messageStart(let startsText):
                    precondition((opcode == 1 || opcode == 2) && !inMessage, "admitted a start: \(header)")
                    precondition(startsText == (opcode == 1))
                    isText = startsText
                    messageBytes = 0
                    fragments = 0
                    text = []
                case .messageContinuation:
                    precondition(opcode == 0 && inMessage, "admitted a continuation: \(header)")
                }
                messageBytes += header.length
                fragments += 1
                precondition(messageBytes <= maxMessageBytes && fragments <= maxFragments, "limit not enforced")
                inMessage = !header.fin
                return consume(payload, fin: header.fin)
            }
        }

        mutating func consume(_ payload: UnsafeRawBufferPointer, fin: Bool) -> Bool {
            if isText { text.append(contentsOf: payload) }
            let violation = rules.consume(payload, fin: fin)
            if let violation {
                checkReason(violation)
                precondition(violation.closeCode == 1007 && isText, "consume answered \(violation)")
                // Fail fast: the text can no longer become valid, or it ended inside a character.
                precondition(!FrameFuzz.isExtendable(text) || (fin && !FrameFuzz.isValid(text)), "1007 too early")
                inMessage = false
                return false
            }
            if isText {
                precondition(fin ? FrameFuzz.isValid(text) : FrameFuzz.isExtendable(text), "invalid text passed")
            }
            precondition(!rules.inMessage || !fin, "message not ended by its final frame")
            return true
        }

        func checkClose(_ payload: UnsafeRawBufferPointer) -> Bool {
            switch ClosePayloadRules.parse(payload) {
            case .success(nil):
                precondition(payload.isEmpty)
            case .success(let close?):
                precondition(payload.count >= 2 && CloseCode.isValidReceived(close.code))
                precondition(close.code == UInt16(payload[0]) << 8 | UInt16(payload[1]))
                precondition(Array(close.reason.utf8) == Array(payload[2...]), "reason altered")
            case .failure(let violation):
                checkReason(violation)
                let code = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 0
                switch violation.closeCode {
                case 1002: precondition(payload.count == 1 || !CloseCode.isValidReceived(code))
                case 1007:
                    precondition(CloseCode.isValidReceived(code))
                    precondition(!UTF8Validation.isValid(UnsafeRawBufferPointer(rebasing: payload[2...])))
                default: preconditionFailure("close payload answered \(violation.closeCode)")
                }
            }
            return false  // a close ends the connection
        }

        func checkReason(_ violation: FrameViolation) {
            let reason = Array(violation.reason.utf8)
            precondition(!reason.isEmpty && reason.count <= 123, "reason length")
            precondition(reason.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "reason not printable ASCII")
        }
    }

    /// The validator against UTF8Validation: whole, in pieces sized by the input itself, and byte by byte
    /// (where it must stop at the first byte that no continuation can repair).
    static func checkValidator(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        let valid = isValid(bytes)
        var whole = UTF8StreamValidator()
        precondition((whole.feed(input) && whole.finish()) == valid, "validator disagrees on the whole input")

        var pieces = UTF8StreamValidator()
        var start = 0
        var ok = true
        var step = bytes.count
        while start < bytes.count {
            step = (step &* 31 &+ Int(bytes[start])) % 7 + 1
            let end = min(start + step, bytes.count)
            ok = pieces.feed(UnsafeRawBufferPointer(rebasing: input[start..<end])) && ok
            start = end
        }
        precondition((ok && pieces.finish()) == valid, "validator disagrees on pieces")

        var single = UTF8StreamValidator()
        if let failure = bytes.indices.first(where: { !single.feed(UnsafeRawBufferPointer(rebasing: input[$0...$0])) })
        {
            precondition(isExtendable(Array(bytes[..<failure])), "failed a prefix that can still be valid")
            precondition(!isExtendable(Array(bytes[...failure])), "failed late")
        } else {
            precondition(isExtendable(bytes), "passed a prefix that cannot be valid")
        }
    }

    static func isValid(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { UTF8Validation.isValid($0) } }

    /// Whether some continuation makes `bytes` valid UTF-8 (at most three more bytes; after a lead byte, 0x80
    /// or 0xA0 fits every allowed range).
    static func isExtendable(_ bytes: [UInt8]) -> Bool {
        if isValid(bytes) { return true }
        for count in 1...3 {
            for first: UInt8 in [0x80, 0xA0] where isValid(bytes + [first] + Array(repeating: 0x80, count: count - 1)) {
                return true
            }
        }
        return false
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        FrameFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    @main struct FuzzFrameEngine {
        static func main() { FuzzDriver.runEngine(fuzz) }
    }
#else
    /// Without the fuzzing engine: replays a corpus (default `Tests/fuzz/frame/`; any files or folders given).
    @main struct FuzzFrameReplay {
        static func main() { FuzzDriver.replay(name: "fuzz-frame", defaultPath: "Tests/fuzz/frame/") { FrameFuzz.run($0) } }
    }
#endif
