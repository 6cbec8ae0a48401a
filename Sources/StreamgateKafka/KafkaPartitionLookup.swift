import CRDKafka
import Foundation
import Logging

/// Blocking questions about one partition at a time: watermarks, the broker's offset for a time, and
/// short reads from an offset. Calls are serialised; run them off event loops.
///
/// - Important: `@unchecked Sendable` because every use of the handle is under `lock`.
public final class KafkaPartitionLookup: @unchecked Sendable {
    private let handle: OpaquePointer
    private let queue: OpaquePointer
    private let lock = NSLock()

    public init(configuration: KafkaConfiguration) throws {
        let conf = try configuration.forAssignedReading().makeNative()
        rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_ERROR))
        self.handle = try makeKafkaHandle(type: RD_KAFKA_CONSUMER, conf: conf)
        rd_kafka_poll_set_consumer(handle)
        self.queue = rd_kafka_queue_get_consumer(handle)
    }

    /// The partition's log-start and end offsets, asked of its leader.
    public func watermarks(topic: String, partition: Int32, timeoutMilliseconds: Int32) throws -> (low: Int64, high: Int64) {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
        return (low, high)
    }

    /// The broker's answer to "the earliest offset whose timestamp is >= `timestampMilliseconds`";
    /// -1 means "none yet" (the end). Callers must verify the answer: some brokers answer wrongly.
    public func brokerOffset(topic: String, partition: Int32, timestampMilliseconds: Int64,
                             timeoutMilliseconds: Int32) throws -> Int64 {
        try lock.withLock {
            try withPartitionList(topic: topic, partition: partition, offset: timestampMilliseconds) { list in
                let err = rd_kafka_offsets_for_times(handle, list, timeoutMilliseconds)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
                let entry = list.pointee.elems.pointee
                guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(entry.err) }
                return entry.offset
            }
        }
    }

    /// Reads `partition` from `offset` and hands records to `body` until it returns `false`, the end of the
    /// partition is reached, or the deadline passes.
    ///
    /// - Returns: the offset after the last record handed over, or the end offset when the end was reached.
    /// - Throws: a ``KafkaError`` (`isOffsetOutOfRange` when `offset` is not in the retained log), or a
    ///   time-out.
    @discardableResult
    public func read(topic: String, partition: Int32, from offset: Int64, timeoutMilliseconds: Int,
                     _ body: (KafkaRecordView) throws -> Bool) throws -> Int64 {
        try lock.withLock {
            try withPartitionList(topic: topic, partition: partition, offset: offset) { list in
                try check(rd_kafka_incremental_assign(handle, list))
            }
            defer {
                _ = try? withPartitionList(topic: topic, partition: partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) {
                    try check(rd_kafka_incremental_unassign(handle, $0))
                }
                drainStale()
            }
            let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
            var position = offset
            while Date() < deadline {
                guard let message = rd_kafka_consume_queue(queue, 200) else { continue }
                defer { rd_kafka_message_destroy(message) }
                guard message.pointee.rkt != nil, message.pointee.partition == partition else { continue }
                let err = message.pointee.err
                if err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return message.pointee.offset }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw KafkaError(err)
                }
                if message.pointee.offset < position { continue }
                position = message.pointee.offset + 1
                let view = KafkaRecordView(message: message, topic: topic)
                if try !body(view) { return position }
            }
            throw KafkaError.timedOut("reading \(topic)/\(partition) from \(offset) took longer than \(timeoutMilliseconds) ms")
        }
    }

    /// The number of partitions of `topic`. Blocking.
    public func partitionCount(topic: String, timeoutMilliseconds: Int32) throws -> Int {
        try lock.withLock { try KafkaMetadata.partitionCount(handle: handle, topic: topic, timeoutMilliseconds: timeoutMilliseconds) }
    }

    /// Destroys the handle. Blocking.
    public func shutdown() {
        lock.withLock {
            rd_kafka_queue_destroy(queue)
            _ = rd_kafka_consumer_close(handle)
            rd_kafka_destroy(handle)
        }
    }

    private func drainStale() {
        while let message = rd_kafka_consume_queue(queue, 0) { rd_kafka_message_destroy(message) }
    }
}
