import ArgumentParser
import Logging

/// A bench scenario: its options, and a run that measures the gateway against its baseline and prints a report.
/// Scenarios are plain option values, so they may be captured by the tasks and threads a run starts.
///
/// The command-line tool wraps each scenario in a subcommand, so that the process's logging is set up in one place
/// and handed in; the scenarios themselves never bootstrap the logging system.
public protocol BenchScenario: ParsableArguments, Sendable {
    /// The subcommand's name, abstract and discussion.
    static var configuration: CommandConfiguration { get }

    /// Runs the scenario to the end: starts what the options do not give, measures, prints the report.
    ///
    /// - Parameters:
    ///   - logger: where the Kafka clients of the baselines log.
    func run(logger: Logger) async throws
}
