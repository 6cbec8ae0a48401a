import ArgumentParser
import Logging
import StreamgateClient
import Synchronization

/// S5: one channel, N subscribers, one publisher at a fixed rate; deliveries per second and publish → deliver
/// latency, against the raw consumer reading the same records.
public struct BenchS5Fanout: BenchScenario {
    public static let configuration = CommandConfiguration(
        commandName: "s5-fanout",
        abstract: "Fan-out of one channel to N subscribers vs the raw librdkafka consumer (same Kafka).",
        discussion: """
            For each N a WebSocket publisher publishes at a fixed rate (--offered deliveries/s ÷ N, or --rate) for \
            the duration; every subscriber counts messages, and samples latency from the intended send time carried \
            in the payload. Baselines: the raw consumer reading the same records from Kafka (msgs/s), and the raw \
            producer → raw consumer latency at the same publish rate.
            """)

    @OptionGroup var options: BenchOptions
    @Option(parsing: .upToNextOption, help: "Subscriber counts, one case each.") var subscribers = [100, 1000]
    @Option(help: "Offered deliveries per second (publish rate × subscribers).") var offered = 100_000.0
    @Option(help: "Publish rate in messages per second (overrides --offered).") var rate: Double?
    @Option(help: "Payload size in bytes.") var payload = 100
    @Option(help: "Measured seconds per case.") var duration = 4.0
    @Option(help: "Warm-up seconds per case.") var warmup = 1.0
    @Option(help: "Parse one message in this many per event loop for latency.") var sampleEvery = 4

    public init() {}

    public func run(logger: Logger) async throws {
        let environment = try BenchEnvironment.start(options, scenario: "s5")
        defer { environment.stop() }
        var settings = options.producerSettings
        settings["payload_bytes"] = String(payload)
        settings["duration_s"] = String(duration)
        var report = BenchReport(scenario: "s5-fanout", settings: settings)
        let run = UInt32.random(in: 0...UInt32.max)
        let topic = "streamgate.events"
        let size = payload

        for count in subscribers {
            let publishRate = rate ?? (offered / Double(count)).rounded()
            let name = "\(count) subscribers × \(Int(publishRate)) msgs/s"
            let channel = "bench.s5.\(count).\(run)"
            let receivers = try await BenchFanoutReceivers.make(group: environment.group, sampleEvery: sampleEvery)
            let clients = try await BenchConnections.open(
                count: count, environment: environment, loop: { receivers.loop($0) }, onFrame: { receivers.handler($0) }
            )
            for client in clients {
                client.onClose { info in
                    if info.serverCode != nil, info.serverCode != 1000 {
                        receivers.closedByServer.add(1, ordering: .relaxed)
                    }
                }
            }
            try await subscribeAll(clients, channel: channel)
            let publisher = try await BenchConnections.open(count: 1, environment: environment, publishWindow: 1024)

            let window = BenchWindow(warmupSeconds: warmup, durationSeconds: duration)
            try await receivers.setWindow(window)
            var start = (cpu: CPUSample(), delivered: 0)
            var end = (cpu: CPUSample(), delivered: 0)
            let published = try await BenchPublishing.run(
                connections: publisher, channels: [channel], mode: { _ in .openLoop(rate: publishRate) },
                window: window,
                origin: BenchClock.now(), windowSize: 1024, payload: { BenchPayload.timestamped($0, size: size) },
                atWindowStart: { start = (environment.cpu(), try await receivers.total().delivered) },
                atWindowEnd: { end = (environment.cpu(), try await receivers.total().delivered) })
            let expected = published.acked * count
            let deadline = BenchClock.now() + BenchClock.nanoseconds(10)
            var total = try await receivers.total()
            while total.delivered < expected, BenchClock.now() < deadline {
                try await Task.sleep(nanoseconds: 50_000_000)
                total = try await receivers.total()
            }
            let closed = receivers.closedByServer.load(ordering: .relaxed)
            var row = BenchRow(
                name: name, side: "gateway", what: "deliveries to WebSocket subscribers", unit: "deliveries/s",
                count: end.delivered - start.delivered, seconds: window.seconds,
                latency: total.latency.summary, cpu: end.cpu - start.cpu,
                errors: max(0, expected - total.delivered) + closed + published.errors + total.gaps,
                offeredRate: publishRate * Double(count))
            if total.delivered < expected || closed > 0 || published.overloaded {
                report.notes.append(
                    "\(name): delivered \(total.delivered) of \(expected); \(closed) subscribers closed by the server"
                        + (published.overloaded ? "; publisher fell behind" : ""))
            }
            await BenchConnections.close(publisher)
            await BenchConnections.close(clients)

            // Baseline 1: the raw consumer reading the records the gateway delivered.
            let location = try BenchRawReader.locate(brokers: environment.brokers, topic: topic, channel: channel)
            let key = Array(channel.utf8)
            let brokers = environment.brokers
            let fetchWait = options.fetchWaitMs
            let firstOffset = published.firstOffset
            let acked = published.acked
            let catchUp = try await BenchClock.onThread("bench-raw-reader") {
                try BenchRawReader.catchUp(
                    brokers: brokers, topic: topic, partition: location.partition, from: firstOffset,
                    key: key, expected: acked, timeoutSeconds: 20, fetchWaitMs: fetchWait, logger: logger)
            }
            let baseline = BenchRow(
                name: name, side: "baseline", what: "raw librdkafka consumer reading the same records",
                unit: "msgs/s", count: catchUp.count, seconds: catchUp.seconds, latency: nil,
                cpu: CPUSample(), errors: catchUp.timedOut ? 1 : 0)
            report.rows.append(baseline)
            row.ratio = baseline.rate > 0 ? row.rate / baseline.rate : nil
            report.rows.append(row)

            // Baseline 2: raw producer → raw consumer latency at the same publish rate.
            report.rows.append(
                try await rawLatency(
                    environment, name: name, channel: channel + ".raw",
                    rate: publishRate, logger: logger))
        }
        try report.emit(options)
    }

    private func subscribeAll(_ clients: [StreamgateConnection], channel: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (index, client) in clients.enumerated() {
                tasks.addTask { _ = try await client.subscribe(channel: channel, from: .latest) }
                if index % 128 == 127 { try await tasks.waitForAll() }
            }
            try await tasks.waitForAll()
        }
    }

    private func rawLatency(
        _ environment: BenchEnvironment, name: String, channel: String, rate: Double,
        logger: Logger
    ) async throws -> BenchRow {
        let topic = "streamgate.events"
        let brokers = environment.brokers
        let fetchWait = options.fetchWaitMs
        let size = payload
        let location = try BenchRawReader.locate(brokers: brokers, topic: topic, channel: channel)
        let window = BenchWindow(warmupSeconds: 1.0, durationSeconds: min(duration, 3))
        let raw = try BenchRawProducer(
            brokers: brokers, topic: topic, settings: options.producerSettings, logger: logger)
        defer { raw.shutdown() }
        let key = Array(channel.utf8)
        async let follower = BenchClock.onThread("bench-raw-follower") {
            try BenchRawReader.follow(
                brokers: brokers, topic: topic, partition: location.partition, from: location.high,
                key: key, window: window, stopAt: window.end + BenchClock.nanoseconds(1),
                fetchWaitMs: fetchWait, logger: logger, ready: {})
        }
        let origin = BenchClock.now() + BenchClock.nanoseconds(0.5)
        let produced = try await BenchClock.onThread("bench-raw-producer") {
            raw.openLoop(keys: [channel], rate: rate, window: window, origin: origin) {
                BenchPayload.timestamped($0, size: size)
            }
        }
        let followed = try await follower
        return BenchRow(
            name: name + " (raw end-to-end latency)", side: "baseline",
            what: "raw producer → raw consumer latency at the publish rate",
            unit: "msgs/s", count: followed.count, seconds: followed.seconds,
            latency: followed.latency.summary, cpu: CPUSample(), errors: produced.errors)
    }
}
