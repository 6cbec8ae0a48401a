import Foundation
import NIOCore
import NIOPosix

/// The systems under test for one scenario: a Kafka (started here or given), a gateway (started here or
/// given), and the load generator's event loops.
final class BenchEnvironment {
    let options: BenchOptions
    let brokers: String
    let gatewayHost: String
    let gatewayPort: Int
    let group: MultiThreadedEventLoopGroup
    let logDirectory: String
    private let kafka: BenchChildProcess?
    private let gateway: BenchChildProcess?

    private init(
        options: BenchOptions, brokers: String, host: String, port: Int, kafka: BenchChildProcess?,
        gateway: BenchChildProcess?, logDirectory: String
    ) {
        self.options = options
        self.brokers = brokers
        self.gatewayHost = host
        self.gatewayPort = port
        self.kafka = kafka
        self.gateway = gateway
        self.logDirectory = logDirectory
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: options.clientThreads ?? System.coreCount)
    }

    /// Starts what is not given. `extraTopics` are created on a dev Kafka started here (`NAME:PARTITIONS`).
    static func start(_ options: BenchOptions, scenario: String) throws -> BenchEnvironment {
        let logDirectory = options.logDir ?? "\(NSTemporaryDirectory())streamgate-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        var kafka: BenchChildProcess?
        var gateway: BenchChildProcess?
        do {
            let brokers: String
            if let given = options.brokers {
                brokers = given
            } else {
                let child = try BenchChildProcess(
                    name: "\(scenario)-dev-kafka", executable: options.executable,
                    arguments: ["dev-kafka", "--log-level", "warning"], logDirectory: logDirectory)
                kafka = child
                brokers = try child.waitForLine(timeoutSeconds: 30) { $0.contains(":") }
                    .trimmingCharacters(in: .whitespaces)
            }
            let host: String
            let port: Int
            if let url = options.url {
                (host, port) = try parse(url: url)
            } else {
                let child = try BenchChildProcess(
                    name: "\(scenario)-gateway", executable: options.executable,
                    arguments: [
                        "serve", "--brokers", brokers, "--host", "127.0.0.1", "--port", "0",
                        "--node-id", "bench", "--linger-ms", String(options.lingerMs), "--log-level", "warning",
                        "--kafka", "fetch.wait.max.ms=\(options.fetchWaitMs)",
                        // The bench measures throughput, not the per-connection limits meant for internet clients.
                        "--publish-rate", "100000000", "--publish-burst", "100000000",
                        "--max-connections", "1000000",
                    ],
                    logDirectory: logDirectory)
                gateway = child
                let line = try child.waitForLine(timeoutSeconds: 60) { $0.hasPrefix("listening on ") }
                (host, port) = try parse(url: "ws://" + line.dropFirst("listening on ".count))
            }
            return BenchEnvironment(
                options: options, brokers: brokers, host: host, port: port, kafka: kafka,
                gateway: gateway, logDirectory: logDirectory)
        } catch {
            gateway?.stop()
            kafka?.stop()
            throw error
        }
    }

    private static func parse(url: String) throws -> (String, Int) {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else {
            throw BenchError("cannot read HOST:PORT from \(url)")
        }
        return (String(rest[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    /// CPU seconds used so far by the gateway, the dev Kafka and this process.
    func cpu() -> CPUSample {
        CPUSample(
            gateway: gateway?.cpuSeconds() ?? options.gatewayPid.flatMap { ProcessCPU.seconds(pid: $0) },
            kafka: kafka?.cpuSeconds(), bench: ProcessCPU.ownSeconds())
    }

    var gatewayPid: Int32? { gateway?.pid ?? options.gatewayPid }

    /// Stops the gateway, then Kafka, then the event loops.
    func stop() {
        gateway?.stop()
        kafka?.stop()
        try? group.syncShutdownGracefully()
    }
}

/// CPU seconds of the processes taking part, at one moment.
struct CPUSample: Sendable {
    var gateway: Double?
    var kafka: Double?
    var bench: Double?

    static func - (end: CPUSample, start: CPUSample) -> CPUSample {
        func difference(_ a: Double?, _ b: Double?) -> Double? { a.flatMap { a in b.map { a - $0 } } }
        return CPUSample(
            gateway: difference(end.gateway, start.gateway), kafka: difference(end.kafka, start.kafka),
            bench: difference(end.bench, start.bench))
    }
}

extension BenchEnvironment {
    /// Sleeps until the window starts, samples CPU, sleeps until it ends, and returns what was used in between.
    func cpu(during window: BenchWindow) async -> CPUSample {
        await BenchClock.sleep(until: window.start)
        let start = cpu()
        await BenchClock.sleep(until: window.end)
        return cpu() - start
    }
}
