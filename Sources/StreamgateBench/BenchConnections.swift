import NIOCore
import StreamgateClient

/// Opening and closing many client connections to the gateway under test.
enum BenchConnections {
    /// Opens `count` connections, `parallel` at a time; connection `i` uses `onFrame(i)` and event loop
    /// `loop(i)` (default: the group's round robin).
    static func open(
        count: Int, environment: BenchEnvironment, publishWindow: Int = 64, parallel: Int = 64,
        loop: @escaping @Sendable (Int) -> (any EventLoop)? = { _ in nil },
        onFrame: @escaping @Sendable (Int) -> StreamgateConnection.FrameHandler? = { _ in nil }
    )
        async throws -> [StreamgateConnection]
    {
        let configuration = {
            var configuration = StreamgateConnection.Configuration()
            configuration.publishWindow = publishWindow
            return configuration
        }()
        let host = environment.gatewayHost
        let port = environment.gatewayPort
        let group = environment.group
        var connections = [StreamgateConnection?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, StreamgateConnection).self) { tasks in
            @Sendable func connect(_ index: Int) async throws -> (Int, StreamgateConnection) {
                let connection = try await StreamgateConnection.connect(
                    host: host, port: port, configuration: configuration, group: loop(index) ?? group,
                    onFrame: onFrame(index) ?? { _ in })
                return (index, connection)
            }
            var next = 0
            while next < min(parallel, count) {
                let index = next
                tasks.addTask { try await connect(index) }
                next += 1
            }
            while let (index, connection) = try await tasks.next() {
                connections[index] = connection
                if next < count {
                    let index = next
                    tasks.addTask { try await connect(index) }
                    next += 1
                }
            }
        }
        return connections.map { $0! }
    }

    /// Closes connections, `parallel` at a time.
    static func close(_ connections: [StreamgateConnection], parallel: Int = 128) async {
        await withTaskGroup(of: Void.self) { tasks in
            var next = 0
            while next < min(parallel, connections.count) {
                let connection = connections[next]
                tasks.addTask { await connection.close() }
                next += 1
            }
            while await tasks.next() != nil, next < connections.count {
                let connection = connections[next]
                tasks.addTask { await connection.close() }
                next += 1
            }
        }
    }
}
