import Foundation
import Logging
import NIOCore

/// A client of etcd's v3 API through its JSON gateway (`/v3/...` on the client port, etcd 3.4 and later):
/// key-value reads and writes, compare-and-set transactions, leases and watches.
///
/// Requests go to the endpoints in turn, starting with the last one that answered; an endpoint that refuses the
/// connection, does not answer within the request timeout, or answers that it cannot serve (no leader) is
/// skipped. When none answers, the call throws ``EtcdError/Code/unavailable``.
///
/// - Important: A request that timed out may still have been applied by that endpoint before the next one is
///   tried. Every write here is safe to repeat in that sense: a repeated ``createIfAbsent(key:value:leaseID:)``
///   answers `.exists` with the caller's own value, a repeated conditional delete or replace answers `false`.
/// - Important: Call ``shutdown()`` before the last reference goes away.
public final class EtcdClient: Sendable {
    private let transport: EtcdTransport

    /// Creates a client; it connects lazily, on the first request.
    /// - Parameters:
    ///   - endpoints: etcd client URLs such as `["http://127.0.0.1:2379", "http://10.0.0.2:2379"]`, tried in turn,
    ///     remembering the last one that answered.
    ///   - eventLoopGroup: the event loops for the connections (the server's own group).
    ///   - requestTimeout: how long one endpoint may take to answer a unary call (connect, request and complete
    ///     answer), and to answer a watch with its response head. Three seconds by default: well within a lease
    ///     keepalive interval, long enough for a commit on a loaded cluster.
    ///   - logger: receives debug messages about endpoints that did not answer.
    /// - Throws: ``EtcdError/Code/invalidEndpoint`` when `endpoints` is empty or one is not an
    ///   `http(s)://host:port` URL.
    public init(
        endpoints: [String],
        eventLoopGroup: any EventLoopGroup,
        requestTimeout: Duration = .seconds(3),
        logger: Logger
    ) throws {
        guard !endpoints.isEmpty else {
            throw EtcdError(code: .invalidEndpoint, message: "no etcd endpoint given")
        }
        let parsed = try endpoints.enumerated().map { try EtcdEndpoint($0.element, index: $0.offset) }
        self.transport = EtcdTransport(
            endpoints: parsed,
            eventLoopGroup: eventLoopGroup,
            requestTimeout: requestTimeout,
            logger: logger
        )
    }

    /// Closes every connection; requests and watches still running fail.
    public func shutdown() async throws {
        try await self.transport.shutdown()
    }

    // MARK: Leases

    /// Grants a lease that expires `ttlSeconds` after its last keepalive.
    /// - Parameter ttlSeconds: the requested time to live; etcd may raise it to its minimum.
    /// - Returns: the lease's ID and the TTL etcd granted.
    public func grantLease(ttlSeconds: Int64) async throws -> (id: Int64, ttlSeconds: Int64) {
        let response = try await self.transport.unary(
            "/v3/lease/grant",
            EtcdWire.LeaseGrantRequest(ttl: EtcdWire.Integer(ttlSeconds)),
            as: EtcdWire.LeaseGrantResponse.self
        )
        if let error = response.error, !error.isEmpty {
            throw EtcdError(code: .httpStatus, message: "lease grant refused: \(error)")
        }
        guard let id = response.id?.value, id != 0 else {
            throw EtcdError.badResponse("lease grant answered without a lease ID")
        }
        return (id, response.ttl?.value ?? ttlSeconds)
    }

    /// Renews a lease once.
    /// - Parameter leaseID: the lease to renew.
    /// - Returns: the lease's remaining time to live in seconds, which a renewal resets to the granted TTL.
    /// - Throws: ``EtcdError/Code/leaseNotFound`` when the lease is gone (etcd answers TTL 0).
    public func keepAlive(leaseID: Int64) async throws -> Int64 {
        let message = try await self.transport.unary(
            "/v3/lease/keepalive",
            EtcdWire.LeaseIDRequest(id: EtcdWire.Integer(leaseID)),
            as: EtcdWire.LeaseKeepAliveMessage.self
        )
        if let error = message.error {
            throw EtcdWire.error(fromStream: error)
        }
        guard let result = message.result else {
            throw EtcdError.badResponse("lease keepalive answered without result")
        }
        guard let ttl = result.ttl?.value, ttl > 0 else {
            throw EtcdError.leaseNotFound("lease \(leaseID) has expired or was revoked")
        }
        return ttl
    }

    /// Revokes a lease, deleting every key attached to it.
    /// - Parameter id: the lease to revoke.
    /// - Throws: ``EtcdError/Code/leaseNotFound`` when the lease was already gone.
    public func revokeLease(_ id: Int64) async throws {
        _ = try await self.transport.unary(
            "/v3/lease/revoke",
            EtcdWire.LeaseIDRequest(id: EtcdWire.Integer(id)),
            as: EtcdWire.HeaderOnlyResponse.self
        )
    }

    // MARK: Keys

    /// Writes `value` at `key`.
    /// - Parameters:
    ///   - key: the key.
    ///   - value: the value.
    ///   - leaseID: the lease to attach the key to; nil for none (which also detaches it from an earlier lease).
    /// - Returns: the revision of the write.
    /// - Throws: ``EtcdError/Code/leaseNotFound`` when the lease does not exist.
    public func put(key: String, value: [UInt8], leaseID: Int64?) async throws -> Int64 {
        let response = try await self.transport.unary(
            "/v3/kv/put",
            Self.put(key, value, leaseID),
            as: EtcdWire.HeaderOnlyResponse.self
        )
        return try Self.revision(of: response.header, "put")
    }

    /// Writes `value` at `key` only if the key does not exist, in one transaction.
    /// - Parameters:
    ///   - key: the key.
    ///   - value: the value.
    ///   - leaseID: the lease to attach the key to; nil for none.
    /// - Returns: `.created(revision:)` when this call wrote the key, else `.exists` with the key's current state.
    /// - Throws: ``EtcdError/Code/leaseNotFound`` when the lease does not exist.
    public func createIfAbsent(key: String, value: [UInt8], leaseID: Int64?) async throws -> EtcdCreateResult {
        let keyBytes = Data(key.utf8)
        let response = try await self.transport.unary(
            "/v3/kv/txn",
            EtcdWire.TxnRequest(
                compare: [.absent(keyBytes)],
                success: [EtcdWire.RequestOp(requestPut: Self.put(key, value, leaseID))],
                failure: [EtcdWire.RequestOp(requestRange: EtcdWire.RangeRequest(key: keyBytes))]
            ),
            as: EtcdWire.TxnResponse.self
        )
        if response.succeeded == true {
            return .created(revision: try Self.revision(of: response.header, "txn"))
        }
        guard let current = response.responses?.first?.responseRange?.kvs?.first else {
            throw EtcdError.badResponse("create-if-absent of \(key) failed its compare but read no key")
        }
        return .exists(EtcdWire.keyValue(current))
    }

    /// Deletes `key` only if it holds exactly `expected`, in one transaction.
    /// - Parameters:
    ///   - key: the key.
    ///   - expected: the value the key must hold.
    /// - Returns: whether the key was deleted (false when it is absent or holds something else).
    public func delete(key: String, ifValueIs expected: [UInt8]) async throws -> Bool {
        let keyBytes = Data(key.utf8)
        let response = try await self.transport.unary(
            "/v3/kv/txn",
            EtcdWire.TxnRequest(
                compare: [.value(of: keyBytes, is: Data(expected))],
                success: [EtcdWire.RequestOp(requestDeleteRange: EtcdWire.DeleteRangeRequest(key: keyBytes))],
                failure: []
            ),
            as: EtcdWire.TxnResponse.self
        )
        return response.succeeded == true
    }

    /// Writes `value` at `key` only if it holds exactly `expected`, in one transaction.
    /// - Parameters:
    ///   - key: the key.
    ///   - expected: the value the key must hold.
    ///   - value: the new value.
    ///   - leaseID: the lease the key is attached to after the write; nil for none.
    /// - Returns: whether the key was written (false when it is absent or holds something else).
    /// - Throws: ``EtcdError/Code/leaseNotFound`` when the compare held but the lease does not exist.
    public func replace(
        key: String,
        ifValueIs expected: [UInt8],
        with value: [UInt8],
        leaseID: Int64?
    ) async throws -> Bool {
        let response = try await self.transport.unary(
            "/v3/kv/txn",
            EtcdWire.TxnRequest(
                compare: [.value(of: Data(key.utf8), is: Data(expected))],
                success: [EtcdWire.RequestOp(requestPut: Self.put(key, value, leaseID))],
                failure: []
            ),
            as: EtcdWire.TxnResponse.self
        )
        return response.succeeded == true
    }

    /// Reads every key that starts with `prefix`.
    /// - Parameter prefix: the prefix; empty reads every key.
    /// - Returns: the keys in ascending order and the revision they were read at.
    public func range(prefix: String) async throws -> EtcdRangeResult {
        let range = EtcdKeyRange.prefix(prefix)
        let response = try await self.transport.unary(
            "/v3/kv/range",
            EtcdWire.RangeRequest(key: Data(range.key), rangeEnd: Data(range.rangeEnd)),
            as: EtcdWire.RangeResponse.self
        )
        return EtcdRangeResult(
            keyValues: (response.kvs ?? []).map(EtcdWire.keyValue),
            revision: try Self.revision(of: response.header, "range")
        )
    }

    /// Watches the keys that start with `prefix`.
    ///
    /// Nothing is sent until the sequence is iterated; see ``EtcdWatchStream`` for how it ends.
    /// - Parameters:
    ///   - prefix: the prefix; empty watches every key.
    ///   - fromRevision: the first revision to report (inclusive), usually a range's revision + 1; 0 or less means
    ///     from the next change on.
    /// - Returns: the events, batch by batch, in revision order.
    public func watch(prefix: String, fromRevision: Int64) -> EtcdWatchStream {
        let range = EtcdKeyRange.prefix(prefix)
        return EtcdWatchStream(
            transport: self.transport,
            key: range.key,
            rangeEnd: range.rangeEnd,
            fromRevision: fromRevision
        )
    }

    /// Discards the history before `revision` (watches from an earlier revision then fail with
    /// ``EtcdError/Code/compacted``). Operators compact etcd; the tests use this.
    func compact(toRevision revision: Int64) async throws {
        _ = try await self.transport.unary(
            "/v3/kv/compaction",
            EtcdWire.CompactionRequest(revision: EtcdWire.Integer(revision)),
            as: EtcdWire.HeaderOnlyResponse.self
        )
    }

    // MARK: Helpers

    private static func put(_ key: String, _ value: [UInt8], _ leaseID: Int64?) -> EtcdWire.PutRequest {
        EtcdWire.PutRequest(key: Data(key.utf8), value: Data(value), lease: leaseID.map(EtcdWire.Integer.init))
    }

    private static func revision(of header: EtcdWire.ResponseHeader?, _ call: String) throws -> Int64 {
        guard let revision = header?.revision?.value, revision > 0 else {
            throw EtcdError.badResponse("\(call) answered without a revision")
        }
        return revision
    }
}
