import StreamgateCore
import Testing

@Suite struct LivenessTests {
    private let second: Int64 = 1_000_000_000

    private func take(_ bucket: inout TokenBucket, _ now: Int64) -> Bool { bucket.take(now: now) }
    private func sweep(_ liveness: inout Liveness, _ now: Int64) -> Liveness.Action? { liveness.sweep(now: now) }

    @Test func pingsEveryIntervalAndTimesOutASilentPeer() {
        var liveness = Liveness(intervalNanoseconds: 25 * second, timeoutNanoseconds: 20 * second, now: 0)
        #expect(sweep(&liveness, 24 * second) == nil)
        #expect(sweep(&liveness, 25 * second) == .sendPing)
        #expect(sweep(&liveness, 44 * second) == nil)
        #expect(sweep(&liveness, 45 * second) == .timedOut)
    }

    @Test func anythingReceivedAfterThePingKeepsTheConnection() {
        var liveness = Liveness(intervalNanoseconds: 25 * second, timeoutNanoseconds: 20 * second, now: 0)
        #expect(sweep(&liveness, 25 * second) == .sendPing)
        liveness.received(now: 30 * second)
        #expect(sweep(&liveness, 46 * second) == nil)
        #expect(sweep(&liveness, 50 * second) == .sendPing)
        // Silence after the second ping: timed out 20 s after it, not after the first.
        #expect(sweep(&liveness, 69 * second) == nil)
        #expect(sweep(&liveness, 70 * second) == .timedOut)
    }

    @Test func aBusyPeerIsStillPinged() {
        var liveness = Liveness(intervalNanoseconds: 10 * second, timeoutNanoseconds: 5 * second, now: 0)
        for tick in 1...30 {
            liveness.received(now: Int64(tick) * second)
            let action = liveness.sweep(now: Int64(tick) * second)
            #expect(action != .timedOut)
            #expect((action == .sendPing) == (tick % 10 == 0), "tick \(tick)")
        }
    }

    @Test func bucketAllowsTheBurstThenTheRate() {
        var bucket = TokenBucket(ratePerSecond: 10, burst: 5, now: 0)
        for _ in 0..<5 { #expect(take(&bucket, 0)) }
        #expect(!take(&bucket, 0))
        #expect(!take(&bucket, second / 20))
        #expect(take(&bucket, second / 10))
        #expect(!take(&bucket, second / 10))
        // A long pause refills to the burst, not beyond.
        for _ in 0..<5 { #expect(take(&bucket, 100 * second)) }
        #expect(!take(&bucket, 100 * second))
    }
}

extension LivenessTests {
    @Test func reportingAnOldFrameTimeAgainDoesNotAnswerAPing() {
        var liveness = Liveness(intervalNanoseconds: 10 * second, timeoutNanoseconds: 5 * second, now: 0)
        liveness.received(now: 3 * second)
        #expect(sweep(&liveness, 10 * second) == .sendPing)
        liveness.received(now: 3 * second)
        #expect(sweep(&liveness, 15 * second) == .timedOut)
    }
}

extension LivenessTests {
    /// Frames reported at the sweep that pings came before the ping: silence after it still times out.
    @Test func framesReportedAtThePingingSweepDoNotAnswerThePing() {
        var liveness = Liveness(intervalNanoseconds: 10 * second, timeoutNanoseconds: 5 * second, now: 0)
        liveness.received(now: 10 * second)
        #expect(sweep(&liveness, 10 * second) == .sendPing)
        #expect(sweep(&liveness, 14 * second) == nil)
        #expect(sweep(&liveness, 15 * second) == .timedOut)
    }
}
