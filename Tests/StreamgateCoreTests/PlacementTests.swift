import StreamgateCore
import Testing

/// A manual clock's instants, so that deadlines are driven by the test.
struct TestInstant: InstantProtocol, Sendable {
    var offset: Duration
    func advanced(by duration: Duration) -> TestInstant { TestInstant(offset: offset + duration) }
    func duration(to other: TestInstant) -> Duration { other.offset - offset }
    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool { lhs.offset < rhs.offset }
    static func seconds(_ value: Double) -> TestInstant { TestInstant(offset: .milliseconds(Int64(value * 1000))) }
}

@Suite struct RendezvousTests {
    static let partitions = (0..<96).map { PartitionKey(topic: "docs", partition: Int32($0)) }

    @Test func scoresAreStable() {
        // Pinned: a change of hash would move every partition of a running cluster.
        #expect(Rendezvous.score(node: "server1", partition: PartitionKey(topic: "docs", partition: 0))
            == Rendezvous.score(node: "server1", partition: PartitionKey("docs/0")!))
        #expect(Rendezvous.score(node: "server1", partition: PartitionKey(topic: "docs", partition: 0)) == 11419966493848619388)
        #expect(Rendezvous.score(node: "a", partition: PartitionKey(topic: "t", partition: 1))
            != Rendezvous.score(node: "b", partition: PartitionKey(topic: "t", partition: 1)))
    }

    @Test func assignmentIsBalanced() {
        let assignment = Rendezvous.assignment(partitions: Self.partitions, nodes: ["server1", "server2", "server3"])
        var counts: [String: Int] = [:]
        for node in assignment.values { counts[node, default: 0] += 1 }
        #expect(counts.count == 3, "\(counts)")
        #expect(counts.values.allSatisfy { (20...44).contains($0) }, "\(counts)")
    }

    @Test func aJoinMovesOnlyTheNewNodesShare() {
        let before = Rendezvous.assignment(partitions: Self.partitions, nodes: ["server1", "server2", "server3"])
        let after = Rendezvous.assignment(partitions: Self.partitions, nodes: ["server1", "server2", "server3", "server4"])
        let moved = Self.partitions.filter { before[$0] != after[$0] }
        #expect(moved.allSatisfy { after[$0] == "server4" })
        #expect((12...36).contains(moved.count))
        let left = Rendezvous.assignment(partitions: Self.partitions, nodes: ["server1", "server3"])
        #expect(Self.partitions.filter { before[$0] != left[$0] }.allSatisfy { before[$0] == "server2" })
    }

    @Test func keysParse() {
        let keys = PlacementKeys(prefix: "/streamgate/")
        #expect(keys.nodeKey("server2") == "/streamgate/nodes/server2")
        #expect(keys.parse(key: keys.ownerKey(PartitionKey(topic: "docs", partition: 3)))
            == .owner(PartitionKey(topic: "docs", partition: 3)))
        #expect(keys.parse(key: "/streamgate/nodes/server2") == .node("server2"))
        #expect(keys.parse(key: "/other/x") == nil)
        #expect(!PlacementKeys.isValidNodeID("a/b"))
    }
}

@Suite struct OwnershipStateMachineTests {
    typealias Machine = OwnershipStateMachine<TestInstant>
    static let keys = PlacementKeys(prefix: "/sg")
    static let p0 = PartitionKey(topic: "docs", partition: 0)
    static let all = Set((0..<12).map { PartitionKey(topic: "docs", partition: Int32($0)) })

    static func directory(nodes: [String], owners: [PartitionKey: String], revision: Int64 = 1) -> PlacementDirectory {
        var entries: [(key: String, value: [UInt8])] = nodes.map {
            (keys.nodeKey($0), Array(#"{"url":"wss://\#($0).example.test","connections":0,"started":0}"#.utf8))
        }
        entries += owners.map { (keys.ownerKey($0.key), Array($0.value.utf8)) }
        return PlacementDirectory(keys: keys, entries: entries, revision: revision)
    }

    static func started(_ id: String, nodes: [String], owners: [PartitionKey: String] = [:]) -> (Machine, [Machine.Action]) {
        var machine = Machine(nodeID: id, leaseTTL: .seconds(8))
        var actions = machine.leaseGranted(sentAt: .seconds(0))
        actions += machine.partitionsChanged(all, now: .seconds(0))
        actions += machine.directoryChanged(directory(nodes: nodes, owners: owners), now: .seconds(0))
        return (machine, actions)
    }

    @Test func aLoneNodeClaimsAndServesEverything() {
        var (machine, actions) = Self.started("server1", nodes: ["server1"])
        #expect(actions.filter { if case .claim = $0 { true } else { false } }.count == 12)
        let owners = Dictionary(uniqueKeysWithValues: Self.all.map { ($0, "server1") })
        for partition in Self.all { _ = machine.claimFinished(partition, won: true, now: .seconds(0.1)) }
        let served = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: owners), now: .seconds(0.2))
        #expect(served.count == 12 && served.allSatisfy { if case .startServing = $0 { true } else { false } })
        #expect(machine.decision(for: Self.p0, now: .seconds(1)) == .serveHere)
        // The same directory again changes nothing.
        #expect(machine.directoryChanged(Self.directory(nodes: ["server1"], owners: owners), now: .seconds(0.3)).isEmpty)
    }

    @Test func theLocalDeadlineStopsServingBeforeTheLeaseCanExpire() {
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        let owners = Dictionary(uniqueKeysWithValues: Self.all.map { ($0, "server1") })
        _ = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: owners), now: .seconds(0.1))
        // Paused past 3/4 of the TTL: the decision refuses even before any tick is delivered.
        #expect(machine.decision(for: Self.p0, now: .seconds(6.1)) == .unavailable)
        let stopped = machine.tick(now: .seconds(6.1))
        #expect(stopped.count == 12)
        #expect(machine.serving.isEmpty)
        // A renewal with etcd still naming this node: serving again.
        #expect(machine.leaseRenewed(sentAt: .seconds(6.2)).count == 12)
        #expect(machine.decision(for: Self.p0, now: .seconds(7)) == .serveHere)
    }

    @Test func aJoinHandsOffOnlyTheNewNodesShare() {
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        let owners = Dictionary(uniqueKeysWithValues: Self.all.map { ($0, "server1") })
        _ = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: owners), now: .seconds(0.1))
        let actions = machine.directoryChanged(Self.directory(nodes: ["server1", "server2"], owners: owners), now: .seconds(0.2))
        let share = Set(Self.all.filter { Rendezvous.owner(of: $0, among: ["server1", "server2"]) == "server2" })
        #expect(!share.isEmpty)
        #expect(Set(actions.compactMap { if case .stopServing(let p, "server2") = $0 { p } else { nil } }) == share)
        #expect(Set(actions.compactMap { if case .release(let p) = $0 { p } else { nil } }) == share)
        // The joiner claims them once they are unowned.
        var joiner = Machine(nodeID: "server2", leaseTTL: .seconds(8))
        _ = joiner.leaseGranted(sentAt: .seconds(0.2))
        _ = joiner.partitionsChanged(Self.all, now: .seconds(0.2))
        let remaining = owners.filter { !share.contains($0.key) }
        let claims = joiner.directoryChanged(Self.directory(nodes: ["server1", "server2"], owners: remaining), now: .seconds(0.3))
        #expect(Set(claims.compactMap { if case .claim(let p) = $0 { p } else { nil } }) == share)
    }

    @Test func aLostClaimIsNotRetriedUntilUnowned() {
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        _ = machine.claimFinished(Self.p0, won: false, now: .seconds(0.1))
        #expect(machine.tick(now: .seconds(0.2)).isEmpty)
        _ = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: [Self.p0: "other"], revision: 2), now: .seconds(0.3))
        let again = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: [:], revision: 3), now: .seconds(0.4))
        #expect(again.contains(.claim(Self.p0)))
    }

    @Test func aDrainHandsEverythingToTheNextOwner() {
        let mine = Self.all.filter { Rendezvous.owner(of: $0, among: ["server1", "server2"]) == "server1" }.sorted()
        let owners = Dictionary(uniqueKeysWithValues: mine.map { ($0, "server1") })
        var (machine, _) = Self.started("server1", nodes: ["server1", "server2"], owners: owners)
        _ = machine.directoryChanged(Self.directory(nodes: ["server1", "server2"], owners: owners), now: .seconds(0.1))
        let actions = machine.drain(now: .seconds(0.2))
        #expect(actions.filter { $0 == .stopServing(mine[0], movedTo: "server2") }.count == 1)
        #expect(!machine.drained)
        for partition in mine { _ = machine.releaseFinished(partition, now: .seconds(0.3)) }
        #expect(machine.drained)
    }

    @Test func aLostLeaseStopsEverythingAndClaimsNothing() {
        var (machine, _) = Self.started("server1", nodes: ["server1"])
        let owners = Dictionary(uniqueKeysWithValues: Self.all.map { ($0, "server1") })
        _ = machine.directoryChanged(Self.directory(nodes: ["server1"], owners: owners), now: .seconds(0.1))
        #expect(machine.leaseLost().count == 12)
        #expect(machine.directoryChanged(Self.directory(nodes: ["server1"], owners: [:]), now: .seconds(0.2)).isEmpty)
    }
}
