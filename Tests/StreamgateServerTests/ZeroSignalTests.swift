import Testing

@testable import StreamgateServer

/// The drain's wait: woken by the decrement that empties the count, bounded by its time-out.
@Suite struct ZeroSignalTests {
    @Test func aWaitReturnsWhenTheCountReachesZero() async {
        let signal = ZeroSignal()
        signal.increment()
        signal.increment()
        let clock = ContinuousClock()
        let started = clock.now
        // The bounds are generous: a full test run on two cores can hold this task back for seconds. A time-out
        // answers false, so `reached` alone shows the wake-up came from the count.
        async let reached = signal.waitForZero(timeout: .seconds(120))
        try? await Task.sleep(for: .milliseconds(50))
        signal.decrement()
        try? await Task.sleep(for: .milliseconds(50))
        signal.decrement()
        #expect(await reached)
        #expect(clock.now - started < .seconds(60))
    }

    @Test func aWaitTimesOutWhileTheCountStaysAboveZero() async {
        let signal = ZeroSignal()
        signal.increment()
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await !signal.waitForZero(timeout: .milliseconds(100)))
        #expect(clock.now - started >= .milliseconds(100))
        #expect(signal.value == 1)
        signal.decrement()
        #expect(await signal.waitForZero(timeout: .milliseconds(100)))
    }
}
