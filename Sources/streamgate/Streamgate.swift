import ArgumentParser

@main
struct Streamgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streamgate",
        abstract: "A durable WebSocket gateway on Kafka.",
        subcommands: [ServeCommand.self, DevKafkaCommand.self, ReplayCommand.self, BenchCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
