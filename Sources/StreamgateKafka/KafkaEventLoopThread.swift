import CRDKafka
import Foundation
import Synchronization

/// A dedicated thread that serves one librdkafka event queue.
///
/// It blocks in `rd_kafka_queue_poll` (woken at once by an event or by ``stop()``), never sleep-polls,
/// and never runs on an event loop or the cooperative pool.
final class KafkaEventLoopThread: @unchecked Sendable {
    private let queue: OpaquePointer
    private let name: String
    private let handle: (OpaquePointer) -> Void
    private let stopped = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - queue: the queue to serve; the caller keeps ownership and destroys it after ``stop()``.
    ///   - handle: called on the thread for every event; it must not destroy the event.
    init(queue: OpaquePointer, name: String, handle: @escaping (OpaquePointer) -> Void) {
        self.queue = queue
        self.name = name
        self.handle = handle
    }

    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in
            while !stopped.load(ordering: .acquiring) {
                guard let event = rd_kafka_queue_poll(queue, 1000) else { continue }
                handle(event)
                rd_kafka_event_destroy(event)
            }
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Stops the thread after the event it is serving, and waits for it.
    func stop() {
        stopped.store(true, ordering: .releasing)
        rd_kafka_queue_yield(queue)
        if started.load(ordering: .acquiring) { finished.wait() }
    }
}
