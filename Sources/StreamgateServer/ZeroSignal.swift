import NIOConcurrencyHelpers

/// A count shared by many threads that tasks can wait on until it reaches zero: a drain waits for the
/// node's in-flight publishes and open connections this way, woken by the decrement that empties it.
final class ZeroSignal: Sendable {
    private struct State {
        var count = 0
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())

    var value: Int { state.withLockedValue { $0.count } }

    func increment() {
        state.withLockedValue { $0.count += 1 }
    }

    func decrement() {
        let woken = state.withLockedValue { state -> [CheckedContinuation<Bool, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume(returning: true) }
    }

    /// Returns `true` once the count is zero, `false` when `timeout` passes first.
    func waitForZero(timeout: Duration) async -> Bool {
        let id = state.withLockedValue { state -> UInt64? in
            guard state.count > 0 else { return nil }
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        guard let id else { return true }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            let waiter = state.withLockedValue { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let resumeNow = state.withLockedValue { state -> Bool in
                guard state.count > 0 else { return true }
                state.waiters[id] = continuation
                return false
            }
            if resumeNow { continuation.resume(returning: true) }
        }
    }
}
