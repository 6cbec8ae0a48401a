import NIOConcurrencyHelpers
import Synchronization

/// A count shared by many threads that tasks can wait on until it reaches zero: a drain waits for the
/// node's in-flight publishes and open connections this way, woken by the decrement that empties it.
///
/// Counting is one atomic operation (it runs twice per publish); only the decrement that reaches zero takes
/// the lock, to wake the waiters. A waiter reads the count under that lock, so it either sees zero or is
/// registered before the emptying decrement looks for waiters.
final class ZeroSignal: Sendable {
    private struct Waiters {
        var continuations: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var next: UInt64 = 0
    }

    private let count = Atomic<Int>(0)
    private let waiters = NIOLockedValueBox(Waiters())

    var value: Int { count.load(ordering: .acquiring) }

    func increment() {
        count.wrappingAdd(1, ordering: .relaxed)
    }

    func decrement() {
        guard count.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        let woken = waiters.withLockedValue { waiters in
            defer { waiters.continuations.removeAll() }
            return Array(waiters.continuations.values)
        }
        for waiter in woken { waiter.resume(returning: true) }
    }

    /// Returns `true` once the count is zero, `false` when `timeout` passes first.
    func waitForZero(timeout: Duration) async -> Bool {
        guard value > 0 else { return true }
        let id = waiters.withLockedValue { waiters in
            defer { waiters.next += 1 }
            return waiters.next
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            let waiter = waiters.withLockedValue { $0.continuations.removeValue(forKey: id) }
            waiter?.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let resumeNow = waiters.withLockedValue { waiters -> Bool in
                guard count.load(ordering: .acquiring) > 0 else { return true }
                waiters.continuations[id] = continuation
                return false
            }
            if resumeNow { continuation.resume(returning: true) }
        }
    }
}
