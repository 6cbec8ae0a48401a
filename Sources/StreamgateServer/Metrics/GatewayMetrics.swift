import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// A node's metrics, through swift-metrics, exposed by `GET /metrics` in Prometheus text format.
///
/// Each node has a registry of its own (several nodes run in one test process). Labels are bounded sets —
/// endpoints, status codes, start kinds, results — never channel names. Hot paths count in batches: a
/// record's deliveries once per record, an outbox's frames once per flush.
final class GatewayMetrics: Sendable {
    enum Endpoint: String, CaseIterable { case multiplexed, bound }
    enum StartKind: String, CaseIterable { case latest, earliest, offset, time }

    let registry: PrometheusCollectorRegistry

    private let connections: [Endpoint: CoreMetrics.Gauge]
    private let opened: [Endpoint: CoreMetrics.Counter]
    private let connectionCounts = NIOLockedValueBox([Endpoint: Int]())
    let framesReceived: CoreMetrics.Counter
    let framesSent: CoreMetrics.Counter
    let acked: CoreMetrics.Counter
    let nacked: CoreMetrics.Counter
    /// Receipt of a publish to the delivery report that answers it.
    let ackLatency: CoreMetrics.Timer
    let deliveries: CoreMetrics.Counter
    /// A record's timestamp (CreateTime: for publishes through a gateway, their receipt) to its hand-over to
    /// the subscribers' outboxes.
    let deliveryLatency: CoreMetrics.Timer
    let slowConsumerCloses: CoreMetrics.Counter
    private let subscriptions: [StartKind: CoreMetrics.Counter]
    private let refusals = NIOLockedValueBox([Int: CoreMetrics.Counter]())
    private let factory: PrometheusMetricsFactory
    private let cpu: CoreMetrics.FloatingPointCounter
    private let cpuSeen = NIOLockedValueBox(0.0)
    private let lagSeries = NIOLockedValueBox([String: (String, Int32)]())

    init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let latencyBuckets: [Duration] = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        factory.defaultDurationHistogramBuckets = latencyBuckets
        self.factory = factory
        self.registry = registry
        connections = Dictionary(uniqueKeysWithValues: Endpoint.allCases.map {
            ($0, CoreMetrics.Gauge(label: "streamgate_websocket_connections", dimensions: [("endpoint", $0.rawValue)], factory: factory))
        })
        opened = Dictionary(uniqueKeysWithValues: Endpoint.allCases.map {
            ($0, CoreMetrics.Counter(label: "streamgate_websocket_opened_total", dimensions: [("endpoint", $0.rawValue)], factory: factory))
        })
        framesReceived = CoreMetrics.Counter(label: "streamgate_frames_received_total", factory: factory)
        framesSent = CoreMetrics.Counter(label: "streamgate_frames_sent_total", factory: factory)
        acked = CoreMetrics.Counter(label: "streamgate_publishes_total", dimensions: [("result", "acked")], factory: factory)
        nacked = CoreMetrics.Counter(label: "streamgate_publishes_total", dimensions: [("result", "nacked")], factory: factory)
        ackLatency = CoreMetrics.Timer(label: "streamgate_ack_latency_seconds", factory: factory)
        deliveries = CoreMetrics.Counter(label: "streamgate_deliveries_total", factory: factory)
        deliveryLatency = CoreMetrics.Timer(label: "streamgate_delivery_latency_seconds", factory: factory)
        slowConsumerCloses = CoreMetrics.Counter(label: "streamgate_slow_consumer_closes_total", factory: factory)
        cpu = CoreMetrics.FloatingPointCounter(label: "process_cpu_seconds_total", factory: factory)
        subscriptions = Dictionary(uniqueKeysWithValues: StartKind.allCases.map {
            ($0, CoreMetrics.Counter(label: "streamgate_subscriptions_total", dimensions: [("start", $0.rawValue)], factory: factory))
        })
    }

    /// A WebSocket session opened on `endpoint`.
    func connectionOpened(_ endpoint: Endpoint) {
        opened[endpoint]!.increment()
        connections[endpoint]!.record(count(endpoint, 1))
    }

    /// A session that ``connectionOpened(_:)`` closed.
    func connectionClosed(_ endpoint: Endpoint) {
        connections[endpoint]!.record(count(endpoint, -1))
    }

    private func count(_ endpoint: Endpoint, _ delta: Int) -> Int {
        connectionCounts.withLockedValue { counts in
            counts[endpoint, default: 0] += delta
            return counts[endpoint]!
        }
    }

    /// An upgrade (or a plain request of the handshake gate) refused with `status`: a bounded set of codes.
    func refused(status: Int) {
        let counter = refusals.withLockedValue { refusals -> CoreMetrics.Counter in
            if let counter = refusals[status] { return counter }
            let counter = CoreMetrics.Counter(label: "streamgate_upgrade_refusals_total", dimensions: [("status", String(status))],
                                  factory: factory)
            refusals[status] = counter
            return counter
        }
        counter.increment()
    }

    /// A subscription attached, by how it started.
    func subscribed(from start: StartKind) {
        subscriptions[start]!.increment()
    }

    /// Gauges read at scrape time: set them, then emit.
    func gauge(_ name: String, _ value: Double, labels: [(String, String)] = []) {
        CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory).record(value)
    }

    /// The live readers' lag per partition followed; a partition no longer followed shows 0 (its series stays:
    /// the label set is bounded by the partitions a node ever followed).
    func readerLag(_ lags: [(topic: String, partition: Int32, lag: Int64)]) {
        let now = Set(lags.map { "\($0.topic)/\($0.partition)" })
        let gone = lagSeries.withLockedValue { series -> [(String, Int32)] in
            defer { for lag in lags { series["\(lag.topic)/\(lag.partition)"] = (lag.topic, lag.partition) } }
            return series.filter { !now.contains($0.key) }.map(\.value)
        }
        for lag in lags {
            gauge("streamgate_reader_lag_records", Double(lag.lag),
                  labels: [("topic", lag.topic), ("partition", String(lag.partition))])
        }
        for (topic, partition) in gone {
            gauge("streamgate_reader_lag_records", 0, labels: [("topic", topic), ("partition", String(partition))])
        }
    }

    /// The process's CPU time so far (user and system): the counter advances by what is new.
    func processCPU(seconds: Double) {
        let delta = cpuSeen.withLockedValue { seen -> Double in
            defer { seen = max(seen, seconds) }
            return max(0, seconds - seen)
        }
        if delta > 0 { cpu.increment(by: delta) }
    }

    /// The Prometheus text exposition of everything.
    func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }
}
