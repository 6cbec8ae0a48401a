import ArgumentParser
import Foundation

/// Options every bench scenario shares: where Kafka and the gateway are, producer settings, output.
struct BenchOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers. Omitted: start `streamgate dev-kafka` as a child process.")
    var brokers: String?
    @Option(help: "Gateway to measure, ws://HOST:PORT. Omitted: start `streamgate serve --port 0` as a child process.")
    var url: String?
    @Option(help: "With --url: the gateway's process id, to read its CPU time.") var gatewayPid: Int32?
    @Option(help: "Producer linger.ms, for the gateway and the raw baseline alike.") var lingerMs = 1
    @Option(
        help: """
            Consumer fetch.wait.max.ms for the gateway's readers (via --kafka) and the raw readers. 10 is the gateway's \
            default; the dev Kafka answers an empty fetch only after this wait, so it bounds delivery latency there.
            """)
    var fetchWaitMs = 10
    @Option(help: "Event-loop threads of the load generator (default: the machine's cores).") var clientThreads: Int?
    @Option(help: "Write the JSON report here (default: standard output only gets the table).") var jsonOut: String?
    @Option(help: "Directory for child process logs.") var logDir: String?
    @Flag(help: "Print the JSON report to standard output too.") var json = false

    /// The executable to start children from: this very program.
    var executable: String {
        let first = CommandLine.arguments[0]
        if first.contains("/") { return URL(fileURLWithPath: first).standardizedFileURL.path }
        return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? first
    }

    /// The librdkafka settings shared by the gateway's producer and the raw baseline.
    var producerSettings: [String: String] {
        [
            "acks": "all", "enable.idempotence": "true", "linger.ms": String(lingerMs),
            "partitioner": "murmur2_random", "message.timeout.ms": "30000", "fetch.wait.max.ms": String(fetchWaitMs),
        ]
    }
}
