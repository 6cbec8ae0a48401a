import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import StreamgateClient

/// S7: replay of one channel from an old offset by one client, against the raw consumer reading the same range.
public struct BenchS7Replay: BenchScenario {
    public static let configuration = CommandConfiguration(
        commandName: "s7-replay",
        abstract: "Replay of one channel from its first offset vs the raw librdkafka consumer (same records).",
        discussion: """
            Pre-loads --records records into one channel with the raw producer (lz4-compressed batches, so that \
            they fit the dev Kafka's ~5 MiB per-partition cap), then reads them all with the raw consumer, then with \
            one WebSocket client subscribing from {"offset": first}. Time runs from the subscribe (or assignment) \
            to the last record.
            """)

    @OptionGroup var options: BenchOptions
    @Option(help: "Records to pre-load and replay.") var records = 200_000
    @Option(help: "Payload size in bytes.") var payload = 100
    @Option(help: "Seconds allowed for each replay.") var timeout = 40.0

    public init() {}

    public func run(logger: Logger) async throws {
        let environment = try BenchEnvironment.start(options, scenario: "s7")
        defer { environment.stop() }
        var settings = options.producerSettings
        settings["records"] = String(records)
        settings["payload_bytes"] = String(payload)
        settings["preload"] = "raw producer, compression.type=lz4, linger.ms=20"
        var report = BenchReport(scenario: "s7-replay", settings: settings)
        let topic = "streamgate.events"
        let channel = "bench.s7.\(UInt32.random(in: 0...UInt32.max))"
        let brokers = environment.brokers
        let fetchWait = options.fetchWaitMs
        let name = "\(records) records × \(payload) B, one client"

        var preloadSettings = options.producerSettings
        preloadSettings["compression.type"] = "lz4"
        preloadSettings["linger.ms"] = "20"
        preloadSettings["batch.size"] = "1000000"
        let preloader = try BenchRawProducer(brokers: brokers, topic: topic, settings: preloadSettings, logger: logger)
        let value = BenchPayload.padded(size: payload)
        let count = records
        let loaded = try await BenchClock.onThread("bench-preload") {
            preloader.load(key: channel, count: count) { _ in value }
        }
        preloader.shutdown()
        guard loaded.errors == 0, loaded.lastOffset >= 0 else {
            throw BenchError("pre-load failed: \(loaded.errors) of \(count) records not stored")
        }
        let location = try BenchRawReader.locate(brokers: brokers, topic: topic, channel: channel)
        var first = loaded.firstOffset
        var expected = count
        if location.low > first {
            report.notes.append(
                "Kafka pruned offsets \(first)..<\(location.low) before the replay; replaying what is left")
            expected = Int(loaded.lastOffset - location.low + 1)
            first = location.low
        }

        let replayFrom = first
        let wanted = expected
        let key = Array(channel.utf8)
        let raw = try await BenchClock.onThread("bench-raw-reader") {
            try BenchRawReader.catchUp(
                brokers: brokers, topic: topic, partition: location.partition, from: replayFrom,
                key: key, expected: wanted, timeoutSeconds: timeout, fetchWaitMs: fetchWait, logger: logger)
        }
        let baseline = BenchRow(
            name: name, side: "baseline", what: "raw librdkafka consumer from the first offset",
            unit: "msgs/s", count: raw.count, seconds: raw.seconds, latency: nil, cpu: CPUSample(),
            errors: raw.timedOut ? 1 : 0)
        report.rows.append(baseline)

        let replay = try await gatewayReplay(environment, channel: channel, from: first, expected: expected)
        var row = BenchRow(
            name: name, side: "gateway", what: "one WebSocket client subscribing from the first offset",
            unit: "msgs/s", count: replay.count, seconds: replay.seconds, latency: nil, cpu: replay.cpu,
            errors: replay.count < expected ? 1 : 0)
        row.ratio = baseline.rate > 0 ? row.rate / baseline.rate : nil
        report.rows.append(row)
        if let problem = replay.problem { report.notes.append(problem) }
        try report.emit(options)
    }

    private func gatewayReplay(_ environment: BenchEnvironment, channel: String, from first: Int64, expected: Int)
        async throws -> (count: Int, seconds: Double, cpu: CPUSample, problem: String?)
    {
        let loop = environment.group.next()
        let done = loop.makePromise(of: UInt64.self)
        let counter = try await loop.submit { NIOLoopBound(ReplayCounter(), eventLoop: loop) }.get()
        let onFrame: StreamgateConnection.FrameHandler = { frame in
            guard frame.kind == .message else { return }
            counter.value.count += 1
            if counter.value.count == expected { counter.value.finish(done, .success(BenchClock.now())) }
        }
        let clients = try await BenchConnections.open(
            count: 1, environment: environment, loop: { _ in loop }, onFrame: { _ in onFrame })
        let client = clients[0]
        client.onClose { info in
            counter.value.closed = info
            counter.value.finish(done, .failure(BenchError("connection closed: \(info)")))
        }
        let cpuStart = environment.cpu()
        let started = BenchClock.now()
        let reply = try await client.subscribe(channel: channel, from: .offset(first))
        let finished = try? await withThrowingTaskGroup(of: UInt64?.self) { tasks in
            tasks.addTask { try await done.futureResult.get() }
            tasks.addTask {
                try await Task.sleep(nanoseconds: BenchClock.nanoseconds(timeout))
                return nil
            }
            let first = try await tasks.next() ?? nil
            tasks.cancelAll()
            return first
        }
        let end = finished ?? BenchClock.now()
        let cpu = environment.cpu() - cpuStart
        let count = try await loop.submit { counter.value.count }.get()
        await BenchConnections.close(clients)
        var problem: String?
        if !reply.recovered { problem = "subscribed said recovered:false, gap \(String(describing: reply.gap))" }
        if finished == nil {
            let info = try await loop.submit { counter.value.closed }.get()
            problem =
                "gateway replay delivered \(count) of \(expected)" + (info.map { "; connection closed: \($0)" } ?? "")
        }
        return (count, Double(end - started) / 1e9, cpu, problem)
    }
}

/// Messages received by the replaying client (on its event loop).
final class ReplayCounter {
    var count = 0
    var closed: CloseInfo?
    private var finished = false

    func finish(_ promise: EventLoopPromise<UInt64>, _ result: Result<UInt64, any Error>) {
        guard !finished else { return }
        finished = true
        promise.completeWith(result)
    }
}

@available(*, unavailable)
extension ReplayCounter: Sendable {}
