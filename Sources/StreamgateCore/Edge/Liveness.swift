/// When a connection is pinged and when its silence ends it (PROTOCOL §10), without I/O and without a
/// timer of its own: the owner reports what it received and asks at each sweep what to do.
///
/// Times are monotonic nanoseconds. Every `interval` the gateway sends a ping; a connection that sends
/// nothing at all for `timeout` after a ping is timed out (4000). Anything received counts as life. The
/// owner reports frames at sweep times: `received(now: t)` means "frames arrived up to t", so frames
/// reported at the sweep that sends a ping came before it.
public struct Liveness: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        case sendPing
        case timedOut
    }

    private let interval: Int64
    private let timeout: Int64
    private var lastReceived: Int64
    private var lastPing: Int64
    /// When the ping that is still unanswered was sent.
    private var outstandingSince: Int64?

    public init(intervalNanoseconds: Int64, timeoutNanoseconds: Int64, now: Int64) {
        self.interval = intervalNanoseconds
        self.timeout = timeoutNanoseconds
        self.lastReceived = now
        self.lastPing = now
    }

    /// Frames (any frames) arrived up to `now`. Reporting the same or an older time again changes nothing.
    public mutating func received(now: Int64) {
        guard now > lastReceived else { return }
        lastReceived = now
        if let since = outstandingSince, now > since { outstandingSince = nil }
    }

    /// What to do at this sweep.
    public mutating func sweep(now: Int64) -> Action? {
        if let since = outstandingSince, lastReceived <= since, now - since >= timeout {
            return .timedOut
        }
        guard now - lastPing >= interval else { return nil }
        lastPing = now
        if outstandingSince == nil { outstandingSince = now }
        return .sendPing
    }
}

/// A token bucket: `rate` tokens a second up to `burst`, one per publish (PROTOCOL §10 `rate_limited`).
public struct TokenBucket: Sendable, Equatable {
    private let ratePerNanosecond: Double
    private let burst: Double
    private var tokens: Double
    private var updated: Int64

    public init(ratePerSecond: Double, burst: Int, now: Int64) {
        self.ratePerNanosecond = ratePerSecond / 1e9
        self.burst = Double(max(burst, 1))
        self.tokens = Double(max(burst, 1))
        self.updated = now
    }

    /// Takes a token if there is one.
    public mutating func take(now: Int64) -> Bool {
        if now > updated {
            tokens = min(burst, tokens + Double(now - updated) * ratePerNanosecond)
            updated = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
