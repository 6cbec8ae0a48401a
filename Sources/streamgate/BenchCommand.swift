import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks (see ops/bench).")
    func run() async throws {
        throw ValidationError("not built yet")
    }
}
