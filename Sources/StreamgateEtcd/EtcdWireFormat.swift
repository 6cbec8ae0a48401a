import Foundation

/// The JSON bodies of the etcd v3 gateway (etcd 3.4, `/v3/...`): the protobuf messages of etcd's gRPC API in
/// proto3's JSON mapping with the original field names.
///
/// - int64 and uint64 travel as JSON strings (`"revision":"12"`); ``Integer`` reads either spelling.
/// - `bytes` travel as base64; `Data` is coded as base64 by `JSONEncoder`/`JSONDecoder` by default.
/// - Fields at their zero value (0, false, empty, the first enum case) are left out of answers, so every response
///   field is optional and absent means zero.
/// - Streaming calls (`/v3/watch`, `/v3/lease/keepalive`) wrap each message as `{"result": …}` or
///   `{"error": …}`.
enum EtcdWire {
    /// An int64 field: written as a JSON string, read from a string or a number.
    struct Integer: Codable, Sendable, Equatable {
        var value: Int64

        init(_ value: Int64) {
            self.value = value
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                guard let value = Int64(text) else {
                    throw DecodingError.dataCorruptedError(
                        in: container,
                        debugDescription: "\"\(text)\" is not an int64"
                    )
                }
                self.value = value
            } else {
                self.value = try container.decode(Int64.self)
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(String(self.value))
        }
    }

    // MARK: Requests

    /// `RangeRequest` (`/v3/kv/range`, and inside a txn).
    struct RangeRequest: Encodable {
        var key: Data
        var rangeEnd: Data?

        enum CodingKeys: String, CodingKey {
            case key
            case rangeEnd = "range_end"
        }
    }

    /// `PutRequest` (`/v3/kv/put`, and inside a txn). No lease (nil) detaches the key from any lease.
    struct PutRequest: Encodable {
        var key: Data
        var value: Data
        var lease: Integer?
    }

    /// `DeleteRangeRequest` (`/v3/kv/deleterange`, and inside a txn).
    struct DeleteRangeRequest: Encodable {
        var key: Data
        var rangeEnd: Data?

        enum CodingKeys: String, CodingKey {
            case key
            case rangeEnd = "range_end"
        }
    }

    /// One `Compare` of a txn; only the forms this client uses.
    struct Compare: Encodable {
        enum Target: String, Encodable {
            case create = "CREATE"
            case value = "VALUE"
        }

        var key: Data
        var target: Target
        var result = "EQUAL"
        var createRevision: Integer?
        var value: Data?

        enum CodingKeys: String, CodingKey {
            case key
            case target
            case result
            case createRevision = "create_revision"
            case value
        }

        /// True when the key does not exist (its create revision is 0).
        static func absent(_ key: Data) -> Compare {
            Compare(key: key, target: .create, createRevision: Integer(0))
        }

        /// True when the key exists and holds exactly `value`.
        static func value(of key: Data, is value: Data) -> Compare {
            Compare(key: key, target: .value, value: value)
        }
    }

    /// `RequestOp`: one operation of a txn branch; exactly one field is set.
    struct RequestOp: Encodable {
        var requestRange: RangeRequest?
        var requestPut: PutRequest?
        var requestDeleteRange: DeleteRangeRequest?

        enum CodingKeys: String, CodingKey {
            case requestRange = "request_range"
            case requestPut = "request_put"
            case requestDeleteRange = "request_delete_range"
        }
    }

    /// `TxnRequest` (`/v3/kv/txn`): if every compare holds, `success` runs, else `failure`.
    struct TxnRequest: Encodable {
        var compare: [Compare]
        var success: [RequestOp]
        var failure: [RequestOp]
    }

    /// `CompactionRequest` (`/v3/kv/compaction`).
    struct CompactionRequest: Encodable {
        var revision: Integer
    }

    /// `LeaseGrantRequest` (`/v3/lease/grant`); etcd picks the ID.
    struct LeaseGrantRequest: Encodable {
        var ttl: Integer

        enum CodingKeys: String, CodingKey {
            case ttl = "TTL"
        }
    }

    /// `LeaseKeepAliveRequest` and `LeaseRevokeRequest` (`/v3/lease/keepalive`, `/v3/lease/revoke`).
    struct LeaseIDRequest: Encodable {
        var id: Integer

        enum CodingKeys: String, CodingKey {
            case id = "ID"
        }
    }

    /// `WatchRequest` (`/v3/watch`) with a `WatchCreateRequest`.
    struct WatchRequest: Encodable {
        struct Create: Encodable {
            var key: Data
            var rangeEnd: Data?
            var startRevision: Integer

            enum CodingKeys: String, CodingKey {
                case key
                case rangeEnd = "range_end"
                case startRevision = "start_revision"
            }
        }

        var createRequest: Create

        enum CodingKeys: String, CodingKey {
            case createRequest = "create_request"
        }
    }

    // MARK: Responses

    /// `ResponseHeader`; only the revision matters here.
    struct ResponseHeader: Decodable {
        var revision: Integer?
    }

    /// `mvccpb.KeyValue`.
    struct KeyValue: Decodable {
        var key: Data?
        var value: Data?
        var createRevision: Integer?
        var modRevision: Integer?
        var lease: Integer?

        enum CodingKeys: String, CodingKey {
            case key
            case value
            case createRevision = "create_revision"
            case modRevision = "mod_revision"
            case lease
        }
    }

    /// `RangeResponse`.
    struct RangeResponse: Decodable {
        var header: ResponseHeader?
        var kvs: [KeyValue]?
    }

    /// `PutResponse`, `DeleteRangeResponse`, `CompactionResponse`, `LeaseRevokeResponse`: a header.
    struct HeaderOnlyResponse: Decodable {
        var header: ResponseHeader?
    }

    /// `ResponseOp`: the answer to one `RequestOp` of the branch that ran.
    struct ResponseOp: Decodable {
        var responseRange: RangeResponse?

        enum CodingKeys: String, CodingKey {
            case responseRange = "response_range"
        }
    }

    /// `TxnResponse`.
    struct TxnResponse: Decodable {
        var header: ResponseHeader?
        var succeeded: Bool?
        var responses: [ResponseOp]?
    }

    /// `LeaseGrantResponse`.
    struct LeaseGrantResponse: Decodable {
        var header: ResponseHeader?
        var id: Integer?
        var ttl: Integer?
        var error: String?

        enum CodingKeys: String, CodingKey {
            case header
            case id = "ID"
            case ttl = "TTL"
            case error
        }
    }

    /// One message of the `/v3/lease/keepalive` stream.
    struct LeaseKeepAliveMessage: Decodable {
        /// `LeaseKeepAliveResponse`: TTL absent or 0 means the lease is gone.
        struct Result: Decodable {
            var header: ResponseHeader?
            var id: Integer?
            var ttl: Integer?

            enum CodingKeys: String, CodingKey {
                case header
                case id = "ID"
                case ttl = "TTL"
            }
        }

        var result: Result?
        var error: StreamError?
    }

    /// One message of the `/v3/watch` stream.
    struct WatchMessage: Decodable {
        /// `WatchResponse`.
        struct Result: Decodable {
            var header: ResponseHeader?
            var events: [Event]?
            var created: Bool?
            var canceled: Bool?
            var compactRevision: Integer?
            var cancelReason: String?

            enum CodingKeys: String, CodingKey {
                case header
                case events
                case created
                case canceled
                case compactRevision = "compact_revision"
                case cancelReason = "cancel_reason"
            }
        }

        var result: Result?
        var error: StreamError?
    }

    /// `mvccpb.Event`: `type` absent means PUT.
    struct Event: Decodable {
        var type: String?
        var kv: KeyValue?
    }

    /// The body of a failed unary call: `{"error": "...", "message": "...", "code": 5}`.
    struct ErrorBody: Decodable {
        var error: String?
        var message: String?
        var code: Int?
    }

    /// The `error` of a failed streaming call: `{"grpc_code": 14, "http_code": 503, "message": "...", ...}`.
    struct StreamError: Decodable {
        var grpcCode: Int?
        var httpCode: Int?
        var message: String?

        enum CodingKeys: String, CodingKey {
            case grpcCode = "grpc_code"
            case httpCode = "http_code"
            case message
        }
    }
}
