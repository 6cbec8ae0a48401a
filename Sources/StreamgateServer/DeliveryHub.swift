import Logging
import NIOConcurrencyHelpers
import NIOCore
import StreamgateCore
import StreamgateKafka

/// Feeds every local subscription from Kafka: one live reader follows the tail of every partition that has
/// subscribers, one sweep reader serves catch-ups, and each record is encoded once and queued to every
/// subscriber of its channel.
///
/// Each partition's ``PartitionFanout`` sits behind its own lock; reader actions are performed under that
/// lock so that they happen in the order the state machine decided them.
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

    private let slots = NIOLockedValueBox([TopicPartition: Slot]())
    private let readers = NIOLockedValueBox<(live: KafkaPartitionReader, sweep: KafkaPartitionReader)?>(nil)
    private let lookup: KafkaPartitionLookup
    private let logger: Logger
    private let allocator = ByteBufferAllocator()

    init(configuration: KafkaConfiguration, lookup: KafkaPartitionLookup, logger: Logger) throws {
        self.lookup = lookup
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
    /// precedes every record. Blocking (reader assignment); run off event loops.
    func subscribe(_ subscription: Subscription, resolution: StartResolution, subscribedFrame: [UInt8]) {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        slot(location).state.withLockedValue { state in
            subscription.outbox.enqueue(bytes: subscribedFrame)
            let actions = state.fanout.subscribe(subscription, channel: subscription.channel.value,
                                                 next: resolution.next, head: resolution.head)
            perform(actions, location, &state)
        }
    }

    /// Removes `subscription`; after this returns no record is queued for it. Blocking; run off event loops.
    func unsubscribe(_ subscription: Subscription) {
        let location = TopicPartition(topic: subscription.topic, partition: subscription.partition)
        slot(location).state.withLockedValue { state in
            perform(state.fanout.unsubscribe(subscription, channel: subscription.channel.value), location, &state)
        }
    }

    /// The live reader's view of a partition's watermarks from its last fetch; `nil` when it does not follow
    /// the partition (yet).
    func cachedWatermarks(_ location: TopicPartition) -> (low: Int64, high: Int64)? {
        guard let live = readers.withLockedValue({ $0?.live }),
            existingSlot(topic: location.topic, partition: location.partition)?.state.withLockedValue({ $0.fanout.liveNext != nil }) == true
        else { return nil }
        return live.cachedWatermarks(topic: location.topic, partition: location.partition)
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

    private func existingSlot(topic: String, partition: Int32) -> Slot? {
        slots.withLockedValue { $0[TopicPartition(topic: topic, partition: partition)] }
    }

    // MARK: - Reader events (on the reader threads)

    private func handle(_ event: KafkaReaderEvent, sweep: Bool) {
        switch event {
        case .record(let record):
            guard let slot = existingSlot(topic: record.topic, partition: record.partition) else { return }
            let channel = String(decoding: record.key, as: UTF8.self)
            var frame: ByteBuffer?
            slot.state.withLockedValue { state in
                guard record.generation == (sweep ? state.sweepGeneration : state.liveGeneration) else { return }
                let deliver = { (subscription: Subscription) in
                    if frame == nil { frame = self.allocator.buffer(bytes: RecordFrame.encode(record)) }
                    subscription.outbox.enqueue(frame!)
                }
                if sweep {
                    state.fanout.sweepRecord(channel: channel, offset: record.offset, deliver: deliver)
                } else {
                    state.fanout.liveRecord(channel: channel, offset: record.offset, deliver: deliver)
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

    /// A reader fell out of the retained log: announce the gap to whoever it fed, and move on from the log start.
    private func outOfRange(_ location: TopicPartition, sweep: Bool, generation: UInt64) {
        guard let slot = existingSlot(topic: location.topic, partition: location.partition) else { return }
        let low: Int64
        do {
            low = try lookup.watermarks(topic: location.topic, partition: location.partition, timeoutMilliseconds: 5000).low
        } catch {
            logger.error("cannot read the log start after an out-of-range read", metadata: ["kafka.error": "\(error)"])
            return
        }
        logger.notice("retention overtook a reader; announcing gaps", metadata: [
            "kafka.topic": "\(location.topic)", "kafka.partition": "\(location.partition)", "kafka.low": "\(low)",
        ])
        slot.state.withLockedValue { state in
            guard generation == (sweep ? state.sweepGeneration : state.liveGeneration) else { return }
            let actions = state.fanout.readerOutOfRange(sweep: sweep, logStart: low) { subscription, _, from, to in
                subscription.outbox.enqueue(
                    bytes: ServerFrameEncoder.gap(channel: subscription.channel, .init(from: from, to: to, reason: "retention")))
            }
            perform(actions, location, &state)
        }
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
