import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic time in nanoseconds, comparable across threads of this process.
enum BenchClock {
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    static func nanoseconds(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

    /// Sleeps the task until the monotonic time `deadline`.
    static func sleep(until deadline: UInt64) async {
        let now = now()
        guard deadline > now else { return }
        try? await Task.sleep(nanoseconds: deadline - now)
    }

    /// Runs blocking work on its own thread (never on the cooperative pool) and waits for it.
    static func onThread<R: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = name
            thread.start()
        }
    }
}

/// A measurement window: work before `start` is warm-up, work after `end` is not counted.
struct BenchWindow: Sendable {
    var start: UInt64
    var end: UInt64

    init(warmupSeconds: Double, durationSeconds: Double, from origin: UInt64 = BenchClock.now()) {
        self.start = origin + BenchClock.nanoseconds(warmupSeconds)
        self.end = start + BenchClock.nanoseconds(durationSeconds)
    }

    func contains(_ time: UInt64) -> Bool { time >= start && time < end }
    var seconds: Double { Double(end - start) / 1e9 }
}
