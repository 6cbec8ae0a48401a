import Tracing
import StreamgateCore

/// A W3C trace context (`traceparent`): which trace a span belongs to, and its own id.
struct TraceContext: Sendable, Equatable {
    /// 32 lower-case hex digits.
    var traceID: String
    /// 16 lower-case hex digits: the span this context names.
    var spanID: String
    /// `01` sampled, `00` not.
    var flags: String

    /// Parses a `traceparent` (version 00 fields; later versions are read the same way, as W3C asks).
    init?(traceparent: String) {
        guard PublishFieldRules.isValidTraceparent(traceparent) else { return nil }
        let parts = traceparent.split(separator: "-")
        guard parts.count >= 4 else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        flags = String(parts[3].prefix(2))
    }

    init(traceID: String, spanID: String, flags: String) {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
    }

    var traceparent: String { "00-\(traceID)-\(spanID)-\(flags)" }

    /// A context for a new span: in `parent`'s trace when there is one, else in a new trace.
    static func child(of parent: TraceContext?) -> TraceContext {
        TraceContext(traceID: parent?.traceID ?? randomHex(bytes: 16), spanID: randomHex(bytes: 8),
                     flags: parent?.flags ?? "01")
    }

    private static func randomHex(bytes: Int) -> String {
        var text = ""
        text.reserveCapacity(bytes * 2)
        repeat {
            text = ""
            for _ in 0..<bytes {
                let byte = UInt8.random(in: 0...255)
                text += String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
            }
        } while text.allSatisfy { $0 == "0" }  // all-zero ids are invalid
        return text
    }
}

/// Where a trace context lives in a `ServiceContext`.
enum TraceContextKey: ServiceContextKey {
    typealias Value = TraceContext
    static let nameOverride: String? = "traceparent"
}
