import NIOConcurrencyHelpers
import NIOCore

/// The open connections of this node — WebSocket sessions and plain HTTP ones — for draining and gauges,
/// with the node's publishes awaiting Kafka's report: a drain waits on both to reach zero.
final class ConnectionRegistry: Sendable {
    private let entries = NIOLockedValueBox([ObjectIdentifier: any Channel]())
    private let open = ZeroSignal()
    /// Publishes awaiting Kafka's report, all connections together: every ``PublishWindow`` counts into it.
    let inFlight = ZeroSignal()

    func add(_ id: ObjectIdentifier, _ channel: any Channel) {
        let added = entries.withLockedValue { $0.updateValue(channel, forKey: id) == nil }
        if added { open.increment() }
    }

    func remove(_ id: ObjectIdentifier) {
        let removed = entries.withLockedValue { $0.removeValue(forKey: id) != nil }
        if removed { open.decrement() }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// Waits until every connection is gone; `false` when `timeout` passes first.
    func waitUntilEmpty(timeout: Duration) async -> Bool {
        await open.waitForZero(timeout: timeout)
    }

    /// Fires `event` into every connection's pipeline.
    func broadcast(_ event: SessionEvent) {
        for channel in entries.withLockedValue({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(event)
        }
    }
}
