import NIOCore
import StreamgateCore

/// Moving a connection of an affinity channel to the partition's next owner (PROTOCOL §9): stop reading,
/// let the publishes in flight be answered, detach the subscription, send `moved` with the offset to resume
/// from behind every record already queued, then close with 4302. The client loses and repeats nothing.
extension WebSocketSession {
    /// How often a hand-off looks whether its publishes were answered: it runs once per moved connection,
    /// never on the delivery path.
    private static let publishCheck = TimeAmount.milliseconds(10)

    /// Before a publish on an affinity connection: this node must still serve its partition, by the clock of
    /// now — a node that was paused past its local deadline reads the publishes sent meanwhile before its
    /// placement has noticed, and must move them, not write them. One lock, affinity connections only.
    func confirmPlacement() {
        guard let affinity, !machine.handingOff else { return }
        switch environment.placement.decision(for: affinity) {
        case .serveHere: return
        case .redirect(let url): beginHandOff(to: url)
        case .unavailable: beginHandOff(to: environment.placement.nextOwnerURL(of: affinity))
        }
    }

    func beginHandOff(to base: String) {
        guard !machine.handingOff else { return }
        perform(machine.handOff())
        guard machine.handingOff, machine.state == .draining else { return }
        let deadline = NIODeadline.now() + .milliseconds(Int64(environment.configuration.drainSeconds * 1000))
        waitForPublishes(base: base, deadline: deadline)
    }

    private func waitForPublishes(base: String, deadline: NIODeadline) {
        guard let context, machine.state == .draining else { return }
        if window.current > 0, NIODeadline.now() < deadline {
            let session = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: Self.publishCheck) {
                session.value.waitForPublishes(base: base, deadline: deadline)
            }
            return
        }
        finishHandOff(base: base)
    }

    private func finishHandOff(base: String) {
        guard let context, let bound = machine.configuration.boundChannel else { return }
        perform([.failWaitingPublishes])
        var next: Int64?
        if let entry = tickets.values.first(where: { $0.subscription.channel == bound }) {
            next = environment.backend.hub.unsubscribeReturningNext(entry.subscription)
        }
        let url = ClusterPlacement.boundURL(base: base, channel: bound, query: next.map { "from=\($0)" })
        let frame = context.channel.allocator.buffer(bytes: ServerFrameEncoder.moved(id: nil, channel: bound, url: url,
                                                                                      offset: next))
        let session = NIOLoopBound(self, eventLoop: context.eventLoop)
        outbox.finish(with: frame) {
            let this = session.value
            this.perform(this.machine.close(code: CloseCode.moved, reason: "moved to another node"))
        }
    }
}
