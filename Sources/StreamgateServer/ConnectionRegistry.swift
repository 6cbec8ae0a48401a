import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The open connections of this node — WebSocket sessions and plain HTTP ones — for draining and gauges,
/// with the node's publishes awaiting Kafka's report: a drain waits on both to reach zero.
final class ConnectionRegistry: Sendable {
    private let entries = NIOLockedValueBox([ObjectIdentifier: any Channel]())
    private let open = ZeroSignal()
    private let webSockets = Atomic<Int>(0)
    /// Publishes awaiting Kafka's report, all connections together: every ``PublishWindow`` counts into it.
    let inFlight = ZeroSignal()

    func add(_ id: ObjectIdentifier, _ channel: any Channel) {
        let added = entries.withLockedValue { $0.updateValue(channel, forKey: id) == nil }
        if added { open.increment() }
    }

    /// Takes one of `limit` WebSocket places, before the upgrade: `false` when all are taken. The place is
    /// given back by ``releaseWebSocket()`` — by the session when it goes, or when the upgrade never happens.
    func reserveWebSocket(limit: Int) -> Bool {
        var current = webSockets.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = webSockets.compareExchange(expected: current, desired: current + 1,
                                                                   ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func releaseWebSocket() {
        webSockets.wrappingSubtract(1, ordering: .relaxed)
    }

    func remove(_ id: ObjectIdentifier) {
        let removed = entries.withLockedValue { $0.removeValue(forKey: id) != nil }
        if removed { open.decrement() }
    }

    var count: Int { entries.withLockedValue { $0.count } }

    /// WebSocket connections open or being upgraded (the connection limit counts these).
    var webSocketCount: Int { webSockets.load(ordering: .relaxed) }

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
