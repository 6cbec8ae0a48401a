import CRDKafka

/// A consumed record, borrowed from librdkafka for the duration of one handler call.
///
/// - Important: every buffer points into librdkafka's message, which is destroyed when the handler
///   returns: copy what you keep.
public struct KafkaRecordView {
    let message: UnsafeMutablePointer<rd_kafka_message_t>
    /// The topic's name (cached per topic handle by the reader).
    public let topic: String
    /// The generation of the partition's last reposition (``KafkaPartitionReader/reposition``); 0 elsewhere.
    public var generation: UInt64 = 0

    public var partition: Int32 { message.pointee.partition }
    public var offset: Int64 { message.pointee.offset }
    public var key: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: message.pointee.key, count: message.pointee.key_len) }
    public var value: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: message.pointee.payload, count: message.pointee.len) }

    /// The record's timestamp in milliseconds since the epoch (CreateTime or LogAppendTime), -1 if none.
    public var timestampMilliseconds: Int64 { rd_kafka_message_timestamp(message, nil) }

    /// Calls `body` for each header in order. A header with a null value gets an empty buffer.
    public func forEachHeader(_ body: (_ name: UnsafePointer<CChar>, _ value: UnsafeRawBufferPointer) -> Void) {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return }
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(headers, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            if let name { body(name, UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : size)) }
            index += 1
        }
    }
}

/// What a ``KafkaPartitionReader`` reports to its handler, on its own thread.
public enum KafkaReaderEvent {
    /// The next record of an assigned partition.
    case record(KafkaRecordView)
    /// The reader reached the end of an assigned partition; `offset` is the next offset to be written.
    case endOfPartition(topic: String, partition: Int32, offset: Int64, generation: UInt64)
    /// A partition-level failure, e.g. its position fell out of the retained log (`isOffsetOutOfRange`).
    case partitionError(topic: String, partition: Int32, offset: Int64, error: KafkaError, generation: UInt64)
    /// A client-level failure (brokers down, ...). librdkafka keeps retrying.
    case clientError(KafkaError)
    /// The end of one polled batch: a good moment to flush what the records produced.
    case batchEnd
}
