import Logging
import NIOPosix
import StreamgateEtcd
import Testing

/// Tests against a real etcd process each (see ``EtcdTestServer``). Serialized: several measure time, and the
/// machine running them may be busy.
@Suite(.serialized) struct EtcdLiveTests {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts an etcd, runs `body` with a client of it, then shuts both down.
    static func withEtcd<T>(
        endpointsBefore: [String] = [],
        requestTimeout: Duration = .seconds(3),
        _ body: (EtcdTestServer, EtcdClient) async throws -> T
    ) async throws -> T {
        let server = try await EtcdTestServer.start()
        defer { server.stop() }
        return try await self.withClient(endpoints: endpointsBefore + [server.url], requestTimeout: requestTimeout) {
            try await body(server, $0)
        }
    }

    /// Runs `body` with a client of `endpoints`, then shuts it down.
    static func withClient<T>(
        endpoints: [String],
        requestTimeout: Duration = .seconds(3),
        _ body: (EtcdClient) async throws -> T
    ) async throws -> T {
        let client = try EtcdClient(
            endpoints: endpoints,
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            requestTimeout: requestTimeout,
            logger: Logger(label: "etcd-test")
        )
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Runs `operation` and fails when it takes longer than `timeout`.
    static func within<T: Sendable>(
        _ timeout: Duration,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw Failure(description: "timed out after \(timeout)")
            }
            return value
        }
    }

    /// The first `count` events of `watch` (batches are joined).
    static func events(of watch: EtcdWatchStream, count: Int, within timeout: Duration = .seconds(10))
        async throws -> [EtcdEvent]
    {
        try await self.within(timeout) {
            var events: [EtcdEvent] = []
            for try await batch in watch {
                #expect(!batch.isEmpty)
                events += batch
                if events.count >= count {
                    break
                }
            }
            return events
        }
    }
}
