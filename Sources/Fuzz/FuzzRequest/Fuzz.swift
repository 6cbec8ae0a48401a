// Fuzz target for ClientFrameDecoder: the input is the payload of one text frame (any bytes, though the server
// only passes valid UTF-8), decoded with a small and a large payload limit.
//
// Invariants: decoding never crashes and is deterministic; the smaller limit only ever adds a `too_large`
// refusal; decoded requests respect their limits (payload size, msgId, traceparent, non-empty token); errors
// carry a message and a known code.
import FuzzSupport
import StreamgateCore

enum RequestFuzz {
    static let small = ClientFrameDecoder(maxPayloadBytes: 16)
    static let large = ClientFrameDecoder(maxPayloadBytes: 1 << 20)

    static func run(_ input: UnsafeRawBufferPointer) {
        let strict = small.decode(input)
        let loose = large.decode(input)
        precondition(small.decode(input) == strict, "decode is not deterministic")
        switch strict {
        case .success(let request):
            // A smaller limit never lets through what a larger one refuses, and never changes the result.
            precondition(loose == .success(request), "the payload limit changed a decoded request")
            check(request, maxPayloadBytes: small.maxPayloadBytes)
        case .failure(let error):
            check(error)
            if case .success(let request) = loose {
                check(request, maxPayloadBytes: large.maxPayloadBytes)
                precondition(error.code == .tooLarge, "only the payload limit may tell the two decoders apart")
            }
        }
        if case .failure(let error) = loose { check(error) }
    }

    static func check(_ request: ClientRequest, maxPayloadBytes: Int) {
        switch request {
        case .auth(_, let token):
            precondition(!token.isEmpty, "empty token accepted")
        case .publish(_, _, let payload, let msgId, let traceparent):
            precondition(payload.bytes.count <= maxPayloadBytes, "payload over the limit")
            if case .json(let json) = payload { precondition(!json.isEmpty, "empty JSON data") }
            if let msgId { precondition(PublishFieldRules.isValidMessageID(msgId), "invalid msgId accepted") }
            if let traceparent {
                precondition(PublishFieldRules.isValidTraceparent(traceparent), "invalid traceparent accepted")
            }
        case .subscribe, .unsubscribe:
            break
        }
    }

    static func check(_ error: RequestError) {
        precondition(!error.message.isEmpty, "error without a message")
        let known: [ErrorCode] = [.badRequest, .tooLarge]
        precondition(known.contains(error.code), "unexpected error code \(error.code)")
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        RequestFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    @main struct FuzzRequestEngine {
        static func main() { FuzzDriver.runEngine(fuzz) }
    }
#else
    /// Without the fuzzing engine: replays a corpus (default `Tests/fuzz/request/`; any files or folders given).
    @main struct FuzzRequestReplay {
        static func main() { FuzzDriver.replay(name: "fuzz-request", defaultPath: "Tests/fuzz/request/") { RequestFuzz.run($0) } }
    }
#endif
