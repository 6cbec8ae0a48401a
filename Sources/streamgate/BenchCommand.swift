import ArgumentParser
import Logging
import StreamgateBench

/// `streamgate bench`: the load generator, measuring each scenario side by side with its baseline in one run.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks, each against its baseline in the same run (see ops/bench/README.md).",
        subcommands: [
            Scenario<BenchS4Publish>.self, Scenario<BenchS5Fanout>.self, Scenario<BenchS7Replay>.self,
            BenchScoreboard.self,
        ])

    /// One scenario as a subcommand: its options and help as the scenario declares them, run with the CLI's
    /// logging (standard error, warnings and up, so standard output stays for the report).
    struct Scenario<Wrapped: BenchScenario>: AsyncParsableCommand {
        static var configuration: CommandConfiguration { Wrapped.configuration }

        @OptionGroup var scenario: Wrapped

        func run() async throws {
            try await scenario.run(logger: LogSetup.bootstrap(level: .warning))
        }
    }
}
