import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Sends JSON requests to the etcd gateway, trying the endpoints in turn until one answers.
///
/// An endpoint "does not answer" when the connection fails, no complete answer arrives within the request
/// timeout, or it answers that it cannot serve (HTTP 503 / gRPC `Unavailable`, e.g. a member without a leader).
/// Any other answer, including an error, is the cluster's answer and is not retried elsewhere. The endpoint that
/// answered is tried first by the next call.
final class EtcdTransport: Sendable {
    /// The largest unary answer read: 64 MiB, far above any range placement reads; a cap so a broken peer cannot
    /// exhaust memory.
    static let maximumResponseBytes = 64 << 20
    /// The largest error body read from a failed streaming call.
    static let maximumErrorBodyBytes = 1 << 20

    private enum LogKey {
        static let endpoint = "etcd.endpoint"
        static let path = "etcd.path"
        static let error = "error"
    }

    /// No answer arrived in time.
    private struct Timeout: Error, CustomStringConvertible {
        var duration: Duration
        var description: String { "no answer within \(self.duration)" }
    }

    let http: HTTPClient
    let endpoints: EtcdEndpoints
    let requestTimeout: Duration
    let logger: Logger

    init(endpoints: [EtcdEndpoint], eventLoopGroup: any EventLoopGroup, requestTimeout: Duration, logger: Logger) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: TimeAmount(requestTimeout))
        // Fail a request as soon as its connection fails, so the next endpoint is tried at once (the default
        // retries the same endpoint until the connect timeout).
        configuration.connectionPool.retryConnectionEstablishment = false
        // Every watch holds a connection for its whole life; leave room for them beside the unary calls.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        // The gateway's streams are plain chunked HTTP/1.1 responses.
        configuration.httpVersion = .http1Only
        configuration.redirectConfiguration = .disallow
        self.http = HTTPClient(
            eventLoopGroup: eventLoopGroup,
            configuration: configuration,
            backgroundActivityLogger: logger
        )
        self.endpoints = EtcdEndpoints(endpoints)
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    func shutdown() async throws {
        try await self.http.shutdown()
    }

    /// Posts `request` to `path` and decodes the answer as `Response`.
    ///
    /// Each endpoint gets ``requestTimeout`` for the whole exchange.
    /// - Throws: ``EtcdError``: `.unavailable` when no endpoint answered, or what the answering one said.
    func unary<Response: Decodable>(
        _ path: String,
        _ request: some Encodable,
        as type: Response.Type
    ) async throws -> Response {
        let body = try Self.encode(request)
        return try await self.onFirstAnswering(path) { endpoint in
            let timeout = self.requestTimeout
            let answer = try await Self.withTimeout(timeout) {
                let response = try await self.http.execute(
                    self.makeRequest(endpoint, path, body),
                    deadline: .now() + TimeAmount(timeout),
                    logger: self.logger
                )
                let bytes = try await response.body.collect(upTo: Self.maximumResponseBytes)
                return Answer(status: response.status, body: bytes)
            }
            guard answer.status == .ok else {
                throw EtcdWire.error(status: Int(answer.status.code), body: answer.body)
            }
            return try EtcdWire.decode(type, from: answer.body, what: "the answer to \(path)")
        }
    }

    /// Posts `request` to `path` and returns the response once its head arrived with status 200; the caller reads
    /// the body as it streams. Each endpoint gets ``requestTimeout`` until the head; the body has no deadline.
    /// - Throws: ``EtcdError``: `.unavailable` when no endpoint answered, or what the answering one said.
    func stream(_ path: String, _ request: some Encodable) async throws -> HTTPClientResponse {
        let body = try Self.encode(request)
        return try await self.onFirstAnswering(path) { endpoint in
            let timeout = self.requestTimeout
            let response = try await self.http.execute(
                self.makeRequest(endpoint, path, body),
                deadline: .now() + TimeAmount(timeout),
                logger: self.logger
            )
            guard response.status == .ok else {
                let bytes = try await Self.withTimeout(timeout) {
                    try await response.body.collect(upTo: Self.maximumErrorBodyBytes)
                }
                throw EtcdWire.error(status: Int(response.status.code), body: bytes)
            }
            return response
        }
    }

    // MARK: Failover

    /// Runs `attempt` against each endpoint in turn until one answers.
    ///
    /// `attempt` returning, or throwing an ``EtcdError`` other than `.unavailable`, is an answer; any other error
    /// (or `.unavailable`) moves on to the next endpoint.
    private func onFirstAnswering<Value>(
        _ path: String,
        _ attempt: (EtcdEndpoint) async throws -> Value
    ) async throws -> Value {
        var failures: [String] = []
        var lastFailure: (any Error)?
        for endpoint in await self.endpoints.inTurn() {
            try Task.checkCancellation()
            do {
                let value = try await attempt(endpoint)
                await self.endpoints.answered(endpoint)
                return value
            } catch let error as EtcdError where error.code != .unavailable {
                await self.endpoints.answered(endpoint)
                throw error
            } catch {
                if Task.isCancelled {
                    throw CancellationError()
                }
                self.logger.debug(
                    "etcd endpoint did not answer",
                    metadata: [
                        LogKey.endpoint: "\(endpoint)", LogKey.path: "\(path)", LogKey.error: "\(error)",
                    ]
                )
                failures.append("\(endpoint): \(error)")
                lastFailure = error
            }
        }
        throw EtcdError.unavailable(
            "no etcd endpoint answered \(path) (\(failures.joined(separator: "; ")))",
            cause: lastFailure
        )
    }

    // MARK: Helpers

    private struct Answer: Sendable {
        var status: HTTPResponseStatus
        var body: ByteBuffer
    }

    private func makeRequest(_ endpoint: EtcdEndpoint, _ path: String, _ body: ByteBuffer) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint.baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(body)
        return request
    }

    private static func encode(_ request: some Encodable) throws -> ByteBuffer {
        try JSONEncoder().encodeAsByteBuffer(request, allocator: ByteBufferAllocator())
    }

    /// Runs `operation`, cancelling it and throwing ``Timeout`` when it takes longer than `timeout`.
    private static func withTimeout<Value: Sendable>(
        _ timeout: Duration,
        _ operation: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask {
                try await operation()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw Timeout(duration: timeout)
            }
            return value
        }
    }
}
