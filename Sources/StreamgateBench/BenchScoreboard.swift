import ArgumentParser
import Foundation

/// `streamgate bench scoreboard`: folds several runs' JSON reports into one file and a markdown table of
/// medians and spreads.
public struct BenchScoreboard: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scoreboard",
        abstract: "Summarise bench JSON reports (median and min–max over runs) as markdown and JSON.")

    @Argument(help: "JSON reports written by the scenarios' --json-out.") var reports: [String]
    @Option(help: "Write the combined JSON (all runs plus the summary) here.") var out: String?

    struct Summary: Codable {
        var scenario: String
        var name: String
        var side: String
        var runs: Int
        var rate: Spread
        var ratio: Spread?
        var p50: Spread?
        var p99: Spread?
        var p999: Spread?
        var ratePerGatewayCPUSecond: Spread?
        var gatewayMicrosecondsPerMessage: Spread?
        var errors: Int
    }

    struct Spread: Codable {
        var median: Double
        var min: Double
        var max: Double

        init?(_ values: [Double]) {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            let middle = sorted.count / 2
            median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
            min = sorted.first!
            max = sorted.last!
        }
    }

    struct Combined: Codable {
        var generatedAt: String
        var summary: [Summary]
        var runs: [BenchReport]
    }

    public init() {}

    public func run() throws {
        let decoder = JSONDecoder()
        let loaded = try reports.map {
            try decoder.decode(BenchReport.self, from: Data(contentsOf: URL(fileURLWithPath: $0)))
        }
        var order: [String] = []
        var groups: [String: [(BenchReport, BenchRow)]] = [:]
        for report in loaded {
            for row in report.rows {
                let key = "\(report.scenario)\u{1}\(row.name)\u{1}\(row.side)"
                if groups[key] == nil { order.append(key) }
                groups[key, default: []].append((report, row))
            }
        }
        let summary = order.map { key -> Summary in
            let entries = groups[key]!
            let rows = entries.map(\.1)
            return Summary(
                scenario: entries[0].0.scenario, name: rows[0].name, side: rows[0].side, runs: rows.count,
                rate: Spread(rows.map(\.rate))!, ratio: Spread(rows.compactMap(\.ratio)),
                p50: Spread(rows.compactMap { $0.latency?.p50 }), p99: Spread(rows.compactMap { $0.latency?.p99 }),
                p999: Spread(rows.compactMap { $0.latency?.p999 }),
                ratePerGatewayCPUSecond: Spread(rows.compactMap(\.ratePerGatewayCPUSecond)),
                gatewayMicrosecondsPerMessage: Spread(rows.compactMap(\.gatewayMicrosecondsPerMessage)),
                errors: rows.reduce(0) { $0 + $1.errors })
        }
        print(Self.markdown(summary, reports: loaded))
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let combined = Combined(
                generatedAt: ISO8601DateFormatter().string(from: Date()), summary: summary, runs: loaded)
            try encoder.encode(combined).write(to: URL(fileURLWithPath: out))
        }
    }

    static func markdown(_ summary: [Summary], reports: [BenchReport]) -> String {
        var lines: [String] = []
        func values(_ key: String) -> String {
            Set(reports.compactMap { $0.settings[key] }).sorted().joined(separator: "/")
        }
        lines.append(
            "Producer: acks=\(values("acks")), enable.idempotence=\(values("enable.idempotence")), "
                + "linger.ms=\(values("linger.ms")) (s4 names its linger per case; s5/s7 use 1 ms); "
                + "\(reports.first?.cores ?? 0) cores; median (min–max) of \(summary.map(\.runs).max() ?? 0) runs.")
        lines.append("")
        lines.append(
            "| scenario | case | baseline | gateway | ratio | gateway p50 / p99 / p99.9 ms | baseline p99 ms | gateway rate per CPU-s | gateway µs/msg | errors |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        var seen = Set<String>()
        for entry in summary {
            let key = entry.scenario + "\u{1}" + entry.name
            guard seen.insert(key).inserted else { continue }
            let baseline = summary.first {
                $0.scenario == entry.scenario && $0.name == entry.name && $0.side == "baseline"
            }
            let gateway = summary.first {
                $0.scenario == entry.scenario && $0.name == entry.name && $0.side == "gateway"
            }
            let latency =
                gateway.flatMap { g in
                    g.p50.map { "\(number($0.median)) / \(number(g.p99!.median)) / \(number(g.p999!.median))" }
                } ?? ""
            lines.append(
                "| \(entry.scenario) | \(entry.name) | \(baseline.map { rate($0.rate) + " " + reportsUnit($0, reports) } ?? "") | "
                    + "\(gateway.map { rate($0.rate) + " " + reportsUnit($0, reports) } ?? "") | \(gateway?.ratio.map(ratio) ?? "") | \(latency) | "
                    + "\(baseline?.p99.map { spread($0, number) } ?? "") | "
                    + "\(gateway?.ratePerGatewayCPUSecond.map { spread($0, BenchReport.rate) } ?? "") | "
                    + "\(gateway?.gatewayMicrosecondsPerMessage.map { spread($0, number) } ?? "") | "
                    + "\((baseline?.errors ?? 0) + (gateway?.errors ?? 0)) |")
        }
        return lines.joined(separator: "\n")
    }

    private static func reportsUnit(_ summary: Summary, _ reports: [BenchReport]) -> String {
        reports.lazy.flatMap(\.rows).first { $0.name == summary.name && $0.side == summary.side }?.unit ?? ""
    }

    private static func rate(_ value: Spread) -> String { spread(value, BenchReport.rate) }

    private static func ratio(_ value: Spread) -> String { spread(value) { String(format: "%.2f", $0) } }

    private static func number(_ value: Double) -> String {
        value >= 100
            ? String(format: "%.0f", value)
            : value >= 10 ? String(format: "%.1f", value) : String(format: "%.2f", value)
    }

    private static func spread(_ spread: Spread, _ format: (Double) -> String) -> String {
        spread.min == spread.max
            ? format(spread.median) : "\(format(spread.median)) (\(format(spread.min))–\(format(spread.max)))"
    }
}
