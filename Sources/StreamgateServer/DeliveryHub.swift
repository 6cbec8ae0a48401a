import CoreMetrics
import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import StreamgateCore
import StreamgateKafka
import Tracing

/// Feeds every local subscription from Kafka: one live reader follows the tail of every partition that has
/// subscribers, one sweep reader serves catch-ups, and each record is encoded once and queued to every
/// subscriber of its channel.
///
/// Each partition's ``PartitionFanout`` sits behind its own lock; reader actions are performed under that
/// lock so that they happen in the order the state machine decided them. Every call is short and
/// non-blocking (reader repositions are queued to the reader threads), so sessions call it from their
/// event loops. A reader that falls outside the retained log is recovered on a queue of its own, with
/// retries and backoff while Kafka does not answer, and counted in ``stalledPartitions`` meanwhile.
final class DeliveryHub: Sendable {
    typealias Fanout = PartitionFanout<Subscription>

    /// A partition's state machine, and the generation of each reader's last reposition of it: events of an
    /// older generation were fetched for a position the state machine has left, and are dropped.
    private struct PartitionState {
        var fanout = Fanout()
        var liveGeneration: UInt64 = 0
        var sweepGeneration: UInt64 = 0
    }

    private final class Slot: Sendable {
        let state = NIOLockedValueBox(PartitionState())
    }

    private let generations = ProcessCounter()
    /// Out-of-range recoveries: look-ups that must not block a reader thread.
    private let recovery = DispatchQueue(label: "streamgate.reader-recovery")
    /// Partitions whose reader waits for a recovery, since when.
    private let stalled = NIOLockedValueBox([TopicPartition: ContinuousClock.Instant]())

    private let slots = NIOLockedValueBox([TopicPartition: Slot]())
    private let readers = NIOLockedValueBox<(live: KafkaPartitionReader, sweep: KafkaPartitionReader)?>(nil)
    private let lookup: any PartitionLookup
    private let metrics: GatewayMetrics?
    private let tracer: LogTracer?
    private let logger: Logger
    private let allocator = ByteBufferAllocator()

    init(configuration: KafkaConfiguration, lookup: any PartitionLookup, metrics: GatewayMetrics? = nil,
         tracer: LogTracer? = nil, logger: Logger) throws {
        self.lookup = lookup
        self.metrics = metrics
        self.tracer = tracer
        self.logger = logger
        let readerConfiguration = configuration
        let live = try KafkaPartitionReader(configuration: readerConfiguration, name: "kafka-live", logger: logger) {
            [unowned self] event in self.handle(event, sweep: false)
        }
        let sweep = try KafkaPartitionReader(configuration: readerConfiguration, name: "kafka-sweep", logger: logger) {
            [unowned self] event in self.handle(event, sweep: true)
        }
        readers.withLockedValue { $0 = (live, sweep) }
    }

    /// Registers `subscription` to start at `resolution.next`, queuing `subscribedFrame` first so that it
    /// precedes every record.
    func subscribe(_ subscription: Subscription, resolution: StartResolution, subscribedFrame: [UInt8]) {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        slot(location).state.withLockedValue { state in
            subscription.outbox.enqueue(bytes: subscribedFrame)
            let actions = state.fanout.subscribe(subscription, channel: subscription.channel.value,
                                                 next: resolution.next, head: resolution.head)
            perform(actions, location, &state)
        }
    }

    /// Removes `subscription`; after this returns no record is queued for it.
    func unsubscribe(_ subscription: Subscription) {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        existingSlot(location)?.state.withLockedValue { state in
            perform(state.fanout.unsubscribe(subscription, channel: subscription.channel.value), location, &state)
        }
    }

    /// Removes `subscription` and returns the next offset it would have been delivered, as one step: every
    /// record before that offset was queued to it, none after. `nil` when it was not subscribed.
    func unsubscribeReturningNext(_ subscription: Subscription) -> Int64? {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        return existingSlot(location)?.state.withLockedValue { state in
            let next = state.fanout.next(of: subscription, channel: subscription.channel.value)
            perform(state.fanout.unsubscribe(subscription, channel: subscription.channel.value), location, &state)
            return next
        }
    }

    /// Lets subscriptions paused by their connection's flow control take records again.
    func resume(_ subscriptions: [Subscription]) {
        for subscription in subscriptions {
            let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
            existingSlot(location)?.state.withLockedValue { state in
                perform(state.fanout.resume(subscription, channel: subscription.channel.value), location, &state)
            }
        }
    }

    /// What this node already knows of a partition's log without asking Kafka: the live reader's next offset
    /// (nothing before it is "latest" any more) and the watermarks of its last fetch since it started
    /// following the partition. `nil` when the live reader does not follow the partition.
    func knownPosition(_ location: TopicPartition) -> KnownPosition? {
        guard let live = readers.withLockedValue({ $0?.live }),
            let liveNext = existingSlot(location)?.state.withLockedValue({ $0.fanout.liveNext })
        else { return nil }
        let cached = live.cachedWatermarks(topic: location.topic, partition: location.partition)
        return KnownPosition(liveNext: liveNext, cached: cached)
    }

    /// The next offset `subscription` would be delivered.
    func next(of subscription: Subscription) -> Int64? {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        return existingSlot(location)?.state.withLockedValue {
            $0.fanout.next(of: subscription, channel: subscription.channel.value)
        }
    }

    /// The subscriptions of every partition of `topic`.
    func subscriptions(topic: String) -> [Subscription] {
        let topicSlots = slots.withLockedValue { $0.filter { $0.key.topic == topic }.map(\.value) }
        return topicSlots.flatMap { $0.state.withLockedValue { $0.fanout.subscribers } }
    }

    /// A `deliver` span for a record that carries a trace context: the hand-over to its subscribers.
    private func traceDelivery(_ record: KafkaRecordView, subscribers: Int, tracer: LogTracer,
                               started: DefaultTracerClock.Instant) {
        var parent: TraceContext?
        record.forEachHeader { name, value in
            guard RecordHeaders.known(UnsafeRawBufferPointer(start: name, count: strlen(name))) == .traceparent else { return }
            parent = TraceContext(traceparent: String(decoding: value, as: UTF8.self))
        }
        guard let parent else { return }
        var context = ServiceContext.topLevel
        context[TraceContextKey.self] = parent
        let span = tracer.startSpan("deliver", context: context, ofKind: .consumer, at: started)
        span.attributes["messaging.destination.name"] = record.topic
        span.attributes["messaging.kafka.destination.partition"] = Int(record.partition)
        span.attributes["messaging.kafka.offset"] = Int(record.offset)
        span.attributes["streamgate.subscribers"] = subscribers
        span.end()
    }

    /// What `/metrics` shows of the readers, summed over the partitions followed.
    struct ReaderSnapshot {
        var partitions = 0
        var subscribers = 0
        var catchingUp = 0
        var paused = 0
        /// Partitions whose catch-up (sweep) reader runs, and the largest distance it has to go to the tail.
        var sweeping = 0
        var maxSweepLag: Int64 = 0
        /// Per partition the live reader follows: records between its position and the high watermark of its
        /// last fetch (librdkafka's cached value: no request).
        var liveLag: [TopicPartition: Int64] = [:]
    }

    /// Walks every partition once (a scrape, not a hot path).
    func readerSnapshot() -> ReaderSnapshot {
        let all = slots.withLockedValue { Array($0) }
        let live = readers.withLockedValue { $0?.live }
        var snapshot = ReaderSnapshot()
        for (location, slot) in all {
            slot.state.withLockedValue { state in
                guard state.fanout.subscriberCount > 0 else { return }
                snapshot.partitions += 1
                snapshot.subscribers += state.fanout.subscriberCount
                snapshot.catchingUp += state.fanout.catchingUpCount
                snapshot.paused += state.fanout.pausedCount
                if let lag = state.fanout.sweepLag {
                    snapshot.sweeping += 1
                    snapshot.maxSweepLag = max(snapshot.maxSweepLag, lag)
                }
                if let liveNext = state.fanout.liveNext,
                   let high = live?.cachedWatermarks(topic: location.topic, partition: location.partition)?.high {
                    snapshot.liveLag[location] = max(0, high - liveNext)
                }
            }
        }
        return snapshot
    }

    /// Partitions whose reader has waited for a recovery look-up longer than `threshold`.
    func stalledPartitions(longerThan threshold: Duration) -> [TopicPartition] {
        let now = ContinuousClock.now
        return stalled.withLockedValue { $0.filter { now - $0.value >= threshold }.map(\.key) }
    }

    /// Starts both readers' threads.
    func start() {
        guard let (live, sweep) = readers.withLockedValue({ $0 }) else { return }
        live.start()
        sweep.start()
    }

    /// Stops both readers. Blocking.
    func shutdown() {
        guard let (live, sweep) = readers.withLockedValue({ readers in defer { readers = nil }; return readers }) else {
            return
        }
        live.shutdown()
        sweep.shutdown()
    }

    private func slot(_ location: TopicPartition) -> Slot {
        slots.withLockedValue { slots in
            if let slot = slots[location] { return slot }
            let slot = Slot()
            slots[location] = slot
            return slot
        }
    }

    private func existingSlot(_ location: TopicPartition) -> Slot? {
        slots.withLockedValue { $0[location] }
    }

    private func existingSlot(topic: String, partition: Int32) -> Slot? {
        existingSlot(TopicPartition(topic: topic, partition: partition))
    }

    // MARK: - Reader events (on the reader threads)

    private func handle(_ event: KafkaReaderEvent, sweep: Bool) {
        switch event {
        case .record(let record):
            guard let slot = existingSlot(topic: record.topic, partition: record.partition) else { return }
            let channel = String(decoding: record.key, as: UTF8.self)
            var frame: ByteBuffer?
            var delivered = 0
            let started = tracer.map { _ in DefaultTracerClock.now }
            let location = TopicPartition(topic: record.topic, partition: record.partition)
            slot.state.withLockedValue { state in
                guard record.generation == (sweep ? state.sweepGeneration : state.liveGeneration) else { return }
                let deliver = { (subscription: Subscription) -> Bool in
                    if frame == nil { frame = self.allocator.buffer(bytes: RecordFrame.encode(record)) }
                    let taken = subscription.outbox.offer(frame!, for: subscription)
                    if taken { delivered += 1 }
                    return taken
                }
                let actions =
                    sweep
                    ? state.fanout.sweepRecord(channel: channel, offset: record.offset, deliver: deliver)
                    : state.fanout.liveRecord(channel: channel, offset: record.offset, deliver: deliver)
                perform(actions, location, &state)
            }
            if delivered > 0, let tracer, let started { traceDelivery(record, subscribers: delivered, tracer: tracer, started: started) }
            if delivered > 0, let metrics {
                metrics.deliveries.increment(by: delivered)
                if record.timestampMilliseconds > 0 {
                    let age = Int64(Date().timeIntervalSince1970 * 1000) - record.timestampMilliseconds
                    metrics.deliveryLatency.recordMilliseconds(max(0, age))
                }
            }
        case .endOfPartition(let topic, let partition, let offset, let generation):
            guard let slot = existingSlot(topic: topic, partition: partition) else { return }
            let location = TopicPartition(topic: topic, partition: partition)
            slot.state.withLockedValue { state in
                guard generation == (sweep ? state.sweepGeneration : state.liveGeneration) else { return }
                let actions = sweep ? state.fanout.sweepReachedEnd(offset: offset) : state.fanout.liveReachedEnd(offset: offset)
                perform(actions, location, &state)
            }
        case .partitionError(let topic, let partition, let offset, let error, let generation):
            let location = TopicPartition(topic: topic, partition: partition)
            if error.isOffsetOutOfRange {
                outOfRange(location, sweep: sweep, generation: generation)
            } else {
                logger.warning("partition read error", metadata: [
                    "kafka.topic": "\(topic)", "kafka.partition": "\(partition)", "kafka.offset": "\(offset)",
                    "kafka.error": "\(error)",
                ])
            }
        case .clientError(let error):
            logger.warning("Kafka reader error", metadata: ["kafka.error": "\(error)", "reader": "\(sweep ? "sweep" : "live")"])
        case .batchEnd:
            guard sweep else { return }
            let locations = slots.withLockedValue { Array($0) }
            for (location, slot) in locations {
                slot.state.withLockedValue { state in
                    guard state.fanout.sweepNext != nil else { return }
                    perform(state.fanout.sweepBatchEnded(), location, &state)
                }
            }
        }
    }

    /// A reader's position is outside the partition's log (retention overtook it, or the log was truncated or
    /// recreated). The reader stopped there (`auto.offset.reset=error`); the watermarks are looked up on the
    /// recovery queue — never on the reader thread, which serves every other partition — and retried with
    /// backoff while Kafka does not answer. Then the gap is announced to whoever it hits and the reader moves on.
    private func outOfRange(_ location: TopicPartition, sweep: Bool, generation: UInt64, attempt: Int = 0) {
        if attempt == 0 { stalled.withLockedValue { $0[location] = $0[location] ?? .now } }
        recovery.async { [self] in
            guard existingSlot(location) != nil, readers.withLockedValue({ $0 != nil }) else { return recovered(location) }
            let watermarks: (low: Int64, high: Int64)
            do {
                watermarks = try lookup.watermarks(topic: location.topic, partition: location.partition,
                                                   timeoutMilliseconds: 5000)
            } catch {
                let delay = min(100 << min(attempt, 6), 5000)
                logger.warning("cannot read the log bounds after an out-of-range read; retrying", metadata: [
                    "kafka.topic": "\(location.topic)", "kafka.partition": "\(location.partition)",
                    "kafka.error": "\(error)", "retry.ms": "\(delay)",
                ])
                recovery.asyncAfter(deadline: .now() + .milliseconds(delay)) {
                    self.outOfRange(location, sweep: sweep, generation: generation, attempt: attempt + 1)
                }
                return
            }
            existingSlot(location)?.state.withLockedValue { state in
                guard generation == (sweep ? state.sweepGeneration : state.liveGeneration) else { return }
                let actions = state.fanout.readerOutOfRange(sweep: sweep, logStart: watermarks.low,
                                                            logEnd: watermarks.high) { subscription, _, gap in
                    subscription.outbox.enqueue(bytes: ServerFrameEncoder.gap(channel: subscription.channel, gap))
                }
                logger.notice("reader position outside the log; gaps announced, reader repositioned", metadata: [
                    "kafka.topic": "\(location.topic)", "kafka.partition": "\(location.partition)",
                    "kafka.low": "\(watermarks.low)", "kafka.high": "\(watermarks.high)",
                ])
                perform(actions, location, &state)
            }
            recovered(location)
        }
    }

    private func recovered(_ location: TopicPartition) {
        _ = stalled.withLockedValue { $0.removeValue(forKey: location) }
    }

    /// Hands the state machine's reader actions to the readers, each under a new generation. Called with the
    /// partition's lock held, so the generations change in the order the actions were decided.
    private func perform(_ actions: [Fanout.Action], _ location: TopicPartition, _ state: inout PartitionState) {
        guard !actions.isEmpty, let (live, sweep) = readers.withLockedValue({ $0 }) else { return }
        for action in actions {
            let generation = generations.next()
            let (reader, offset): (KafkaPartitionReader, Int64?)
            switch action {
            case .startLive(let at), .seekLive(let at): (reader, offset) = (live, at)
            case .stopLive: (reader, offset) = (live, nil)
            case .startSweep(let at), .seekSweep(let at): (reader, offset) = (sweep, at)
            case .stopSweep: (reader, offset) = (sweep, nil)
            }
            if reader === live { state.liveGeneration = generation } else { state.sweepGeneration = generation }
            reader.reposition(topic: location.topic, partition: location.partition, offset: offset, generation: generation)
        }
    }
}
