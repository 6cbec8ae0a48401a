import NIOConcurrencyHelpers
import NIOCore
import StreamgateCore

/// The connections of affinity channels on this node: how many each channel has (the namespace's
/// `max_peers`), and which partition each belongs to, so that a partition handed to another node moves
/// exactly its connections.
final class PlacementMembers: Sendable {
    private struct Member {
        var channel: ChannelName
        var connection: any Channel
    }

    private struct State {
        var peers: [ChannelName: Int] = [:]
        var byPartition: [PartitionKey: [ObjectIdentifier: Member]] = [:]
    }

    private let state = NIOLockedValueBox(State())
    /// One count per partition that ever had a connection here: a hand-off waits on it reaching zero.
    private let open = NIOLockedValueBox([PartitionKey: ZeroSignal]())

    private func signal(_ partition: PartitionKey) -> ZeroSignal {
        open.withLockedValue { signals in
            if let signal = signals[partition] { return signal }
            let signal = ZeroSignal()
            signals[partition] = signal
            return signal
        }
    }

    /// Takes one of `limit` places of `channel` (before its upgrade): `false` when all are taken.
    func reservePeer(_ channel: ChannelName, limit: Int?) -> Bool {
        state.withLockedValue { state in
            let current = state.peers[channel, default: 0]
            if let limit, current >= limit { return false }
            state.peers[channel] = current + 1
            return true
        }
    }

    /// Gives back a place taken by ``reservePeer(_:limit:)``.
    func releasePeer(_ channel: ChannelName) {
        state.withLockedValue { state in
            let remaining = state.peers[channel, default: 1] - 1
            state.peers[channel] = remaining > 0 ? remaining : nil
        }
    }

    /// Connections of `channel` now (reserved places included).
    func peers(of channel: ChannelName) -> Int {
        state.withLockedValue { $0.peers[channel, default: 0] }
    }

    /// A session of `channel` (in `partition`) opened.
    func join(_ id: ObjectIdentifier, partition: PartitionKey, channel: ChannelName, connection: any Channel) {
        let added = state.withLockedValue {
            $0.byPartition[partition, default: [:]].updateValue(Member(channel: channel, connection: connection), forKey: id) == nil
        }
        if added { signal(partition).increment() }
    }

    /// A session that ``join(_:partition:channel:connection:)``ed closed: its place is given back.
    func leave(_ id: ObjectIdentifier, partition: PartitionKey, channel: ChannelName) {
        let removed = state.withLockedValue { state -> Bool in
            guard state.byPartition[partition]?.removeValue(forKey: id) != nil else { return false }
            let remaining = state.peers[channel, default: 1] - 1
            state.peers[channel] = remaining > 0 ? remaining : nil
            if state.byPartition[partition]?.isEmpty == true { state.byPartition[partition] = nil }
            return true
        }
        if removed { signal(partition).decrement() }
    }

    /// Connections per partition.
    func counts() -> [PartitionKey: Int] {
        state.withLockedValue { $0.byPartition.mapValues(\.count) }
    }

    /// Asks every connection of `partition` to move: each fires `event(channel)` into its pipeline. Returns
    /// how many were asked.
    @discardableResult
    func handOff(_ partition: PartitionKey, _ event: (ChannelName) -> any Sendable) -> Int {
        let members = state.withLockedValue { Array($0.byPartition[partition, default: [:]].values) }
        for member in members {
            member.connection.pipeline.fireUserInboundEventTriggered(event(member.channel))
        }
        return members.count
    }

    /// Waits until `partition` has no connection here, or `timeout` passed; `false` on time-out.
    func waitUntilEmpty(_ partition: PartitionKey, timeout: Duration) async -> Bool {
        await signal(partition).waitForZero(timeout: timeout)
    }
}

/// Fired into a connection of an affinity channel whose partition this node no longer serves: the session
/// sends `moved` toward `url` (the next owner's public URL) and closes with 4302.
struct PartitionHandOffEvent: Sendable {
    let url: String
}
