import NIOConcurrencyHelpers
import NIOCore

/// Something that has deadlines: asked at every sweep of its event loop what is due.
protocol SweepMember: AnyObject {
    func sweep(now: NIODeadline)
}

/// One repeating task per event loop that sweeps every connection of that loop: pings, ping, auth and
/// handshake time-outs, token expiry. An idle connection costs one dictionary entry and one call per
/// sweep, never a timer of its own.
final class LoopSweeper {
    private let eventLoop: any EventLoop
    private let interval: TimeAmount
    private var members: [ObjectIdentifier: any SweepMember] = [:]
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, interval: TimeAmount) {
        self.eventLoop = eventLoop
        self.interval = interval
    }

    /// On the event loop.
    func add(_ member: any SweepMember) {
        eventLoop.preconditionInEventLoop()
        members[ObjectIdentifier(member)] = member
        guard task == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        task = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            bound.value.sweep()
        }
    }

    /// On the event loop.
    func remove(_ member: any SweepMember) {
        eventLoop.preconditionInEventLoop()
        members.removeValue(forKey: ObjectIdentifier(member))
    }

    var count: Int { members.count }

    private func sweep() {
        let now = NIODeadline.now()
        // A member may remove itself (or another) while being swept.
        for member in Array(members.values) { member.sweep(now: now) }
    }
}

/// The sweepers of every event loop of a node.
final class LoopSweepers: Sendable {
    private let interval: TimeAmount
    private let sweepers = NIOLockedValueBox([ObjectIdentifier: NIOLoopBound<LoopSweeper>]())

    /// - Parameter interval: how often each loop sweeps; a quarter of the shortest time-out, so deadlines
    ///   are kept within that.
    init(interval: TimeAmount) {
        self.interval = interval
    }

    /// The sweeper of `eventLoop`. On that loop.
    func sweeper(for eventLoop: any EventLoop) -> LoopSweeper {
        let key = ObjectIdentifier(eventLoop)
        return sweepers.withLockedValue { sweepers in
            if let existing = sweepers[key] { return existing.value }
            let sweeper = LoopSweeper(eventLoop: eventLoop, interval: interval)
            sweepers[key] = NIOLoopBound(sweeper, eventLoop: eventLoop)
            return sweeper
        }
    }
}
