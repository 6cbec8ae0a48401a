import Logging
import NIOConcurrencyHelpers
import Tracing

/// A tracer of swift-distributed-tracing whose spans end as log lines (`--tracing log`): one line per span
/// with its trace id, span id, parent, duration and attributes, which a log pipeline can ship to a trace
/// store. Contexts travel as W3C `traceparent`.
final class LogTracer: Tracer {
    private let logger: Logger

    init(logger: Logger) {
        var logger = logger
        logger[metadataKey: "component"] = "trace"
        self.logger = logger
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> LogSpan {
        let parentContext = context()
        let parent = parentContext[TraceContextKey.self]
        var own = parentContext
        own[TraceContextKey.self] = TraceContext.child(of: parent)
        return LogSpan(name: operationName, kind: kind, context: own, parent: parent,
                       start: instant().nanosecondsSinceEpoch, logger: logger)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext,
                                               using extractor: Extract) where Extract.Carrier == Carrier {
        if let value = extractor.extract(key: "traceparent", from: carrier), let trace = TraceContext(traceparent: value) {
            context[TraceContextKey.self] = trace
        }
    }

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier,
                                           using injector: Inject) where Inject.Carrier == Carrier {
        if let trace = context[TraceContextKey.self] { injector.inject(trace.traceparent, forKey: "traceparent", into: &carrier) }
    }

    func forceFlush() {}
}

/// A span of ``LogTracer``: logged once, when it ends.
final class LogSpan: Span {
    private struct State {
        var name: String
        var attributes = SpanAttributes()
        var status: SpanStatus?
        var events: [String] = []
        var ended = false
    }

    let context: ServiceContext
    private let kind: SpanKind
    private let parent: TraceContext?
    private let start: UInt64
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    init(name: String, kind: SpanKind, context: ServiceContext, parent: TraceContext?, start: UInt64, logger: Logger) {
        self.context = context
        self.kind = kind
        self.parent = parent
        self.start = start
        self.logger = logger
        self.state = NIOLockedValueBox(State(name: name))
    }

    var operationName: String {
        get { state.withLockedValue { $0.name } }
        set { state.withLockedValue { $0.name = newValue } }
    }

    var attributes: SpanAttributes {
        get { state.withLockedValue { $0.attributes } }
        set { state.withLockedValue { $0.attributes = newValue } }
    }

    var isRecording: Bool { state.withLockedValue { !$0.ended } }

    func setStatus(_ status: SpanStatus) { state.withLockedValue { $0.status = status } }

    func addEvent(_ event: SpanEvent) { state.withLockedValue { $0.events.append(event.name) } }

    func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes,
                                             at instant: @autoclosure () -> Instant) {
        state.withLockedValue { $0.events.append("error: \(error)") }
    }

    func addLink(_ link: SpanLink) {}

    func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let end = instant().nanosecondsSinceEpoch
        guard let finished = state.withLockedValue({ state -> State? in
            guard !state.ended else { return nil }
            state.ended = true
            return state
        }) else { return }
        let trace = context[TraceContextKey.self]
        var metadata: Logger.Metadata = [
            "trace.id": "\(trace?.traceID ?? "-")", "span.id": "\(trace?.spanID ?? "-")",
            "span.parent": "\(parent?.spanID ?? "-")", "span.kind": "\(kind)",
            "span.ms": "\(Double(end &- start) / 1e6)",
        ]
        finished.attributes.forEach { key, value in metadata["attr.\(key)"] = "\(Self.text(of: value))" }
        if let status = finished.status { metadata["span.status"] = "\(status.code)" }
        if !finished.events.isEmpty { metadata["span.events"] = "\(finished.events.joined(separator: "; "))" }
        logger.info("span \(finished.name)", metadata: metadata)
    }

    private static func text(of value: SpanAttribute) -> String {
        switch value {
        case .string(let text): text
        case .int64(let number): String(number)
        case .int32(let number): String(number)
        case .double(let number): String(number)
        case .bool(let flag): String(flag)
        default: "\(value)"
        }
    }
}
