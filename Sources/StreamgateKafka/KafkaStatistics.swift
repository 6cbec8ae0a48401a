import Foundation

/// What matters of librdkafka's statistics (emitted every `statistics.interval.ms` as JSON): per broker,
/// the request round trip, what waits to be sent and for an answer, and the errors; for the client, its
/// queue. Counters are librdkafka's totals since the handle was created.
public struct KafkaStatistics: Sendable, Equatable {
    public struct Broker: Sendable, Equatable {
        /// `host:port/id` as librdkafka names it.
        public var name: String
        /// `UP`, `DOWN`, `CONNECT`, …
        public var state: String
        /// Request round trip over the last interval, microseconds.
        public var rttAverageMicroseconds: Int64
        public var rttP99Microseconds: Int64
        /// Requests waiting to be sent.
        public var requestsQueued: Int64
        /// Requests sent, waiting for their response.
        public var requestsInFlight: Int64
        public var transmitErrors: Int64
        public var receiveErrors: Int64
        public var requestTimeouts: Int64
        public var disconnects: Int64
    }

    /// Messages in the client's queues (produced, not yet reported).
    public var queuedMessages: Int64
    public var brokers: [Broker]

    /// Parses librdkafka's statistics JSON; `nil` when it is not that. Only real brokers are kept (not the
    /// bootstrap placeholders, whose `nodeid` is -1).
    public init?(json: some Collection<UInt8>) {
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(json)) else { return nil }
        queuedMessages = wire.msg_cnt ?? 0
        brokers = (wire.brokers ?? [:]).values.filter { ($0.nodeid ?? -1) >= 0 }.map { broker in
            Broker(name: broker.name ?? "?", state: broker.state ?? "?",
                   rttAverageMicroseconds: broker.rtt?.avg ?? 0, rttP99Microseconds: broker.rtt?.p99 ?? 0,
                   requestsQueued: broker.outbuf_cnt ?? 0, requestsInFlight: broker.waitresp_cnt ?? 0,
                   transmitErrors: broker.txerrs ?? 0, receiveErrors: broker.rxerrs ?? 0,
                   requestTimeouts: broker.req_timeouts ?? 0, disconnects: broker.disconnects ?? 0)
        }.sorted { $0.name < $1.name }
    }

    // librdkafka's field names (STATISTICS.md).
    private struct Wire: Decodable {
        var msg_cnt: Int64?
        var brokers: [String: BrokerWire]?
    }

    private struct BrokerWire: Decodable {
        struct Window: Decodable {
            var avg: Int64?
            var p99: Int64?
        }
        var name: String?
        var nodeid: Int64?
        var state: String?
        var outbuf_cnt: Int64?
        var waitresp_cnt: Int64?
        var txerrs: Int64?
        var rxerrs: Int64?
        var req_timeouts: Int64?
        var disconnects: Int64?
        var rtt: Window?
    }
}
