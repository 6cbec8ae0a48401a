import NIOConcurrencyHelpers
import NIOCore

/// The open connections of this node — WebSocket sessions and plain HTTP ones — for draining and gauges.
final class ConnectionRegistry: Sendable {
    struct Entry: Sendable {
        let channel: any Channel
        /// `nil` for a plain HTTP connection.
        let window: PublishWindow?
    }

    private let entries = NIOLockedValueBox([ObjectIdentifier: Entry]())

    func add(_ id: ObjectIdentifier, _ entry: Entry) {
        entries.withLockedValue { $0[id] = entry }
    }

    func remove(_ id: ObjectIdentifier) {
        _ = entries.withLockedValue { $0.removeValue(forKey: id) }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// Publishes awaiting Kafka's report, all connections together.
    var inFlight: Int { entries.withLockedValue { $0.values.reduce(0) { $0 + ($1.window?.current ?? 0) } } }

    /// Fires `event` into every connection's pipeline.
    func broadcast(_ event: SessionEvent) {
        for entry in entries.withLockedValue({ Array($0.values) }) {
            entry.channel.pipeline.fireUserInboundEventTriggered(event)
        }
    }
}
