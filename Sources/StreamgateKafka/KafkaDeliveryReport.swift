/// The outcome of one produced record, as librdkafka's delivery report states it.
public struct KafkaDeliveryReport: Sendable {
    /// Whether the record may be in the log, per `rd_kafka_message_status`.
    public enum Persistence: Sendable {
        /// Definitely not stored: retrying cannot create a duplicate.
        case notPersisted
        /// The outcome cannot be known (a timeout while a request was in flight).
        case possiblyPersisted
        /// Stored and acknowledged by the configured number of replicas.
        case persisted
    }

    public let partition: Int32
    /// The record's offset; `nil` when Kafka reported success without one (a deduplicated retry).
    public let offset: Int64?
    /// `nil` on success.
    public let error: KafkaError?
    public let persistence: Persistence

    public init(partition: Int32, offset: Int64?, error: KafkaError?, persistence: Persistence) {
        self.partition = partition
        self.offset = offset
        self.error = error
        self.persistence = persistence
    }
}

/// A record header to produce. Values are copied by librdkafka during `produce`.
public struct KafkaHeader: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(name: String, string: String) {
        self.name = name
        self.value = Array(string.utf8)
    }
}
