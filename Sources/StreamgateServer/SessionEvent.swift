/// Events the gateway fires into a connection's pipeline from outside it.
enum SessionEvent: Sendable {
    /// Stop reading new frames; keep answering in-flight publishes.
    case beginDrain
    /// Close the connection with 1001 (going away).
    case closeForDrain
    /// Publishes were answered: reading may resume.
    case windowReopened
}

/// Fired into a connection's pipeline when its client stopped reading; the session closes it with 4008.
struct SlowConsumerEvent: Sendable {}
