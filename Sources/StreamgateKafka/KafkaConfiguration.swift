import CRDKafka

/// librdkafka configuration properties, applied in one place.
///
/// Property names and values are librdkafka's own (`CONFIGURATION.md` of librdkafka 2.0.2).
public struct KafkaConfiguration: Sendable {
    public var properties: [String: String]

    public init(_ properties: [String: String] = [:]) {
        self.properties = properties
    }

    public subscript(key: String) -> String? {
        get { properties[key] }
        set { properties[key] = newValue }
    }

    /// This configuration for a consumer that is only ever assigned partitions at explicit offsets: no group,
    /// no commits, no topic creation, and `auto.offset.reset=error` so that a position outside the
    /// retained log is reported, never skipped.
    func forAssignedReading() -> KafkaConfiguration {
        var configuration = self
        configuration["enable.auto.commit"] = "false"
        configuration["enable.auto.offset.store"] = "false"
        configuration["auto.offset.reset"] = "error"
        configuration["enable.partition.eof"] = "true"
        configuration["allow.auto.create.topics"] = "false"
        if configuration["group.id"] == nil { configuration["group.id"] = "streamgate-assigned-reader" }
        // A reader's warnings are about topics it was told to read (auto-creation notices and the like) and
        // arrive on librdkafka's own logger; its errors reach the handler as events anyway.
        if configuration["log_level"] == nil { configuration["log_level"] = "3" }
        return configuration
    }

    /// Builds a librdkafka configuration object. The caller owns the result until it is passed to `rd_kafka_new`.
    func makeNative() throws -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError.invalidArgument("rd_kafka_conf_new failed") }
        var errstr = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errstr, errstr.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError.invalidArgument("\(key)=\(value): \(string(fromErrorBuffer: errstr))")
            }
        }
        return conf
    }
}

/// Creates a librdkafka handle from a configuration, taking ownership of `conf`.
func makeKafkaHandle(type: rd_kafka_type_t, conf: OpaquePointer) throws -> OpaquePointer {
    var errstr = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError.invalidArgument(string(fromErrorBuffer: errstr))
    }
    return handle
}
