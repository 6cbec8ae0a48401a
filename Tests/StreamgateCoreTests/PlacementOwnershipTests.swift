import StreamgateCore
import Testing

@Suite struct PlacementOwnershipTests {
    typealias Machine = OwnershipStateMachine<TestInstant>
    typealias Action = Machine.Action
    static let all = Set(PlacementFixtures.partitions(12))
    static let ttl = Duration.seconds(8)  // locally valid 6 s after a send; renewed every 2 s

    static func directory(_ nodes: [String], _ owners: [PartitionKey: String] = [:], revision: Int64 = 1)
        -> PlacementDirectory
    {
        PlacementFixtures.directory(nodes: nodes, owners: owners, revision: revision)
    }

    static func share(of node: String, among nodes: [String]) -> Set<PartitionKey> {
        all.filter { Rendezvous.owner(of: $0, among: nodes) == node }
    }

    static func owners(_ partitions: some Sequence<PartitionKey>, _ node: String) -> [PartitionKey: String] {
        Dictionary(uniqueKeysWithValues: partitions.map { ($0, node) })
    }

    /// A machine granted a lease at 0 that saw `nodes` registered and `owners` (at revision 1).
    static func started(_ id: String, nodes: [String], owners: [PartitionKey: String] = [:]) -> (Machine, [Action]) {
        var machine = Machine(nodeID: id, leaseTTL: ttl)
        var actions = machine.leaseGranted(sentAt: .seconds(0))
        actions += machine.partitionsChanged(all, now: .seconds(0))
        actions += machine.directoryChanged(directory(nodes, owners), now: .seconds(0))
        return (machine, actions)
    }

    /// A machine that claimed and won its share among `nodes` (the others own theirs), and serves it at 0.2.
    static func serving(_ id: String, nodes: [String]) -> (machine: Machine, owners: [PartitionKey: String]) {
        var owners: [PartitionKey: String] = [:]
        for partition in all { owners[partition] = Rendezvous.owner(of: partition, among: nodes) }
        let others = owners.filter { $0.value != id }
        var (machine, actions) = started(id, nodes: nodes, owners: others)
        for partition in actions.set(\.claimed) { _ = machine.claimFinished(partition, won: true, now: .seconds(0.1)) }
        let served = machine.directoryChanged(directory(nodes, owners, revision: 2), now: .seconds(0.2))
        precondition(served.set(\.started) == share(of: id, among: nodes) && machine.serving == served.set(\.started))
        return (machine, owners)
    }

    @Test func aLoneNodeClaimsAndServesEverything() {
        var (machine, actions) = Self.started("server1", nodes: ["server1"])
        #expect(actions.set(\.claimed) == Self.all)
        #expect(actions.count == 12)
        #expect(machine.renewInterval == .seconds(2))
        #expect(machine.isLeaseValid(now: .seconds(5.9)) && !machine.isLeaseValid(now: .seconds(6)))
        // Won, but served only once the directory says so too.
        for partition in Self.all {
            #expect(machine.claimFinished(partition, won: true, now: .seconds(0.1)).isEmpty)
        }
        #expect(machine.decision(for: PartitionKey("docs/0")!, now: .seconds(0.1)) == .unavailable)
        let owners = Self.owners(Self.all, "server1")
        let served = machine.directoryChanged(Self.directory(["server1"], owners, revision: 2), now: .seconds(0.2))
        #expect(served.count == 12 && served.set(\.started) == Self.all)
        #expect(machine.serving == Self.all && machine.owned == Self.all)
        #expect(machine.decision(for: PartitionKey("docs/0")!, now: .seconds(1)) == .serveHere)
        // Nothing new, nothing to do.
        #expect(machine.directoryChanged(Self.directory(["server1"], owners, revision: 2), now: .seconds(0.3)).isEmpty)
        #expect(machine.tick(now: .seconds(0.4)).isEmpty)
        #expect(machine.partitionsChanged(Self.all, now: .seconds(0.5)).isEmpty)
    }

    @Test func theSameInputsTwiceYieldNothing() {
        var (machine, actions) = Self.started("server1", nodes: ["server1", "server2"])
        #expect(!actions.isEmpty)
        #expect(machine.directoryChanged(Self.directory(["server1", "server2"]), now: .seconds(0.1)).isEmpty)
        var (busy, owners) = Self.serving("server1", nodes: ["server1", "server2", "server3"])
        let joined = Self.directory(["server1", "server2", "server3", "server4"], owners, revision: 3)
        #expect(!busy.directoryChanged(joined, now: .seconds(1)).isEmpty)
        #expect(busy.directoryChanged(joined, now: .seconds(1.1)).isEmpty)
        #expect(busy.drain(now: .seconds(1.2)).count > 0)
        #expect(busy.drain(now: .seconds(1.3)).isEmpty)
    }

    @Test func onlyKafkasPartitionsAreClaimed() {
        var machine = Machine(nodeID: "server1", leaseTTL: Self.ttl)
        _ = machine.leaseGranted(sentAt: .seconds(0))
        // Without the affinity partitions, nothing to claim.
        #expect(machine.directoryChanged(Self.directory(["server1"]), now: .seconds(0)).isEmpty)
        let some = Set(PlacementFixtures.partitions(5))
        #expect(machine.partitionsChanged(some, now: .seconds(0.1)).set(\.claimed) == some)
    }

    @Test func withoutItsNodeKeyANodeClaimsNothing() {
        var (machine, actions) = Self.started("server1", nodes: ["server2"])
        #expect(actions.set(\.claimed).isEmpty)
        #expect(
            machine.directoryChanged(Self.directory(["server1", "server2"], revision: 2), now: .seconds(0.1)).set(
                \.claimed) == Self.share(of: "server1", among: ["server1", "server2"]))
    }

    @Test func aLostClaimIsNotRetriedUntilThePartitionIsUnownedAgain() {
        let p0 = PartitionKey("docs/0")!
        var (machine, actions) = Self.started("server1", nodes: ["server1"])
        #expect(actions.contains(.claim(p0)))
        #expect(machine.claimFinished(p0, won: false, now: .seconds(0.1)).isEmpty)
        // The directory has not caught up yet: still unowned at the same revision, so no retry.
        #expect(machine.tick(now: .seconds(3)).isEmpty)
        #expect(machine.directoryChanged(Self.directory(["server1"]), now: .seconds(3.1)).isEmpty)
        // Someone else's key (not registered: nowhere to redirect to).
        let taken = Self.directory(["server1"], [p0: "server9"], revision: 2)
        #expect(machine.directoryChanged(taken, now: .seconds(3.2)).isEmpty)
        #expect(machine.decision(for: p0, now: .seconds(3.2)) == .unavailable)
        // Unowned again, later: claimed again.
        #expect(machine.directoryChanged(Self.directory(["server1"], revision: 3), now: .seconds(3.3)) == [.claim(p0)])
    }

    @Test func twoNodesRacingSettleOnTheRendezvousOwners() {
        let nodes = ["server1", "server2"]
        // server1 does not see server2 yet and claims everything; server2 sees both and claims its share.
        var (first, firstClaims) = Self.started("server1", nodes: ["server1"])
        var (second, secondClaims) = Self.started("server2", nodes: nodes)
        let share2 = Self.share(of: "server2", among: nodes)
        #expect(firstClaims.set(\.claimed) == Self.all)
        #expect(secondClaims.set(\.claimed) == share2)
        // server1's claims reach etcd first.
        for partition in Self.all { _ = first.claimFinished(partition, won: true, now: .seconds(0.1)) }
        for partition in share2 { #expect(second.claimFinished(partition, won: false, now: .seconds(0.1)).isEmpty) }
        var owners = Self.owners(Self.all, "server1")
        let d2 = Self.directory(nodes, owners, revision: 2)
        // server1 serves its share and hands server2's back; server2 waits.
        firstClaims = first.directoryChanged(d2, now: .seconds(0.2))
        #expect(firstClaims.set(\.started) == Self.share(of: "server1", among: nodes))
        #expect(firstClaims.set(\.released) == share2)
        #expect(firstClaims.set(\.stopped).isEmpty)  // never served
        #expect(second.directoryChanged(d2, now: .seconds(0.2)).isEmpty)
        #expect(
            second.decision(for: share2.first!, now: .seconds(0.2))
                == .redirect(nodeID: "server1", url: "wss://server1.example.test:8443"))
        // Released: server2 claims them now.
        for partition in share2 {
            #expect(first.releaseFinished(partition, now: .seconds(0.3)).isEmpty)
            owners[partition] = nil
        }
        let d3 = Self.directory(nodes, owners, revision: 3)
        #expect(first.directoryChanged(d3, now: .seconds(0.4)).isEmpty)
        secondClaims = second.directoryChanged(d3, now: .seconds(0.4))
        #expect(secondClaims.set(\.claimed) == share2 && secondClaims.count == share2.count)
    }

    @Test func aJoinHandsOffExactlyTheJoinersShare() {
        var (first, owners) = Self.serving("server1", nodes: ["server1"])
        let nodes = ["server1", "server2"]
        let share2 = Self.share(of: "server2", among: nodes)
        #expect(!share2.isEmpty && share2.count < 12)
        let joined = Self.directory(nodes, owners, revision: 3)
        let actions = first.directoryChanged(joined, now: .seconds(1))
        #expect(actions.count == 2 * share2.count)
        for partition in share2 {
            let stop = actions.firstIndex(of: .stopServing(partition, movedTo: "server2"))
            let release = actions.firstIndex(of: .release(partition))
            #expect(stop != nil && release != nil && stop! < release!, "\(partition): stop, then release")
        }
        #expect(first.serving == Self.all.subtracting(share2))
        #expect(first.directoryChanged(joined, now: .seconds(1.1)).isEmpty)  // released once
        for partition in share2 { #expect(first.releaseFinished(partition, now: .seconds(1.2)).isEmpty) }
        for partition in share2 { owners[partition] = nil }
        let handedOff = Self.directory(nodes, owners, revision: 4)
        #expect(first.directoryChanged(handedOff, now: .seconds(1.3)).isEmpty)
        // The joiner claims them once the directory shows them unowned.
        var second = Machine(nodeID: "server2", leaseTTL: Self.ttl)
        _ = second.leaseGranted(sentAt: .seconds(0.9))
        _ = second.partitionsChanged(Self.all, now: .seconds(0.9))
        #expect(second.directoryChanged(joined, now: .seconds(1)).isEmpty)
        #expect(
            second.decision(for: share2.first!, now: .seconds(1.1))
                == .redirect(nodeID: "server1", url: "wss://server1.example.test:8443"))
        #expect(second.directoryChanged(handedOff, now: .seconds(1.3)).set(\.claimed) == share2)
        #expect(first.decision(for: share2.first!, now: .seconds(1.3)) == .unavailable)
    }

    @Test func aReleaseThatDidNotTakeIsRepeated() {
        var (first, owners) = Self.serving("server1", nodes: ["server1"])
        let nodes = ["server1", "server2"]
        let share2 = Self.share(of: "server2", among: nodes)
        let p = share2.min()!
        let joined = Self.directory(nodes, owners, revision: 3)
        _ = first.directoryChanged(joined, now: .seconds(1))
        for partition in share2 where partition != p { _ = first.releaseFinished(partition, now: .seconds(1.1)) }
        for partition in share2 where partition != p { owners[partition] = nil }
        #expect(first.directoryChanged(Self.directory(nodes, owners, revision: 4), now: .seconds(1.1)).isEmpty)
        // An etcd error: tried again after the retry delay, not at once.
        #expect(first.releaseFailed(p, now: .seconds(1.1)).isEmpty)
        #expect(first.tick(now: .seconds(1.5)).isEmpty)
        #expect(first.tick(now: .seconds(2.1)) == [.release(p)])
        // "Finished", but the key still names this node a retry delay later: released again, once.
        #expect(first.releaseFinished(p, now: .seconds(2.2)).isEmpty)
        #expect(first.tick(now: .seconds(3.1)).isEmpty)
        #expect(first.tick(now: .seconds(3.2)) == [.release(p)])
        #expect(first.tick(now: .seconds(3.4)).isEmpty)
        owners[p] = nil
        #expect(first.releaseFinished(p, now: .seconds(3.5)).isEmpty)
        #expect(first.directoryChanged(Self.directory(nodes, owners, revision: 5), now: .seconds(3.6)).isEmpty)
        #expect(first.tick(now: .seconds(5)).isEmpty)
    }

    @Test func aFailedClaimIsRetriedOnALaterTick() {
        let p0 = PartitionKey("docs/0")!
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        #expect(machine.claimFailed(p0, now: .seconds(0.5)).isEmpty)  // not at once: etcd just failed
        #expect(machine.tick(now: .seconds(1.4)).isEmpty)
        #expect(machine.tick(now: .seconds(1.5)) == [.claim(p0)])
        #expect(machine.tick(now: .seconds(1.6)).isEmpty)
    }

    @Test func aClaimWhoseAnswerWasLostIsReleasedAndClaimedAgain() {
        let p0 = PartitionKey("docs/0")!
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        _ = machine.claimFailed(p0, now: .seconds(0.5))
        // It had been written after all: the key names this node, but not by a claim it knows it won.
        let written = Self.directory(["server1"], [p0: "server1"], revision: 2)
        #expect(machine.directoryChanged(written, now: .seconds(0.6)) == [.release(p0)])
        #expect(machine.decision(for: p0, now: .seconds(0.6)) == .unavailable)
        _ = machine.releaseFinished(p0, now: .seconds(0.7))
        #expect(machine.directoryChanged(Self.directory(["server1"], revision: 3), now: .seconds(0.8)) == [.claim(p0)])
    }

    @Test func aDrainHandsEverythingToTheNextOwners() {
        let nodes = ["server1", "server2", "server3"]
        var (machine, owners) = Self.serving("server1", nodes: nodes)
        let mine = Self.share(of: "server1", among: nodes)
        // One more partition of server1's, claimed while the drain starts (server1's key gone from it).
        let extra = PartitionKey(topic: "docs", partition: 99)
        let extraOwner = Rendezvous.owner(of: extra, among: nodes)!
        #expect(
            machine.partitionsChanged(Self.all.union([extra]), now: .seconds(0.3))
                == (extraOwner == "server1" ? [.claim(extra)] : []))
        let actions = machine.drain(now: .seconds(1))
        #expect(machine.draining && !machine.drained)
        #expect(actions.count == 2 * mine.count)
        for partition in mine {
            let next = Rendezvous.owner(of: partition, among: ["server2", "server3"])!
            let stop = actions.firstIndex(of: .stopServing(partition, movedTo: next))
            let release = actions.firstIndex(of: .release(partition))
            #expect(stop != nil && release != nil && stop! < release!, "\(partition) → \(next)")
        }
        #expect(machine.serving.isEmpty)
        for partition in Self.all.subtracting(mine) {
            #expect(
                machine.decision(for: partition, now: .seconds(1))
                    == .redirect(
                        nodeID: owners[partition]!, url: "wss://\(owners[partition]!).example.test:8443"))
        }
        // Nothing is claimed while draining, whatever the directory shows.
        for partition in mine { owners[partition] = nil }
        let left = Self.directory(["server2", "server3"], owners, revision: 3)
        if extraOwner == "server1" {
            #expect(machine.claimFinished(extra, won: true, now: .seconds(1.1)).isEmpty)
            owners[extra] = "server1"
            #expect(
                machine.directoryChanged(Self.directory(nodes, owners, revision: 3), now: .seconds(1.2))
                    == [.release(extra)])
            #expect(!machine.drained)
            _ = machine.releaseFinished(extra, now: .seconds(1.3))
            owners[extra] = nil
        }
        for partition in mine { #expect(machine.releaseFinished(partition, now: .seconds(1.4)).isEmpty) }
        #expect(machine.drained)
        #expect(machine.directoryChanged(left, now: .seconds(1.5)).isEmpty)
        #expect(machine.drained)
        #expect(machine.tick(now: .seconds(5)).isEmpty)
    }

    @Test func theLocalDeadlineStopsServingBeforeTheLeaseCanExpire() {
        let nodes = ["server1", "server2"]
        var (machine, owners) = Self.serving("server1", nodes: nodes)
        let mine = Self.share(of: "server1", among: nodes)
        let p = mine.min()!
        #expect(machine.localDeadline == .seconds(6))
        #expect(machine.decision(for: p, now: .seconds(5.9)) == .serveHere)
        // Paused past three quarters of the TTL (etcd keeps the lease to 8 s at least): the decision refuses
        // before any tick is delivered.
        #expect(machine.decision(for: p, now: .seconds(6)) == .unavailable)
        #expect(machine.decision(for: p, now: .seconds(60)) == .unavailable)
        let stopped = machine.tick(now: .seconds(60))
        #expect(stopped.count == mine.count)
        for partition in mine { #expect(stopped.contains(.stopServing(partition, movedTo: "server2"))) }
        #expect(machine.serving.isEmpty && machine.owned == mine)  // stopped, not released
        // While lapsed: no claims either, even of partitions that server1 should own now that server2 is gone.
        let theirsGone = Self.directory(["server1"], owners.filter { mine.contains($0.key) }, revision: 3)
        #expect(machine.directoryChanged(theirsGone, now: .seconds(60.1)).isEmpty)
        #expect(machine.tick(now: .seconds(61)).isEmpty)
    }

    @Test func anyLaterInputStopsServingAtTheDeadline() {
        var (machine, owners) = Self.serving("server1", nodes: ["server1"])
        let actions = machine.directoryChanged(Self.directory(["server1"], owners, revision: 2), now: .seconds(6.5))
        #expect(actions.set(\.stopped) == Self.all && actions.count == 12)
        // No other node to move the clients to.
        #expect(actions.allSatisfy { if case .stopServing(_, movedTo: nil) = $0 { true } else { false } })
        #expect(machine.serving.isEmpty)
    }

    @Test func aRenewalAfterALapseResumesServing() {
        var (machine, _) = Self.serving("server1", nodes: ["server1"])
        #expect(machine.tick(now: .seconds(6.1)).count == 12)
        // The renewal was sent after the deadline and succeeded: etcd still holds the keys under the lease.
        let resumed = machine.leaseRenewed(sentAt: .seconds(6.2))
        #expect(resumed.set(\.started) == Self.all && resumed.count == 12)
        #expect(machine.localDeadline == .seconds(12.2))
        #expect(machine.decision(for: PartitionKey("docs/0")!, now: .seconds(12.1)) == .serveHere)
        #expect(machine.leaseRenewed(sentAt: .seconds(6.3)).isEmpty)  // no second start
    }

    @Test func aLateRenewalNeverRevivesAnExpiredLease() {
        var (machine, _) = Self.serving("server1", nodes: ["server1"])
        #expect(machine.tick(now: .seconds(6.5)).count == 12)
        // A keepalive sent at 0.3 answered now: its deadline (6.3) is already past.
        #expect(machine.leaseRenewed(sentAt: .seconds(0.3)).isEmpty)
        #expect(machine.serving.isEmpty)
        // Answers out of order never move the deadline back.
        _ = machine.leaseRenewed(sentAt: .seconds(6.4))
        _ = machine.leaseRenewed(sentAt: .seconds(2))
        #expect(machine.localDeadline == .seconds(12.4))
    }

    @Test func aLostLeaseStopsEverythingAndClaimsNothingUntilANewGrant() {
        let nodes = ["server1", "server2"]
        var (machine, owners) = Self.serving("server1", nodes: nodes)
        let mine = Self.share(of: "server1", among: nodes)
        let stopped = machine.leaseLost()
        #expect(stopped.count == mine.count)
        for partition in mine { #expect(stopped.contains(.stopServing(partition, movedTo: "server2"))) }
        #expect(!machine.isLeaseValid(now: .seconds(1)) && !machine.hasLease)
        #expect(machine.decision(for: mine.min()!, now: .seconds(1)) == .unavailable)
        // etcd deleted the keys of the lease; server2 is gone too: still nothing claimed.
        for partition in mine { owners[partition] = nil }
        #expect(machine.directoryChanged(Self.directory(["server1"], revision: 3), now: .seconds(1)).isEmpty)
        #expect(machine.tick(now: .seconds(2)).isEmpty)
        #expect(machine.leaseRenewed(sentAt: .seconds(1.5)).isEmpty)  // a late keepalive changes nothing
        // A new lease: claims again.
        #expect(machine.leaseGranted(sentAt: .seconds(3)).set(\.claimed) == Self.all)
    }

    @Test func ownerKeysOfAnEarlierLeaseAreReleasedNotServed() {
        var (machine, owners) = Self.serving("server1", nodes: ["server1"])
        _ = machine.leaseLost()
        // A claim answered after the loss is dropped.
        #expect(machine.claimFinished(PartitionKey("docs/0")!, won: true, now: .seconds(1)).isEmpty)
        // A new lease while the directory still shows the old lease's keys (their deletes are on the way).
        let granted = machine.leaseGranted(sentAt: .seconds(2))
        #expect(granted.set(\.released) == Self.all && granted.count == 12)
        #expect(machine.serving.isEmpty)
        for partition in Self.all { _ = machine.releaseFinished(partition, now: .seconds(2.1)) }
        owners = [:]
        let claims = machine.directoryChanged(Self.directory(["server1"], owners, revision: 3), now: .seconds(2.2))
        #expect(claims.set(\.claimed) == Self.all)
    }

    @Test func anotherNodesExpiredKeysAreClaimedByTheirNextOwner() {
        let nodes = ["server1", "server2", "server3", "server4"]
        let rest = ["server1", "server2", "server3"]
        var (machine, owners) = Self.serving("server1", nodes: nodes)
        // server4's lease expired: its node key and owner keys vanish together.
        let orphaned = Self.share(of: "server4", among: nodes)
        for partition in orphaned { owners[partition] = nil }
        let actions = machine.directoryChanged(Self.directory(rest, owners, revision: 3), now: .seconds(1))
        let expected = orphaned.filter { Rendezvous.owner(of: $0, among: rest) == "server1" }
        #expect(!expected.isEmpty)
        #expect(actions.set(\.claimed) == expected && actions.count == expected.count)
    }

    @Test func decisionsRedirectOnlyToRegisteredOwners() {
        let p0 = PartitionKey("docs/0")!
        var machine = Machine(nodeID: "server1", leaseTTL: Self.ttl)
        #expect(machine.decision(for: p0, now: .seconds(0)) == .unavailable)
        _ = machine.directoryChanged(Self.directory(["server1", "server2"], [p0: "server2"]), now: .seconds(0))
        #expect(
            machine.decision(for: p0, now: .seconds(0))
                == .redirect(
                    nodeID: "server2", url: "wss://server2.example.test:8443"))
        _ = machine.directoryChanged(Self.directory(["server1"], [p0: "server2"], revision: 2), now: .seconds(0))
        #expect(machine.decision(for: p0, now: .seconds(0)) == .unavailable)
    }
}
