import Tracing
import CoreMetrics
import Dispatch
import Foundation
import NIOCore
import StreamgateCore
import StreamgateKafka

/// Where a publisher hands records: the producer, or a test double.
protocol RecordSink: Sendable {
    func produce(topic: String, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, headers: [KafkaHeader],
                 timestampMilliseconds: Int64, onDelivery: @escaping KafkaProducer.DeliveryHandler)
        -> KafkaProducer.ProduceResult
}

extension KafkaProducer: RecordSink {}

/// One connection's publishes: builds each record, hands it to Kafka, and answers it with `ack` or `nack`
/// once the delivery report says so.
///
/// It owns the connection's in-flight window — publishes and payload bytes awaiting a report — and the
/// publishes waiting for room in librdkafka's queue (`QUEUE_FULL` is back-pressure, never a drop). While
/// either is over its bound, ``wantsPause`` is true and the session stops reading the socket. Lives on the
/// connection's event loop.
final class Publisher {
    struct Limits {
        /// Publishes awaiting a report before reading stops.
        var maxInFlight: Int
        /// Payload bytes awaiting a report before reading stops.
        var maxInFlightBytes: Int
    }

    private struct Waiting {
        var id: RequestID?
        var channel: ChannelName
        var topic: String
        var payload: Payload
        var headers: [KafkaHeader]
        var timestamp: Int64
        /// Monotonic receipt time (ns), for the ack latency.
        var received: UInt64
        /// The publish's span (receipt → delivery report), when tracing is on.
        var span: LogSpan?
    }

    private let sink: any RecordSink
    private let limits: Limits
    private let window: PublishWindow
    private let outbox: ConnectionOutbox
    private let eventLoop: any EventLoop
    private let onRoom: @Sendable () -> Void
    private let metrics: GatewayMetrics?
    private let tracer: LogTracer?
    private var waiting = CircularBuffer<Waiting>()
    private var retryScheduled = false
    private var stopped = false

    /// - Parameter onRoom: called (from any thread) when answers freed room in the window.
    init(sink: any RecordSink, limits: Limits, window: PublishWindow, outbox: ConnectionOutbox,
         metrics: GatewayMetrics? = nil, tracer: LogTracer? = nil, onRoom: @escaping @Sendable () -> Void) {
        self.metrics = metrics
        self.tracer = tracer
        self.sink = sink
        self.limits = limits
        self.window = window
        self.outbox = outbox
        self.eventLoop = outbox.eventLoop
        self.onRoom = onRoom
    }

    /// Whether the session should stop reading new frames.
    var wantsPause: Bool {
        !waiting.isEmpty || window.current >= limits.maxInFlight || window.currentBytes >= limits.maxInFlightBytes
    }

    /// Publishes waiting for room in the producer's queue.
    var waitingCount: Int { waiting.count }

    /// Builds the record and hands it to Kafka, or queues it behind earlier ones waiting for room.
    func publish(id: RequestID?, channel: ChannelName, topic: String, payload: Payload, headers: RecordHeaders) {
        guard !stopped else { return }
        var headers = headers
        var span: LogSpan?
        if let tracer {
            // A child of the client's span (or the root of a new trace); the record carries this span's
            // context, so that consumers continue the trace from the gateway's publish.
            var parent = ServiceContext.topLevel
            if let traceparent = headers.traceparent, let trace = TraceContext(traceparent: traceparent) {
                parent[TraceContextKey.self] = trace
            }
            let started = tracer.startSpan("publish", context: parent, ofKind: .producer)
            started.attributes["messaging.destination.name"] = topic
            started.attributes["streamgate.channel"] = channel.value
            headers.traceparent = started.context[TraceContextKey.self]?.traceparent
            span = started
        }
        let next = Waiting(
            id: id, channel: channel, topic: topic, payload: payload,
            headers: headers.fields.map { KafkaHeader(name: $0.name, string: $0.value) },
            timestamp: Self.nowMilliseconds(), received: DispatchTime.now().uptimeNanoseconds, span: span)
        if !waiting.isEmpty || !attempt(next) {
            waiting.append(next)
            scheduleRetry()
        }
    }

    /// Answers every waiting publish with `nack` (never handed to Kafka: not persisted) and produces no more.
    func failWaiting(reason: String) {
        stopped = true
        while let next = waiting.popFirst() {
            outbox.enqueue(bytes: ServerFrameEncoder.nack(id: next.id, code: .kafkaUnavailable, message: reason,
                                                          persisted: "no"))
            metrics?.nacked.increment()
            next.span?.setStatus(SpanStatus(code: .error, message: reason))
            next.span?.end()
        }
    }

    /// The connection is gone: nothing more is produced (in-flight reports still settle the window).
    func stop() {
        stopped = true
        waiting.removeAll()
    }

    /// Hands a publish to Kafka. `false` when librdkafka's queue is full (back-pressure: try again later).
    private func attempt(_ publish: Waiting) -> Bool {
        let outbox = self.outbox
        let window = self.window
        let onRoom = self.onRoom
        let limits = self.limits
        let metrics = self.metrics
        let received = publish.received
        let span = publish.span
        let (id, channel) = (publish.id, publish.channel)
        let bytes = publish.payload.bytes.count
        var key = channel.value
        window.opened(bytes: bytes)  // before the produce call: its report may come first
        let result = key.withUTF8 { key in
            publish.payload.bytes.withUnsafeBytes { value in
                sink.produce(
                    topic: publish.topic, key: UnsafeRawBufferPointer(key), value: value, headers: publish.headers,
                    timestampMilliseconds: publish.timestamp
                ) { report in
                    outbox.enqueue(bytes: Self.answer(to: report, id: id, channel: channel))
                    if let span {
                        span.attributes["messaging.kafka.destination.partition"] = Int(report.partition)
                        if let offset = report.offset { span.attributes["messaging.kafka.offset"] = Int(offset) }
                        if let error = report.error { span.setStatus(SpanStatus(code: .error, message: "\(error)")) }
                        span.end()
                    }
                    if let metrics {
                        (report.error == nil ? metrics.acked : metrics.nacked).increment()
                        metrics.ackLatency.recordNanoseconds(
                            Int64(clamping: DispatchTime.now().uptimeNanoseconds &- received))
                    }
                    let (count, total) = window.closed(bytes: bytes)
                    let halfBytes = limits.maxInFlightBytes / 2
                    if count == limits.maxInFlight / 2 || (total <= halfBytes && total + bytes > halfBytes) {
                        onRoom()
                    }
                }
            }
        }
        switch result {
        case .enqueued:
            return true
        case .queueFull:
            _ = window.closed(bytes: bytes)
            return false
        case .failed(let error):
            _ = window.closed(bytes: bytes)
            outbox.enqueue(bytes: ServerFrameEncoder.nack(id: id, code: .kafkaUnavailable, message: "\(error)",
                                                          persisted: "no"))
            metrics?.nacked.increment()
            publish.span?.setStatus(SpanStatus(code: .error, message: "\(error)"))
            publish.span?.end()
            return true
        }
    }

    private static func answer(to report: KafkaDeliveryReport, id: RequestID?, channel: ChannelName) -> [UInt8] {
        guard let error = report.error else {
            return ServerFrameEncoder.ack(id: id, channel: channel, partition: report.partition, offset: report.offset)
        }
        return ServerFrameEncoder.nack(id: id, code: .kafkaUnavailable, message: error.description,
                                       persisted: report.persistence == .notPersisted ? "no" : "unknown")
    }

    private func scheduleRetry() {
        guard !retryScheduled else { return }
        retryScheduled = true
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(in: .milliseconds(5)) { this.value.retryWaiting() }
    }

    private func retryWaiting() {
        retryScheduled = false
        guard !stopped else { return }
        while let next = waiting.first {
            guard attempt(next) else { return scheduleRetry() }
            waiting.removeFirst()
        }
        onRoom()
    }

    private static func nowMilliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}

@available(*, unavailable)
extension Publisher: Sendable {}
