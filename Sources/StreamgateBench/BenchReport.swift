import Foundation

/// One scenario run: settings, and one row per measured case and side, written as JSON and as a table.
struct BenchReport: Codable {
    var scenario: String
    var startedAt: String
    var cores: Int
    var settings: [String: String]
    var rows: [BenchRow] = []
    var notes: [String] = []

    init(scenario: String, settings: [String: String]) {
        self.scenario = scenario
        self.startedAt = ISO8601DateFormatter().string(from: Date())
        self.cores = ProcessInfo.processInfo.activeProcessorCount
        self.settings = settings
    }

    /// Prints the table, then writes the JSON where the options say.
    func emit(_ options: BenchOptions) throws {
        print(table())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        if let path = options.jsonOut { try data.write(to: URL(fileURLWithPath: path)) }
        if options.json { print(String(decoding: data, as: UTF8.self)) }
    }

    func table() -> String {
        var lines = ["## \(scenario) — \(startedAt), \(cores) cores"]
        lines.append(settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        lines.append(
            "| case | side | rate | ratio | p50 ms | p99 ms | p99.9 ms | gw CPU s | per gw CPU-s | gw µs/msg | errors |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows {
            lines.append(
                "| \(row.name) | \(row.side) | \(Self.rate(row.rate)) \(row.unit) | \(row.ratio.map { String(format: "%.2f", $0) } ?? "") | "
                    + "\(Self.ms(row.latency?.p50)) | \(Self.ms(row.latency?.p99)) | \(Self.ms(row.latency?.p999)) | "
                    + "\(row.gatewayCPUSeconds.map { String(format: "%.2f", $0) } ?? "") | "
                    + "\(row.ratePerGatewayCPUSecond.map { Self.rate($0) } ?? "") | "
                    + "\(row.gatewayMicrosecondsPerMessage.map { String(format: "%.1f", $0) } ?? "") | \(row.errors) |")
        }
        lines.append(contentsOf: notes.map { "- \($0)" })
        return lines.joined(separator: "\n")
    }

    static func rate(_ value: Double) -> String {
        switch value {
        case 1e6...: String(format: "%.2fM", value / 1e6)
        case 1e4...: String(format: "%.1fk", value / 1e3)
        default: String(format: "%.0f", value)
        }
    }

    static func ms(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "" }
}

/// One measured case on one side (baseline or gateway).
struct BenchRow: Codable {
    /// Stable name of the case, the same in every run (the scoreboard groups on it).
    var name: String
    /// `baseline` or `gateway`.
    var side: String
    /// What was measured, in words.
    var what: String
    var unit: String
    var rate: Double
    /// Gateway rate ÷ baseline rate of the same case, on gateway rows.
    var ratio: Double?
    var count: Int
    var seconds: Double
    var offeredRate: Double?
    var latency: LatencySummary?
    var gatewayCPUSeconds: Double?
    var ratePerGatewayCPUSecond: Double?
    var gatewayMicrosecondsPerMessage: Double?
    var kafkaCPUSeconds: Double?
    var benchCPUSeconds: Double?
    var errors: Int = 0

    init(
        name: String, side: String, what: String, unit: String, count: Int, seconds: Double,
        latency: LatencySummary?, cpu: CPUSample, errors: Int = 0, offeredRate: Double? = nil
    ) {
        self.name = name
        self.side = side
        self.what = what
        self.unit = unit
        self.count = count
        self.seconds = seconds
        self.rate = seconds > 0 ? Double(count) / seconds : 0
        self.latency = latency
        self.errors = errors
        self.offeredRate = offeredRate
        self.kafkaCPUSeconds = cpu.kafka
        self.benchCPUSeconds = cpu.bench
        if side == "gateway", let gatewayCPU = cpu.gateway {
            self.gatewayCPUSeconds = gatewayCPU
            if gatewayCPU > 0 { self.ratePerGatewayCPUSecond = Double(count) / gatewayCPU }
            if count > 0 { self.gatewayMicrosecondsPerMessage = gatewayCPU / Double(count) * 1e6 }
        }
    }
}
