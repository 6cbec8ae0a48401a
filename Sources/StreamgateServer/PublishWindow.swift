import Synchronization

/// Publishes of one connection that Kafka has not yet reported on, and their payload bytes, counted from
/// any thread. Every window also counts into the node's total, which a drain waits on.
final class PublishWindow: Sendable {
    private let count = Atomic<Int>(0)
    private let bytes = Atomic<Int>(0)
    private let total: ZeroSignal

    init(total: ZeroSignal = ZeroSignal()) {
        self.total = total
    }

    var current: Int { count.load(ordering: .relaxed) }
    var currentBytes: Int { bytes.load(ordering: .relaxed) }

    func opened(bytes size: Int) {
        count.wrappingAdd(1, ordering: .relaxed)
        bytes.wrappingAdd(size, ordering: .relaxed)
        total.increment()
    }

    /// Returns the count and bytes after the decrement.
    func closed(bytes size: Int) -> (count: Int, bytes: Int) {
        let remainingBytes = bytes.wrappingSubtract(size, ordering: .relaxed).newValue
        let remaining = count.wrappingSubtract(1, ordering: .relaxed).newValue
        total.decrement()
        return (remaining, remainingBytes)
    }
}
