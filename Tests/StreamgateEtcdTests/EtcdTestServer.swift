import Foundation
import Logging
import NIOCore
import NIOPosix
import StreamgateEtcd

/// A real, single-member etcd started by a test: free loopback ports, a temporary data directory, its output in
/// a log file there. ``stop()`` kills it and removes the directory.
///
/// etcd is a required test dependency (`etcd-server`, installed by `ops/install-deps.sh`): when it is missing,
/// ``start()`` throws, so the tests fail instead of skipping.
final class EtcdTestServer {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `http://127.0.0.1:PORT`, the client URL.
    let url: String
    let port: Int
    private let process: Process
    private let directory: URL
    private var stopped = false

    private init(url: String, port: Int, process: Process, directory: URL) {
        self.url = url
        self.port = port
        self.process = process
        self.directory = directory
    }

    /// Starts etcd and returns once it answers a range request.
    static func start() async throws -> EtcdTestServer {
        let executable = try self.findExecutable()
        var lastFailure: (any Error)?
        // Free ports are found by binding port 0 and closing; another process may take one meanwhile, so retry.
        for _ in 0..<3 {
            do {
                return try await self.start(executable: executable)
            } catch let failure as Failure where failure.description.contains("address already in use") {
                lastFailure = failure
            }
        }
        throw lastFailure ?? Failure(description: "etcd did not start")
    }

    private static func start(executable: URL) async throws -> EtcdTestServer {
        let clientPort = try await self.freePort()
        let peerPort = try await self.freePort()
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("streamgate-etcd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let logURL = directory.appendingPathComponent("etcd.log")
        guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else {
            throw Failure(description: "cannot create \(logURL.path)")
        }
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }

        let clientURL = "http://127.0.0.1:\(clientPort)"
        let peerURL = "http://127.0.0.1:\(peerPort)"
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "--name", "test",
            "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", clientURL,
            "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL,
            "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "test=\(peerURL)",
        ]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let server = EtcdTestServer(url: clientURL, port: clientPort, process: process, directory: directory)

        let answered = try await server.waitUntilAnswering(within: .seconds(20))
        guard answered else {
            let output = server.log()
            let status = process.isRunning ? "did not answer within 20 s" : "exited (\(process.terminationStatus))"
            server.stop()
            throw Failure(description: "etcd \(status) at start:\n\(output)")
        }
        return server
    }

    /// Polls with range requests until etcd answers, exits, or `timeout` passes.
    private func waitUntilAnswering(within timeout: Duration) async throws -> Bool {
        let client = try EtcdClient(
            endpoints: [self.url],
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            requestTimeout: .seconds(1),
            logger: Logger(label: "etcd-test-server")
        )
        let deadline = ContinuousClock.now + timeout
        var answered = false
        while !answered, self.process.isRunning, ContinuousClock.now < deadline {
            answered = (try? await client.range(prefix: "/")) != nil
            if !answered {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        try await client.shutdown()
        return answered
    }

    deinit {
        self.stop()
    }

    /// Kills etcd (SIGKILL: like a crash, every connection drops at once) and removes its directory.
    func stop() {
        guard !self.stopped else { return }
        self.stopped = true
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// etcd's output so far, for failure messages.
    func log() -> String {
        let text = (try? String(contentsOf: self.directory.appendingPathComponent("etcd.log"), encoding: .utf8)) ?? ""
        return String(text.suffix(4000))
    }

    /// The value of one of etcd's Prometheus metrics (`GET /metrics`, read over a plain socket).
    func metric(_ name: String) async throws -> Double? {
        let response = try await self.get("/metrics")
        for line in response.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    /// Polls `metric` until it equals `value`; returns the last value seen.
    func waitForMetric(_ name: String, toBe value: Double, within timeout: Duration = .seconds(10)) async throws
        -> Double?
    {
        let deadline = ContinuousClock.now + timeout
        var seen = try await self.metric(name)
        while seen != value, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            seen = try await self.metric(name)
        }
        return seen
    }

    private func get(_ path: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
            var response = ""
            for try await chunk in inbound {
                response += String(buffer: chunk)
            }
            return response
        }
    }

    private static func findExecutable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"] {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent("etcd")
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        throw Failure(
            description: """
                etcd is not installed (no `etcd` on PATH): these tests need a real etcd 3.4+. \
                Install it with ops/install-deps.sh (Debian: apt-get install etcd-server).
                """
        )
    }

    /// A loopback port nothing listens on right now.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        guard port > 0 else { throw Failure(description: "no free port") }
        return port
    }
}

/// A loopback server that accepts connections and never answers: an endpoint that hangs.
struct SilentServer {
    let url: String
    private let channel: any Channel

    static func start() async throws -> SilentServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        return SilentServer(url: "http://127.0.0.1:\(channel.localAddress?.port ?? 0)", channel: channel)
    }

    func stop() async throws {
        try await self.channel.close()
    }
}
