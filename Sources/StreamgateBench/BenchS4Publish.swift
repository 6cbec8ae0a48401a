import ArgumentParser
import Logging
import StreamgateClient

/// S4: publish with a durable ack, pipelined, against the raw librdkafka producer with the same settings.
public struct BenchS4Publish: BenchScenario {
    public static let configuration = CommandConfiguration(
        commandName: "s4-publish",
        abstract: "Publish-with-ack throughput and latency vs the raw librdkafka producer (same settings, same Kafka).",
        discussion: """
            Closed loop: each connection keeps --window publishes outstanding, for each payload size; the baseline \
            keeps as many records outstanding in all (--raw-in-flight). Open loop: a fixed rate at fractions of the gateway's \
            closed-loop rate, latency from each publish's intended send time, for gateway and baseline alike.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Client connections publishing.") var connections = 16
    @Option(help: "Publishes outstanding per connection.") var window = 64
    @Option(parsing: .upToNextOption, help: "Payload sizes in bytes (the JSON text of data).") var payloads = [
        100, 1024,
    ]
    @Option(help: "Measured seconds per closed-loop case.") var duration = 4.0
    @Option(help: "Warm-up seconds before each measured case.") var warmup = 1.0
    @Option(
        help: "Records outstanding in the raw producer baseline (default: connections × window, as the gateway case).")
    var rawInFlight: Int?
    @Option(parsing: .upToNextOption, help: "Open-loop rates as fractions of the gateway's closed-loop rate (0: skip).")
    var openLoopFractions = [0.25, 0.5, 0.8]
    @Option(help: "Measured seconds per open-loop case.") var openLoopDuration = 3.0
    @Option(help: "Payload size of the open-loop cases.") var openLoopPayload = 100

    public init() {}

    public func run(logger: Logger) async throws {
        let environment = try BenchEnvironment.start(options, scenario: "s4")
        defer { environment.stop() }
        var settings = options.producerSettings
        settings["connections"] = String(connections)
        settings["window"] = String(window)
        settings["duration_s"] = String(duration)
        settings["raw_in_flight"] = String(rawInFlight ?? connections * window)
        var report = BenchReport(scenario: "s4-publish", settings: settings)
        let channels = (0..<connections).map { "bench.s4.\($0)" }
        let raw = try BenchRawProducer(
            brokers: environment.brokers, topic: "streamgate.events",
            settings: options.producerSettings, logger: logger)
        defer { raw.shutdown() }
        let clients = try await BenchConnections.open(
            count: connections, environment: environment, publishWindow: window)
        var saturation: [Int: Double] = [:]

        for size in payloads {
            let name = "\(size) B pipelined c=\(connections) w=\(window) linger=\(options.lingerMs)ms"
            let value = BenchPayload.padded(size: size)
            let rawWindow = BenchWindow(warmupSeconds: warmup / 2, durationSeconds: duration)
            let rawInFlight = self.rawInFlight ?? connections * window
            async let rawRun = BenchClock.onThread("bench-raw-producer") {
                raw.closedLoop(keys: channels, value: value, maxInFlight: rawInFlight, window: rawWindow)
            }
            let rawCPU = await environment.cpu(during: rawWindow)
            let rawOutcome = try await rawRun
            let baseline = BenchRow(
                name: name, side: "baseline", what: "raw librdkafka producer, delivery reports",
                unit: "msgs/s", count: rawOutcome.inWindow, seconds: rawWindow.seconds,
                latency: rawOutcome.latency.summary, cpu: rawCPU, errors: rawOutcome.errors)
            report.rows.append(baseline)

            let gatewayWindow = BenchWindow(warmupSeconds: warmup, durationSeconds: duration)
            var gatewayCPU = CPUSample()
            var start = CPUSample()
            let outcome = try await BenchPublishing.run(
                connections: clients, channels: channels, mode: { _ in .closedLoop }, window: gatewayWindow,
                origin: BenchClock.now(), windowSize: window, payload: { _ in value },
                atWindowStart: { start = environment.cpu() }, atWindowEnd: { gatewayCPU = environment.cpu() - start })
            var row = BenchRow(
                name: name, side: "gateway", what: "WebSocket publish → ack", unit: "msgs/s",
                count: outcome.ackedInWindow, seconds: gatewayWindow.seconds,
                latency: outcome.latency.summary, cpu: gatewayCPU, errors: outcome.errors)
            row.ratio = baseline.rate > 0 ? row.rate / baseline.rate : nil
            report.rows.append(row)
            saturation[size] = row.rate
            if let error = outcome.lastError { report.notes.append("\(name): \(outcome.errors) errors, e.g. \(error)") }
        }

        let openValue = BenchPayload.padded(size: openLoopPayload)
        let openSaturation = saturation[openLoopPayload] ?? saturation.values.first ?? 0
        for fraction in openLoopFractions where openSaturation > 0 && fraction > 0 {
            let rate = (fraction * openSaturation).rounded()
            let name =
                "\(openLoopPayload) B open loop \(Int(fraction * 100))% of gateway max, linger=\(options.lingerMs)ms"

            let rawWindow = BenchWindow(warmupSeconds: 0.5, durationSeconds: openLoopDuration)
            let rawOrigin = BenchClock.now()
            async let rawRun = BenchClock.onThread("bench-raw-producer") {
                raw.openLoop(keys: channels, rate: rate, window: rawWindow, origin: rawOrigin) { _ in openValue }
            }
            let rawCPU = await environment.cpu(during: rawWindow)
            let rawOutcome = try await rawRun
            let baseline = BenchRow(
                name: name, side: "baseline", what: "raw librdkafka producer at a fixed rate",
                unit: "msgs/s", count: rawOutcome.inWindow, seconds: rawWindow.seconds,
                latency: rawOutcome.latency.summary, cpu: rawCPU, errors: rawOutcome.errors,
                offeredRate: rate)
            report.rows.append(baseline)

            let gatewayWindow = BenchWindow(warmupSeconds: 0.5, durationSeconds: openLoopDuration)
            var gatewayCPU = CPUSample()
            var start = CPUSample()
            let perConnection = rate / Double(connections)
            let outcome = try await BenchPublishing.run(
                connections: clients, channels: channels, mode: { _ in .openLoop(rate: perConnection) },
                window: gatewayWindow, origin: BenchClock.now(), windowSize: window, payload: { _ in openValue },
                atWindowStart: { start = environment.cpu() }, atWindowEnd: { gatewayCPU = environment.cpu() - start })
            var row = BenchRow(
                name: name, side: "gateway", what: "WebSocket publish → ack at a fixed rate",
                unit: "msgs/s", count: outcome.ackedInWindow, seconds: gatewayWindow.seconds,
                latency: outcome.latency.summary, cpu: gatewayCPU,
                errors: outcome.errors + (outcome.overloaded ? 1 : 0), offeredRate: rate)
            row.ratio = baseline.rate > 0 ? row.rate / baseline.rate : nil
            report.rows.append(row)
            if outcome.overloaded { report.notes.append("\(name): the gateway fell behind the offered rate") }
        }
        await BenchConnections.close(clients)
        try report.emit(options)
    }
}
