/// An error from ``EtcdClient``.
///
/// Match on ``code``; the other properties carry what etcd or the transport said. New codes may be added, so a
/// `switch` over codes needs a default.
public struct EtcdError: Error, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case unavailable
            case badResponse
            case compacted
            case leaseNotFound
            case httpStatus
            case watchCanceled
            case invalidEndpoint
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// No endpoint answered in time (refused, timed out, dropped the connection, or said it cannot serve),
        /// or a watch lost its connection. ``EtcdError/cause`` holds the last transport failure. Retrying later is
        /// the right reaction.
        public static let unavailable = Code(.unavailable)
        /// An endpoint answered with something that is not the etcd v3 JSON gateway's answer (not JSON, wrong
        /// shape, bad base64, a field out of range). A bug or a wrong endpoint; retrying does not help.
        public static let badResponse = Code(.badResponse)
        /// A watch started at a revision the cluster no longer keeps. ``EtcdError/compactRevision`` is the oldest
        /// revision still available: read the current state again and watch from after it.
        public static let compacted = Code(.compacted)
        /// The lease does not exist (never granted, revoked, or expired). Keys written under it are gone.
        public static let leaseNotFound = Code(.leaseNotFound)
        /// etcd refused the request; ``EtcdError/httpStatus`` and ``EtcdError/etcdCode`` say how.
        public static let httpStatus = Code(.httpStatus)
        /// etcd canceled a watch for a reason other than compaction (``EtcdError/message`` has etcd's reason).
        public static let watchCanceled = Code(.watchCanceled)
        /// An endpoint given to ``EtcdClient/init(endpoints:eventLoopGroup:requestTimeout:logger:)`` is not an
        /// `http://host:port` or `https://host:port` URL.
        public static let invalidEndpoint = Code(.invalidEndpoint)

        public var description: String {
            switch self.base {
            case .unavailable: "unavailable"
            case .badResponse: "bad response"
            case .compacted: "compacted"
            case .leaseNotFound: "lease not found"
            case .httpStatus: "HTTP status"
            case .watchCanceled: "watch canceled"
            case .invalidEndpoint: "invalid endpoint"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable account of what happened, for logs.
    public var message: String
    /// For ``Code/compacted``: the oldest revision the cluster still keeps.
    public var compactRevision: Int64?
    /// The HTTP status etcd answered with, when it answered.
    public var httpStatus: Int?
    /// etcd's own (gRPC) status code from the error body, when it sent one (for example 5 "not found",
    /// 11 "out of range", 14 "unavailable").
    public var etcdCode: Int?
    /// The underlying failure, for ``Code/unavailable`` (the last endpoint's transport error) and some
    /// ``Code/badResponse`` errors (the decoding error).
    public var cause: (any Error)?

    /// Whether the lease is gone (``Code/leaseNotFound``): the one error a lease holder must act on, because every
    /// key it wrote under the lease is gone too.
    public var isLeaseNotFound: Bool {
        self.code == .leaseNotFound
    }

    /// Creates an error; the static functions below are the usual way.
    public init(
        code: Code,
        message: String,
        compactRevision: Int64? = nil,
        httpStatus: Int? = nil,
        etcdCode: Int? = nil,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.compactRevision = compactRevision
        self.httpStatus = httpStatus
        self.etcdCode = etcdCode
        self.cause = cause
    }

    /// No endpoint answered; `cause` is the last transport failure.
    public static func unavailable(_ message: String, cause: (any Error)? = nil) -> EtcdError {
        EtcdError(code: .unavailable, message: message, cause: cause)
    }

    /// An answer that is not what the etcd v3 JSON gateway sends.
    public static func badResponse(_ message: String, cause: (any Error)? = nil) -> EtcdError {
        EtcdError(code: .badResponse, message: message, cause: cause)
    }

    /// A watch's start revision was compacted; `revision` is the oldest revision still kept.
    public static func compacted(revision: Int64) -> EtcdError {
        EtcdError(
            code: .compacted,
            message: "the start revision was compacted; the oldest revision kept is \(revision)",
            compactRevision: revision
        )
    }

    /// The lease does not exist (any more).
    public static func leaseNotFound(_ message: String) -> EtcdError {
        EtcdError(code: .leaseNotFound, message: message)
    }

    public var description: String {
        var text = "EtcdError(\(self.code)): \(self.message)"
        if let httpStatus = self.httpStatus {
            text += " [HTTP \(httpStatus)"
            if let etcdCode = self.etcdCode {
                text += ", etcd code \(etcdCode)"
            }
            text += "]"
        }
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
