import CRDKafka

/// Blocking metadata look-ups on any librdkafka handle.
enum KafkaMetadata {
    /// Requests metadata for the locally known topics; `nil` when a broker answered.
    static func ping(handle: OpaquePointer, timeoutMilliseconds: Int32) -> KafkaError? {
        var metadata: UnsafePointer<rd_kafka_metadata_t>?
        let err = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMilliseconds)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        return err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err)
    }

    /// The number of partitions of `topic`. Throws when the topic does not exist or no broker answers.
    static func partitionCount(handle: OpaquePointer, topic: String, timeoutMilliseconds: Int32) throws -> Int {
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError(rd_kafka_last_error(), message: "cannot create a handle for topic \(topic)")
        }
        defer { rd_kafka_topic_destroy(topicHandle) }
        var metadata: UnsafePointer<rd_kafka_metadata_t>?
        let err = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt == 1, let entry = metadata.pointee.topics?.pointee else {
            throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, message: "no metadata for topic \(topic)")
        }
        if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(entry.err, message: "topic \(topic): \(String(cString: rd_kafka_err2str(entry.err)))")
        }
        guard entry.partition_cnt > 0 else {
            throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, message: "topic \(topic) has no partitions")
        }
        return Int(entry.partition_cnt)
    }
}
