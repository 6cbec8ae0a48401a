import CRDKafka
import Foundation
import Logging
import Synchronization

/// An idempotent librdkafka producer whose delivery reports are served by a dedicated thread.
///
/// Each produced record carries an integer id as its opaque (never a retained object: a synchronous
/// failure yields no report); the id finds the completion handler when the report arrives.
///
/// - Important: `@unchecked Sendable` because librdkafka's producer handle is thread-safe; all Swift state
///   is behind `Mutex`es. Call ``shutdown(timeoutMilliseconds:)`` before the last reference goes away.
public final class KafkaProducer: @unchecked Sendable {
    public typealias DeliveryHandler = @Sendable (KafkaDeliveryReport) -> Void

    /// Result of handing a record to librdkafka.
    public enum ProduceResult: Sendable {
        /// Queued; the handler will be called exactly once.
        case enqueued
        /// librdkafka's local queue is full: back off and retry later; the handler will not be called.
        case queueFull
        /// Refused synchronously; the handler will not be called.
        case failed(KafkaError)
    }

    private struct Pending {
        var handlers: [Int: DeliveryHandler] = [:]
        var nextID = 1
    }

    private let handle: OpaquePointer
    private let queue: OpaquePointer
    private let logger: Logger
    private let pending = Mutex(Pending())
    private let topics = Mutex([String: OpaquePointer]())
    private let fatalError = Mutex<KafkaError?>(nil)
    private let latestStatistics = Mutex<KafkaStatistics?>(nil)
    private var thread: KafkaEventLoopThread!

    /// Creates the producer. Idempotence, `acks=all` and the murmur2 partitioner are always on: they are
    /// what the gateway's acknowledgements and channel→partition mapping mean. Opens the handle; reports
    /// are served from ``start()`` on.
    public init(configuration: KafkaConfiguration, logger: Logger) throws {
        var configuration = configuration
        configuration["enable.idempotence"] = "true"
        configuration["acks"] = "all"
        configuration["partitioner"] = "murmur2_random"
        configuration["log.queue"] = "true"
        // Broker round trips, queues and errors for /metrics; `--kafka statistics.interval.ms=0` turns it off.
        configuration["statistics.interval.ms"] = configuration["statistics.interval.ms"] ?? "5000"
        let conf = try configuration.makeNative()
        rd_kafka_conf_set_events(
            conf, Int32(RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_STATS))
        self.handle = try makeKafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf)
        self.queue = rd_kafka_queue_get_main(handle)
        rd_kafka_set_log_queue(handle, queue)
        self.logger = logger
        self.thread = KafkaEventLoopThread(queue: queue, name: "kafka-producer-events") { [unowned self] event in
            self.serve(event)
        }
    }

    /// Starts the thread that serves delivery reports; ``shutdown(timeoutMilliseconds:)`` stops it.
    /// Records produced before are reported once it runs.
    public func start() {
        thread.start()
    }

    /// The first fatal error seen; when set, the producer acknowledges nothing more.
    public var fatal: KafkaError? { fatalError.withLock { $0 } }

    /// Number of records handed to librdkafka and not yet reported.
    /// librdkafka's latest statistics (every `statistics.interval.ms`, 5 s by default); `nil` before the first.
    public var statistics: KafkaStatistics? { latestStatistics.withLock { $0 } }

    /// Messages and requests in librdkafka's queues, waiting to be sent or for their reports.
    public var queueLength: Int { Int(rd_kafka_outq_len(handle)) }

    public var inFlight: Int { pending.withLock { $0.handlers.count } }

    /// Hands a record to librdkafka (copying key, value and headers).
    ///
    /// - Parameters:
    ///   - topic: the topic; a handle per topic is created once and cached.
    ///   - key: record key bytes.
    ///   - value: record value bytes.
    ///   - headers: record headers.
    ///   - timestampMilliseconds: CreateTime.
    ///   - onDelivery: called once, on the delivery-report thread, when `.enqueued` is returned.
    public func produce(
        topic: String,
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer,
        headers: [KafkaHeader],
        timestampMilliseconds: Int64,
        onDelivery: @escaping DeliveryHandler
    ) -> ProduceResult {
        if let fatal = self.fatal { return .failed(fatal) }
        let topicHandle: OpaquePointer
        do { topicHandle = try self.topicHandle(topic) } catch { return .failed(error as! KafkaError) }
        let id = pending.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.handlers[id] = onDelivery
            return id
        }
        let error = Self.withHeaderValues(headers) { headerValues in
            var vus = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 6 + headerValues.count)
            vus[0].vtype = RD_KAFKA_VTYPE_RKT
            vus[0].u.rkt = topicHandle
            vus[1].vtype = RD_KAFKA_VTYPE_KEY
            vus[1].u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
            vus[1].u.mem.size = key.count
            vus[2].vtype = RD_KAFKA_VTYPE_VALUE
            vus[2].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
            vus[2].u.mem.size = value.count
            vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS
            vus[3].u.i = RD_KAFKA_MSG_F_COPY
            vus[4].vtype = RD_KAFKA_VTYPE_TIMESTAMP
            vus[4].u.i64 = timestampMilliseconds
            vus[5].vtype = RD_KAFKA_VTYPE_OPAQUE
            vus[5].u.ptr = UnsafeMutableRawPointer(bitPattern: id)
            for (index, header) in headerValues.enumerated() {
                vus[6 + index].vtype = RD_KAFKA_VTYPE_HEADER
                vus[6 + index].u.header.name = header.name
                vus[6 + index].u.header.val = header.value
                vus[6 + index].u.header.size = header.size
            }
            return vus.withUnsafeBufferPointer { rd_kafka_produceva(handle, $0.baseAddress, $0.count) }
        }
        guard let error else { return .enqueued }
        _ = pending.withLock { $0.handlers.removeValue(forKey: id) }
        let code = rd_kafka_error_code(error)
        let failure = KafkaError(code, message: String(cString: rd_kafka_error_string(error)))
        rd_kafka_error_destroy(error)
        return code == RD_KAFKA_RESP_ERR__QUEUE_FULL ? .queueFull : .failed(failure)
    }

    /// Asks the cluster for metadata of the known topics, to tell whether Kafka is reachable. Blocking.
    public func checkReachable(timeoutMilliseconds: Int32) -> KafkaError? {
        if let fatal { return fatal }
        return KafkaMetadata.ping(handle: handle, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// The number of partitions of a topic, from cluster metadata. Blocking.
    public func partitionCount(topic: String, timeoutMilliseconds: Int32) throws -> Int {
        try KafkaMetadata.partitionCount(handle: handle, topic: topic, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Fails every record not yet delivered (queued or in flight); their handlers are called with
    /// `_PURGE_QUEUE` (not persisted) or `_PURGE_INFLIGHT` (outcome unknown).
    public func purge() {
        rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING)
    }

    /// Waits for every in-flight record to be reported, then fails whatever is left as not persisted,
    /// and releases the handle. Blocking.
    public func shutdown(timeoutMilliseconds: Int32) {
        let flushResult = rd_kafka_flush(handle, timeoutMilliseconds)
        if flushResult != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("producer flush timed out; purging what is left", metadata: ["kafka.in_flight": "\(inFlight)"])
            rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            _ = rd_kafka_flush(handle, 5000)
        }
        thread.stop()
        let leftover = pending.withLock { state in
            defer { state.handlers.removeAll() }
            return state.handlers.values
        }
        for handler in leftover {
            handler(KafkaDeliveryReport(partition: -1, offset: nil,
                error: KafkaError(RD_KAFKA_RESP_ERR__DESTROY, message: "producer shut down"), persistence: .possiblyPersisted))
        }
        topics.withLock { topics in
            for topic in topics.values { rd_kafka_topic_destroy(topic) }
            topics.removeAll()
        }
        rd_kafka_queue_destroy(queue)
        rd_kafka_destroy(handle)
    }

    private func topicHandle(_ name: String) throws -> OpaquePointer {
        try topics.withLock { topics in
            if let existing = topics[name] { return existing }
            guard let created = rd_kafka_topic_new(handle, name, nil) else {
                throw KafkaError(rd_kafka_last_error(), message: "cannot create a handle for topic \(name)")
            }
            topics[name] = created
            return created
        }
    }

    private func serve(_ event: OpaquePointer) {
        switch Int32(rd_kafka_event_type(event)) {
        case RD_KAFKA_EVENT_DR:
            while let message = rd_kafka_event_message_next(event) {
                let id = Int(bitPattern: message.pointee._private)
                guard let handler = pending.withLock({ $0.handlers.removeValue(forKey: id) }) else { continue }
                handler(Self.report(message))
            }
        case RD_KAFKA_EVENT_ERROR:
            let error = KafkaLogEvent.error(event)
            if error.isFatal {
                var text = [CChar](repeating: 0, count: 512)
                let code = rd_kafka_fatal_error(handle, &text, text.count)
                let fatal = KafkaError(code, message: string(fromErrorBuffer: text), isFatal: true)
                fatalError.withLock { $0 = $0 ?? fatal }
                logger.critical("Kafka producer fatal error; no more acknowledgements", metadata: ["kafka.error": "\(fatal)"])
            } else {
                logger.warning("Kafka producer error", metadata: ["kafka.error": "\(error)"])
            }
        case RD_KAFKA_EVENT_LOG:
            KafkaLogEvent.log(event, to: logger)
        case RD_KAFKA_EVENT_STATS:
            guard let json = rd_kafka_event_stats(event) else { break }
            let bytes = UnsafeRawBufferPointer(start: json, count: strlen(json))
            if let statistics = KafkaStatistics(json: bytes) { latestStatistics.withLock { $0 = statistics } }
        default:
            break
        }
    }

    private static func report(_ message: UnsafePointer<rd_kafka_message_t>) -> KafkaDeliveryReport {
        let err = message.pointee.err
        let persistence: KafkaDeliveryReport.Persistence
        switch rd_kafka_message_status(message) {
        case RD_KAFKA_MSG_STATUS_PERSISTED: persistence = .persisted
        case RD_KAFKA_MSG_STATUS_NOT_PERSISTED: persistence = .notPersisted
        default: persistence = .possiblyPersisted
        }
        let offset = message.pointee.offset
        return KafkaDeliveryReport(
            partition: message.pointee.partition,
            offset: err == RD_KAFKA_RESP_ERR_NO_ERROR && offset >= 0 ? offset : nil,
            error: err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err),
            persistence: err == RD_KAFKA_RESP_ERR_NO_ERROR ? .persisted : persistence
        )
    }

    /// Lays out header names and values as C strings and bytes that live for the duration of `body`.
    private static func withHeaderValues<R>(
        _ headers: [KafkaHeader],
        _ body: ([(name: UnsafePointer<CChar>, value: UnsafeRawPointer?, size: Int)]) -> R
    ) -> R {
        var storage = [UInt8]()
        storage.reserveCapacity(headers.reduce(0) { $0 + $1.name.utf8.count + 1 + $1.value.count })
        var spans: [(name: Int, value: Int, size: Int)] = []
        spans.reserveCapacity(headers.count)
        for header in headers {
            let nameStart = storage.count
            storage.append(contentsOf: header.name.utf8)
            storage.append(0)
            let valueStart = storage.count
            storage.append(contentsOf: header.value)
            spans.append((nameStart, valueStart, header.value.count))
        }
        return storage.withUnsafeBytes { bytes in
            let base = bytes.baseAddress!
            let laidOut = spans.map { span in
                (name: (base + span.name).assumingMemoryBound(to: CChar.self),
                 value: UnsafeRawPointer(base + span.value), size: span.size)
            }
            return body(laidOut)
        }
    }
}
