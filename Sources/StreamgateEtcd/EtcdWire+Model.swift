import Foundation
import NIOCore
import NIOFoundationCompat

extension EtcdWire {
    /// The gRPC status codes etcd answers with that this client tells apart.
    enum StatusCode {
        /// `NotFound`: etcd uses it for a missing lease.
        static let notFound = 5
        /// `Unavailable`: no leader, timed out inside etcd, or shutting down; another member may serve.
        static let unavailable = 14
    }

    /// Decodes `type` from `buffer`; a failure is a ``EtcdError/Code/badResponse`` naming `what` was expected.
    static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: buffer)
        } catch {
            throw EtcdError.badResponse("cannot read \(what) from \(self.preview(buffer))", cause: error)
        }
    }

    /// The public form of a key-value pair; absent fields are zero.
    static func keyValue(_ kv: KeyValue) -> EtcdKeyValue {
        EtcdKeyValue(
            key: String(decoding: kv.key ?? Data(), as: UTF8.self),
            value: Array(kv.value ?? Data()),
            createRevision: kv.createRevision?.value ?? 0,
            modRevision: kv.modRevision?.value ?? 0,
            lease: kv.lease?.value ?? 0
        )
    }

    /// The public form of a watch event.
    static func event(_ event: Event) throws -> EtcdEvent {
        let kind: EtcdEvent.Kind
        switch event.type {
        case nil, "PUT": kind = .put
        case "DELETE": kind = .delete
        case let other?: throw EtcdError.badResponse("unknown watch event type \"\(other)\"")
        }
        guard let kv = event.kv else {
            throw EtcdError.badResponse("watch event without a key")
        }
        return EtcdEvent(kind: kind, keyValue: self.keyValue(kv))
    }

    /// The events one watch message carries: none for the "created" acknowledgement and for progress messages.
    /// - Throws: the error that ends the watch when etcd canceled it (``EtcdError/Code/compacted`` when the start
    ///   revision was compacted) or reported a stream error.
    static func events(of message: WatchMessage) throws -> [EtcdEvent] {
        if let error = message.error {
            throw self.error(fromStream: error)
        }
        guard let result = message.result else {
            throw EtcdError.badResponse("watch message without result or error")
        }
        if result.canceled == true {
            if let revision = result.compactRevision?.value, revision > 0 {
                throw EtcdError.compacted(revision: revision)
            }
            throw EtcdError(
                code: .watchCanceled,
                message: "etcd canceled the watch: \(result.cancelReason ?? "no reason given")"
            )
        }
        return try (result.events ?? []).map(self.event)
    }

    /// The error for a unary call that answered `status` with `body` (etcd's `{"error", "message", "code"}`).
    static func error(status: Int, body: ByteBuffer) -> EtcdError {
        let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body)
        let message = decoded?.message ?? decoded?.error ?? self.preview(body)
        return self.error(httpStatus: status, etcdCode: decoded?.code, message: message)
    }

    /// The error for a streaming call's `{"error": {...}}` message.
    static func error(fromStream error: StreamError) -> EtcdError {
        self.error(httpStatus: error.httpCode, etcdCode: error.grpcCode, message: error.message ?? "stream error")
    }

    private static func error(httpStatus: Int?, etcdCode: Int?, message: String) -> EtcdError {
        if etcdCode == StatusCode.notFound, message.contains("lease not found") {
            return EtcdError(code: .leaseNotFound, message: message, httpStatus: httpStatus, etcdCode: etcdCode)
        }
        if etcdCode == StatusCode.unavailable || httpStatus == 503 {
            return EtcdError(code: .unavailable, message: message, httpStatus: httpStatus, etcdCode: etcdCode)
        }
        return EtcdError(code: .httpStatus, message: message, httpStatus: httpStatus, etcdCode: etcdCode)
    }

    /// The start of `buffer` as text, for error messages.
    static func preview(_ buffer: ByteBuffer) -> String {
        let limit = 200
        let text = String(decoding: buffer.readableBytesView.prefix(limit), as: UTF8.self)
        return buffer.readableBytes > limit ? "\"\(text)…\"" : "\"\(text)\""
    }
}
