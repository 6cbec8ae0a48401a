import CRDKafka
import Foundation
import Logging
import Synchronization

/// A consumer without a group: the gateway assigns partitions at explicit offsets and reads them on a
/// dedicated thread, handing each record to one handler.
///
/// Each assigned partition has a queue of its own (split off librdkafka's consumer queue before it is
/// assigned) and the thread serves them round robin, at most `batchSize` records of one partition per round.
/// librdkafka prefetches up to `queued.min.messages` records per partition: in one shared queue a partition
/// started during a long replay would wait behind all of the replay's prefetched records. Repositions and
/// a stop are carried out between two rounds.
///
/// The thread never sleep-polls: every queue signals a pipe when it becomes non-empty, and the thread waits
/// on that pipe when a whole round found nothing.
///
/// `auto.offset.reset=error`, so a position outside the retained log is reported, never skipped.
///
/// - Important: `@unchecked Sendable` because librdkafka's consumer handle is thread-safe and the topic
///   name cache and the partition queues are touched only on the reader thread. Call ``shutdown()`` before
///   the last reference goes away.
public final class KafkaPartitionReader: @unchecked Sendable {
    public typealias Handler = (KafkaReaderEvent) -> Void

    private let handle: OpaquePointer
    /// The consumer queue: what is not a partition's (client errors).
    private let queue: OpaquePointer
    private let wakeup: ReaderWakeup
    private let logger: Logger
    private let handler: Handler
    private let batchSize: Int
    private let stopped = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let name: String
    private let finished = DispatchSemaphore(value: 0)
    private var topicNames: [UInt: String] = [:]
    private let commands = Mutex<[Reposition]>([])
    /// Reader thread only: the partitions it reads, with the generation of their last reposition and their queue.
    private var assigned: [PartitionKey: Assignment] = [:]
    /// Reader thread only: the order in which partitions are served; rotated every round.
    private var order: [PartitionKey] = []

    private struct PartitionKey: Hashable {
        var topic: String
        var partition: Int32
    }

    private struct Assignment {
        var generation: UInt64
        var queue: OpaquePointer
    }

    /// - Parameters:
    ///   - configuration: bootstrap servers and tuning; the reader sets the properties its semantics rely on.
    ///   - name: the thread's name.
    ///   - batchSize: most records of one partition handed over per round.
    ///   - handler: called on the reader thread for every event.
    ///
    /// Opens the handle; the thread starts with ``start()``.
    public init(configuration: KafkaConfiguration, name: String, batchSize: Int = 1024, logger: Logger,
                handler: @escaping Handler) throws {
        let conf = try configuration.forAssignedReading().makeNative()
        rd_kafka_conf_set_events(conf, Int32(RD_KAFKA_EVENT_ERROR))
        self.wakeup = try ReaderWakeup()
        self.handle = try makeKafkaHandle(type: RD_KAFKA_CONSUMER, conf: conf)
        rd_kafka_poll_set_consumer(handle)
        self.queue = rd_kafka_queue_get_consumer(handle)
        wakeup.enable(on: queue)
        self.logger = logger
        self.handler = handler
        self.batchSize = batchSize
        self.name = name
    }

    /// Starts the reader thread; ``shutdown()`` stops it. Repositions asked for before are carried out first.
    public func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [unowned self] in self.run() }
        thread.name = name
        thread.start()
    }

    /// A change of what the reader reads, carried out by the reader thread between two rounds.
    struct Reposition {
        var topic: String
        var partition: Int32
        /// `nil` stops reading the partition.
        var offset: Int64?
        var generation: UInt64
    }

    /// Asks the reader to (re)start `partition` of `topic` at `offset`, or to stop reading it when `offset` is
    /// `nil`. Returns at once; the reader thread carries it out before its next round, so no record
    /// fetched for the old position is handed over after it. Every later event of that partition carries
    /// `generation`, which lets the caller tell those events from earlier ones.
    public func reposition(topic: String, partition: Int32, offset: Int64?, generation: UInt64) {
        commands.withLock { $0.append(Reposition(topic: topic, partition: partition, offset: offset, generation: generation)) }
        wakeup.signal()
    }

    /// The low and high watermarks last seen in fetch responses (no request). `nil` when not known yet.
    public func cachedWatermarks(topic: String, partition: Int32) -> (low: Int64, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(handle, topic, partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, low >= 0, high >= 0 else { return nil }
        return (low, high)
    }

    /// Stops the reader thread and destroys the handle. Blocking.
    public func shutdown() {
        stopped.store(true, ordering: .releasing)
        wakeup.signal()
        if started.load(ordering: .acquiring) { finished.wait() }
        for assignment in assigned.values { rd_kafka_queue_destroy(assignment.queue) }
        assigned.removeAll()
        rd_kafka_queue_destroy(queue)
        _ = rd_kafka_consumer_close(handle)
        rd_kafka_destroy(handle)
    }

    /// Serves every partition's queue once per round, then the consumer queue; waits on the wake-up pipe only
    /// when a round found nothing. The pipe is drained before the round, so a queue that fills after it was
    /// found empty has written to the pipe since, and the wait returns at once.
    private func run() {
        var batch = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: batchSize)
        while !stopped.load(ordering: .acquiring) {
            wakeup.drain()
            runCommands()
            var served = 0
            if !order.isEmpty {
                order.append(order.removeFirst())
            }
            for key in order {
                guard let assignment = assigned[key] else { continue }
                let count = batch.withUnsafeMutableBufferPointer {
                    rd_kafka_consume_batch_queue(assignment.queue, 0, $0.baseAddress, batchSize)
                }
                for index in 0..<max(count, 0) {
                    guard let message = batch[index] else { continue }
                    dispatch(message)
                    rd_kafka_message_destroy(message)
                }
                served += max(count, 0)
            }
            while let message = rd_kafka_consume_queue(queue, 0) {
                dispatch(message)
                rd_kafka_message_destroy(message)
                served += 1
            }
            if served > 0 {
                handler(.batchEnd)
            } else {
                wakeup.wait(timeoutMilliseconds: 1000)
            }
        }
        finished.signal()
    }

    private func runCommands() {
        let pending = commands.withLock { commands in
            defer { commands.removeAll() }
            return commands
        }
        for command in pending {
            let key = PartitionKey(topic: command.topic, partition: command.partition)
            do {
                if let previous = assigned.removeValue(forKey: key) {
                    order.removeAll { $0 == key }
                    try withPartitionList(topic: key.topic, partition: key.partition, offset: Int64(RD_KAFKA_OFFSET_INVALID)) {
                        try check(rd_kafka_incremental_unassign(handle, $0))
                    }
                    // What was prefetched for the old position, and what a fetch in flight still brings, goes to
                    // the consumer queue, where librdkafka drops it as outdated: never held, never handed over.
                    rd_kafka_queue_forward(previous.queue, queue)
                    rd_kafka_queue_destroy(previous.queue)
                }
                if let offset = command.offset {
                    // Split the partition's queue off before assigning: librdkafka then leaves it unforwarded.
                    guard let partitionQueue = rd_kafka_queue_get_partition(handle, key.topic, key.partition) else {
                        throw KafkaError.invalidArgument("no queue for \(key.topic) [\(key.partition)]")
                    }
                    rd_kafka_queue_forward(partitionQueue, nil)
                    wakeup.enable(on: partitionQueue)
                    assigned[key] = Assignment(generation: command.generation, queue: partitionQueue)
                    order.append(key)
                    try withPartitionList(topic: key.topic, partition: key.partition, offset: offset) {
                        try check(rd_kafka_incremental_assign(handle, $0))
                    }
                }
            } catch {
                logger.error("reader reposition failed", metadata: [
                    "kafka.topic": "\(key.topic)", "kafka.partition": "\(key.partition)", "kafka.error": "\(error)",
                ])
            }
        }
    }

    private func dispatch(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let err = message.pointee.err
        if err == RD_KAFKA_RESP_ERR_NO_ERROR {
            let topic = topicName(message)
            let generation = assigned[PartitionKey(topic: topic, partition: message.pointee.partition)]?.generation ?? 0
            handler(.record(KafkaRecordView(message: message, topic: topic, generation: generation)))
            return
        }
        guard message.pointee.rkt != nil else {
            handler(.clientError(KafkaError(err, message: errorText(message))))
            return
        }
        let topic = topicName(message)
        let partition = message.pointee.partition
        let generation = assigned[PartitionKey(topic: topic, partition: partition)]?.generation ?? 0
        if err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            handler(.endOfPartition(topic: topic, partition: partition, offset: message.pointee.offset, generation: generation))
        } else {
            handler(.partitionError(topic: topic, partition: partition, offset: message.pointee.offset,
                                    error: KafkaError(err, message: errorText(message)), generation: generation))
        }
    }

    private func topicName(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> String {
        let key = UInt(bitPattern: message.pointee.rkt)
        if let name = topicNames[key] { return name }
        let name = String(cString: rd_kafka_topic_name(message.pointee.rkt))
        topicNames[key] = name
        return name
    }

    private func errorText(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> String {
        guard let payload = message.pointee.payload, message.pointee.len > 0 else {
            return String(cString: rd_kafka_err2str(message.pointee.err))
        }
        return String(decoding: UnsafeRawBufferPointer(start: payload, count: message.pointee.len), as: UTF8.self)
    }
}

/// Builds a one-partition list for the duration of `body`.
func withPartitionList<R>(topic: String, partition: Int32, offset: Int64,
                          _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> R) rethrows -> R {
    let list = rd_kafka_topic_partition_list_new(1)!
    defer { rd_kafka_topic_partition_list_destroy(list) }
    let entry = rd_kafka_topic_partition_list_add(list, topic, partition)!
    entry.pointee.offset = offset
    return try body(list)
}

/// Throws and destroys a librdkafka error object, if any.
func check(_ error: OpaquePointer?) throws {
    guard let error else { return }
    defer { rd_kafka_error_destroy(error) }
    throw KafkaError(rd_kafka_error_code(error), message: String(cString: rd_kafka_error_string(error)))
}
