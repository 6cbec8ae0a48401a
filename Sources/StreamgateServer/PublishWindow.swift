import Synchronization

/// Publishes of one connection that Kafka has not yet reported on, counted from any thread.
final class PublishWindow: Sendable {
    private let count = Atomic<Int>(0)

    var current: Int { count.load(ordering: .relaxed) }

    /// Returns the count after the increment.
    @discardableResult
    func opened() -> Int { count.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Returns the count after the decrement.
    @discardableResult
    func closed() -> Int { count.wrappingSubtract(1, ordering: .relaxed).newValue }
}
