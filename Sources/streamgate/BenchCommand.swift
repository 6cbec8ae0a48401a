import ArgumentParser

/// `streamgate bench`: the load generator, measuring each scenario side by side with its baseline in one run.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks, each against its baseline in the same run (see ops/bench/README.md).",
        subcommands: [BenchS4Publish.self, BenchS5Fanout.self, BenchS7Replay.self, BenchScoreboard.self])
}
