import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamgateCore
import StreamgateKafka

#if canImport(Glibc)
    import Glibc
#endif

/// The Kafka-path baseline: StreamgateKafka's `KafkaProducer` used directly (no WebSocket), with the
/// gateway's producer settings, on its own thread.
final class BenchRawProducer: Sendable {
    /// What one load produced.
    struct Outcome: Sendable {
        var completed = 0
        var inWindow = 0
        var errors = 0
        var latency = BenchLatency()
        var firstOffset: Int64 = .max
        var lastOffset: Int64 = -1
    }

    private let producer: KafkaProducer
    let topic: String

    init(brokers: String, topic: String, settings: [String: String], logger: Logger) throws {
        var configuration = KafkaConfiguration(settings.filter { $0.key != "fetch.wait.max.ms" })
        configuration["bootstrap.servers"] = brokers
        configuration["client.id"] = "streamgate-bench"
        configuration["allow.auto.create.topics"] = "false"
        self.producer = try KafkaProducer(configuration: configuration, logger: logger)
        producer.start()
        self.topic = topic
    }

    func shutdown() { producer.shutdown(timeoutMilliseconds: 10_000) }

    /// The headers the gateway writes, so records are alike on both sides.
    static let gatewayLikeHeaders = RecordHeaders(
        contentType: "application/json", sender: "anonymous", connection: "bench-raw", node: "bench"
    ).fields.map { KafkaHeader(name: $0.name, string: $0.value) }

    /// Produces as fast as `maxInFlight` outstanding records allow until the window ends; counts delivery
    /// reports that arrive inside the window. Blocking.
    func closedLoop(keys: [String], value: [UInt8], maxInFlight: Int, window: BenchWindow) -> Outcome {
        let state = NIOLockedValueBox(Outcome())
        let room = DispatchSemaphore(value: maxInFlight)
        var index = 0
        while BenchClock.now() < window.end {
            room.wait()
            let sent = BenchClock.now()
            produce(key: keys[index % keys.count], value: value) { report in
                let now = BenchClock.now()
                state.withLockedValue { $0.add(report, now: now, sent: sent, window: window) }
                room.signal()
            }
            index += 1
        }
        return drain(state)
    }

    /// Produces at `rate` records per second on a schedule, latency from each record's intended time, until
    /// the window ends. `value` builds a record's value from its intended time. Blocking.
    func openLoop(
        keys: [String], rate: Double, window: BenchWindow, origin: UInt64,
        value: (UInt64) -> [UInt8]
    ) -> Outcome {
        let state = NIOLockedValueBox(Outcome())
        let interval = 1e9 / rate
        var sentCount = 0
        while true {
            let now = BenchClock.now()
            if now >= window.end { break }
            if now < origin {
                usleep(UInt32(min(1000, (origin - now) / 1000)))
                continue
            }
            let due = Int(Double(now - origin) / interval)
            while sentCount <= due {
                let intended = origin + UInt64(Double(sentCount) * interval)
                if intended >= window.end { break }
                produce(key: keys[sentCount % keys.count], value: value(intended)) { report in
                    let now = BenchClock.now()
                    state.withLockedValue { $0.add(report, now: now, sent: intended, window: window) }
                }
                sentCount += 1
            }
            let next = origin + UInt64(Double(sentCount) * interval)
            let current = BenchClock.now()
            if next > current { usleep(UInt32(min(1000, (next - current) / 1000))) }
        }
        return drain(state)
    }

    /// Writes `count` records to one key as fast as possible and waits for all reports. Blocking.
    func load(key: String, count: Int, value: (Int) -> [UInt8]) -> Outcome {
        let state = NIOLockedValueBox(Outcome())
        let room = DispatchSemaphore(value: 50_000)
        let window = BenchWindow(warmupSeconds: 0, durationSeconds: 3600)
        for index in 0..<count {
            room.wait()
            produce(key: key, value: value(index)) { report in
                state.withLockedValue { $0.add(report, now: BenchClock.now(), sent: 0, window: window) }
                room.signal()
            }
        }
        return drain(state)
    }

    private func produce(key: String, value: [UInt8], onDelivery: @escaping KafkaProducer.DeliveryHandler) {
        var key = key
        let timestamp = Int64(Date().timeIntervalSince1970 * 1000)
        while true {
            let result = key.withUTF8 { key in
                value.withUnsafeBytes { value in
                    producer.produce(
                        topic: topic, key: UnsafeRawBufferPointer(key), value: value,
                        headers: Self.gatewayLikeHeaders, timestampMilliseconds: timestamp,
                        onDelivery: onDelivery)
                }
            }
            switch result {
            case .enqueued: return
            case .queueFull: usleep(100)
            case .failed(let error):
                onDelivery(KafkaDeliveryReport(partition: -1, offset: nil, error: error, persistence: .notPersisted))
                return
            }
        }
    }

    /// Waits until every record has been reported (at most 30 s), then returns the outcome.
    private func drain(_ state: NIOLockedValueBox<Outcome>) -> Outcome {
        let deadline = BenchClock.now() + BenchClock.nanoseconds(30)
        while producer.inFlight > 0, BenchClock.now() < deadline { usleep(1000) }
        return state.withLockedValue { $0 }
    }
}

extension BenchRawProducer.Outcome {
    mutating func add(_ report: KafkaDeliveryReport, now: UInt64, sent: UInt64, window: BenchWindow) {
        completed += 1
        guard report.error == nil else {
            errors += 1
            return
        }
        if let offset = report.offset {
            firstOffset = min(firstOffset, offset)
            lastOffset = max(lastOffset, offset)
        }
        if window.contains(now) {
            inWindow += 1
            latency.record(nanoseconds: now &- sent)
        }
    }
}
