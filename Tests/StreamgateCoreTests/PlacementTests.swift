import Foundation
import StreamgateCore
import Testing

@Suite struct PartitionKeyTests {
    @Test func textFormRoundTrips() {
        let key = PartitionKey(topic: "docs", partition: 3)
        #expect(key.description == "docs/3")
        #expect(PartitionKey("docs/3") == key)
        #expect(PartitionKey("streamgate.events/0") == PartitionKey(topic: "streamgate.events", partition: 0))
        #expect(PartitionKey("a-b_c.d/2147483647") == PartitionKey(topic: "a-b_c.d", partition: .max))
        #expect(PartitionKey("docs/3"[...]) == key)
    }

    @Test(arguments: [
        "", "docs", "docs/", "/3", "docs/-1", "docs/+3", "docs/03", "docs/3 ", "docs/2147483648", "a/b/3", "do cs/1",
        "docs/0x1", "docs/١",
    ])
    func rejectsNonCanonicalText(_ text: String) {
        #expect(PartitionKey(text) == nil)
    }

    @Test func ordersByTopicThenNumber() {
        let keys = ["docs/10", "chat/9", "docs/2", "docs/0"].compactMap { PartitionKey($0) }
        #expect(keys.sorted().map(\.description) == ["chat/9", "docs/0", "docs/2", "docs/10"])
    }
}

@Suite struct RendezvousTests {
    static let partitions = PlacementFixtures.partitions(96)
    static let three = ["server1", "server2", "server3"]

    @Test func scoresArePinned() {
        // Computed by a separate implementation of the same definition. A change here moves partitions between
        // the nodes of a cluster that runs two versions.
        #expect(Rendezvous.score(node: "server1", partition: PartitionKey("docs/0")!) == 11_419_966_493_848_619_388)
        #expect(Rendezvous.score(node: "server2", partition: PartitionKey("docs/0")!) == 11_153_758_368_482_018_524)
        #expect(Rendezvous.score(node: "server3", partition: PartitionKey("docs/7")!) == 11_744_394_272_575_951_482)
        #expect(
            Rendezvous.score(node: "node-1", partition: PartitionKey("streamgate.events/11")!)
                == 8_657_040_360_054_593_752)
        #expect(Rendezvous.owner(of: PartitionKey("docs/0")!, among: ["server1", "server2"]) == "server1")
    }

    @Test func ownerIgnoresOrderAndDuplicates() {
        for partition in Self.partitions.prefix(20) {
            let owner = Rendezvous.owner(of: partition, among: Self.three)
            #expect(owner != nil)
            #expect(Rendezvous.owner(of: partition, among: Self.three.reversed()) == owner)
            #expect(Rendezvous.owner(of: partition, among: Set(Self.three)) == owner)
            #expect(Rendezvous.owner(of: partition, among: Self.three + Self.three) == owner)
        }
        #expect(Rendezvous.owner(of: Self.partitions[0], among: [String]()) == nil)
        #expect(Rendezvous.assignment(partitions: Self.partitions, nodes: [String]()).isEmpty)
    }

    @Test func assignmentIsBalanced() {
        let assignment = Rendezvous.assignment(partitions: Self.partitions, nodes: Self.three)
        #expect(assignment.count == 96)
        var counts: [String: Int] = [:]
        for node in assignment.values { counts[node, default: 0] += 1 }
        #expect(Set(counts.keys) == Set(Self.three))
        #expect(counts.values.allSatisfy { (20...44).contains($0) }, "\(counts)")
    }

    @Test func aJoinMovesOnlyTheNewNodesShare() {
        let before = Rendezvous.assignment(partitions: Self.partitions, nodes: Self.three)
        let after = Rendezvous.assignment(partitions: Self.partitions, nodes: Self.three + ["server4"])
        let moved = Self.partitions.filter { before[$0] != after[$0] }
        #expect(moved.allSatisfy { after[$0] == "server4" })
        #expect(Self.partitions.filter { after[$0] == "server4" }.count == moved.count)
        #expect((12...36).contains(moved.count), "\(moved.count) of 96 moved")  // about a quarter
    }

    @Test func aLeaveMovesOnlyTheLeaversShare() {
        let before = Rendezvous.assignment(partitions: Self.partitions, nodes: Self.three)
        let after = Rendezvous.assignment(partitions: Self.partitions, nodes: ["server1", "server3"])
        let moved = Self.partitions.filter { before[$0] != after[$0] }
        #expect(!moved.isEmpty)
        #expect(moved.allSatisfy { before[$0] == "server2" })
        #expect(Self.partitions.filter { before[$0] == "server2" }.count == moved.count)
        // The leaver's share spreads over both others.
        #expect(Set(moved.compactMap { after[$0] }) == ["server1", "server3"])
    }
}

@Suite struct PlacementKeysTests {
    @Test func buildsTheClustersKeys() {
        let keys = PlacementKeys(prefix: "/streamgate")
        #expect(keys == PlacementKeys())
        #expect(keys.prefix == "/streamgate")
        #expect(keys.watchPrefix == "/streamgate/")
        #expect(keys.nodesPrefix == "/streamgate/nodes/")
        #expect(keys.ownersPrefix == "/streamgate/owners/")
        #expect(keys.nodeKey("server2") == "/streamgate/nodes/server2")
        #expect(keys.ownerKey(PartitionKey(topic: "docs", partition: 3)) == "/streamgate/owners/docs/3")
    }

    @Test func aTrailingSlashIsNormalisedAway() {
        #expect(PlacementKeys(prefix: "/streamgate/") == PlacementKeys(prefix: "/streamgate"))
        #expect(PlacementKeys(prefix: "/streamgate//").nodeKey("a") == "/streamgate/nodes/a")
    }

    @Test func parsesKeys() {
        let keys = PlacementKeys(prefix: "/streamgate")
        let partition = PartitionKey(topic: "docs", partition: 3)
        #expect(keys.parse(key: keys.ownerKey(partition)) == .owner(partition))
        #expect(keys.parse(key: keys.nodeKey("server2")) == .node("server2"))
        #expect(keys.parse(key: "/streamgate/nodes/server2") == .node("server2"))
        for foreign in [
            "/other/nodes/x", "/streamgate2/nodes/x", "/streamgate", "/streamgate/", "/streamgate/nodes/",
            "/streamgate/nodes/a/b", "/streamgate/nodes/a b", "/streamgate/owners/docs", "/streamgate/owners/a/b/3",
            "/streamgate/owners/docs/x", "/streamgate/other/docs/3",
        ] {
            #expect(keys.parse(key: foreign) == nil, "\(foreign)")
        }
    }

    @Test func validatesNodeIDs() {
        for valid in ["server1", "a", "node-1.eu_west", String(repeating: "x", count: 64)] {
            #expect(PlacementKeys.isValidNodeID(valid), "\(valid)")
        }
        for invalid in ["", "a/b", "a b", "é", "a:b", String(repeating: "x", count: 65)] {
            #expect(!PlacementKeys.isValidNodeID(invalid), "\(invalid)")
        }
    }
}

@Suite struct NodeRecordTests {
    @Test func readsAndWritesTheContractsJSON() throws {
        let json = #"{"url":"wss://server2.example.test:8443","connections":12,"started":1733250000000}"#
        let record = try JSONDecoder().decode(NodeRecord.self, from: Data(json.utf8))
        #expect(
            record == NodeRecord(url: "wss://server2.example.test:8443", connections: 12, started: 1_733_250_000_000))
        let encoded = try JSONEncoder().encode(record)
        let object = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        #expect(Set(object.keys) == ["url", "connections", "started"])
        #expect(try JSONDecoder().decode(NodeRecord.self, from: encoded) == record)
    }

    @Test func ignoresUnknownFields() throws {
        let json = #"{"version":2,"url":"wss://a","connections":0,"started":5,"zone":{"name":"eu"}}"#
        #expect(
            try JSONDecoder().decode(NodeRecord.self, from: Data(json.utf8))
                == NodeRecord(
                    url: "wss://a", connections: 0, started: 5))
    }
}

@Suite struct PlacementDirectoryTests {
    let keys = PlacementFixtures.keys
    let p3 = PartitionKey(topic: "docs", partition: 3)

    @Test func readsARange() {
        let directory = PlacementDirectory(
            keys: keys,
            entries: [
                (keys.nodeKey("server1"), PlacementFixtures.recordJSON("server1")),
                (keys.nodeKey("server2"), Array("not json".utf8)),
                (keys.ownerKey(p3), Array("server1".utf8)),
                (keys.ownerKey(PartitionKey(topic: "docs", partition: 4)), Array("bad id!".utf8)),
                ("/elsewhere/nodes/x", PlacementFixtures.recordJSON("x")),
                ("/sg/unknown", []),
            ], revision: 7)
        #expect(Array(directory.nodes.keys) == ["server1"])
        #expect(directory.nodes["server1"]?.url == "wss://server1.example.test:8443")
        #expect(directory.owners == [p3: "server1"])
        #expect(directory.revision == 7)
        #expect(directory.unreadable == 2)
        #expect(directory.partitions(ownedBy: "server1") == [p3])
    }

    @Test func followsPutsAndDeletes() {
        var directory = PlacementDirectory(keys: keys, entries: [], revision: 3)
        #expect(
            directory.apply(put: keys.nodeKey("server2"), value: PlacementFixtures.recordJSON("server2"), revision: 4)
                == .applied)
        #expect(directory.apply(put: keys.ownerKey(p3), value: Array("server2".utf8), revision: 5) == .applied)
        #expect(directory.owners[p3] == "server2")
        #expect(directory.revision == 5)
        #expect(directory.apply(put: "/other", value: [], revision: 6) == .foreign)
        #expect(directory.revision == 6)
        #expect(directory.apply(delete: keys.ownerKey(p3), revision: 7) == .applied)
        #expect(directory.owners.isEmpty)
        #expect(directory.apply(delete: keys.nodeKey("server2"), revision: 8) == .applied)
        #expect(directory.nodes.isEmpty)
        #expect(directory.apply(delete: "/other", revision: 9) == .foreign)
        // A revision never goes back.
        directory.apply(put: keys.nodeKey("server3"), value: PlacementFixtures.recordJSON("server3"), revision: 2)
        #expect(directory.revision == 9)
        #expect(directory.unreadable == 0)
    }

    @Test func anUnreadableValueCountsAndReadsAsAbsent() {
        var directory = PlacementFixtures.directory(nodes: ["server1"], owners: [p3: "server1"])
        #expect(directory.apply(put: keys.nodeKey("server1"), value: Array("{}".utf8), revision: 2) == .unreadable)
        #expect(directory.nodes["server1"] == nil)
        #expect(directory.apply(put: keys.ownerKey(p3), value: [0xff, 0xfe], revision: 3) == .unreadable)
        #expect(directory.owners[p3] == nil)
        #expect(directory.unreadable == 2)
        #expect(directory.revision == 3)
    }
}
