import StreamgateCore
import Testing

/// Nodes sharing one simulated etcd (create-if-absent claims, delete-if-mine releases, leases that expire a
/// TTL after the last renewal etcd received), paused and resumed at random: no partition is ever served by
/// two nodes at one instant, and once the nodes are stable every partition is served by exactly one.
@Suite struct PlacementSimulationTests {
    typealias Machine = OwnershipStateMachine<TestInstant>

    struct Node {
        var machine: Machine
        var pausedUntil = 0.0
        var nextRenewal = 0.0
        var registered = false
    }

    /// A small deterministic generator (the same run every time).
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func neverTwoServersForOnePartition(seed: UInt64) {
        var random = Generator(state: seed)
        let keys = PlacementKeys(prefix: "/sg")
        let ttl = 4.0
        let partitions = Set((0..<12).map { PartitionKey(topic: "docs", partition: Int32($0)) })
        let ids = ["server1", "server2", "server3"]
        var nodes = ids.map { Node(machine: Machine(nodeID: $0, leaseTTL: .seconds(ttl))) }
        var expiry: [String: Double] = [:]
        var owners: [PartitionKey: String] = [:]
        var registered: Set<String> = []
        var revision: Int64 = 1

        func directory() -> PlacementDirectory {
            var entries: [(key: String, value: [UInt8])] = registered.map {
                (keys.nodeKey($0), Array(#"{"url":"wss://\#($0)","connections":0,"started":0}"#.utf8))
            }
            entries += owners.map { (keys.ownerKey($0.key), Array($0.value.utf8)) }
            return PlacementDirectory(keys: keys, entries: entries, revision: revision)
        }

        func perform(_ actions: [Machine.Action], node index: Int, now: Double) {
            let id = ids[index]
            for action in actions {
                switch action {
                case .claim(let partition):
                    let alive = (expiry[id] ?? 0) > now
                    let won = alive && owners[partition] == nil
                    if won { owners[partition] = id; revision += 1 }
                    perform(nodes[index].machine.claimFinished(partition, won: won, now: .seconds(now)), node: index, now: now)
                case .release(let partition):
                    if owners[partition] == id { owners[partition] = nil; revision += 1 }
                    perform(nodes[index].machine.releaseFinished(partition, now: .seconds(now)), node: index, now: now)
                case .startServing, .stopServing:
                    break
                }
            }
        }

        var now = 0.0
        let pausesEnd = 25.0
        while now < 40 {
            now += 0.05
            // etcd expires leases (and their keys).
            for (id, until) in expiry where until <= now {
                expiry[id] = nil
                registered.remove(id)
                owners = owners.filter { $0.value != id }
                revision += 1
            }
            for index in nodes.indices {
                let id = ids[index]
                if now < pausesEnd, nodes[index].pausedUntil <= now, Int.random(in: 0..<400, using: &random) == 0 {
                    nodes[index].pausedUntil = now + Double.random(in: 0.5...(ttl * 2), using: &random)
                }
                guard nodes[index].pausedUntil <= now else { continue }
                if now >= nodes[index].nextRenewal {
                    nodes[index].nextRenewal = now + ttl / 4
                    if let until = expiry[id], until > now {
                        expiry[id] = now + ttl
                        perform(nodes[index].machine.leaseRenewed(sentAt: .seconds(now)), node: index, now: now)
                    } else {
                        if nodes[index].registered {
                            perform(nodes[index].machine.leaseLost(), node: index, now: now)
                        }
                        expiry[id] = now + ttl
                        registered.insert(id)
                        revision += 1
                        nodes[index].registered = true
                        perform(nodes[index].machine.leaseGranted(sentAt: .seconds(now)), node: index, now: now)
                        perform(nodes[index].machine.partitionsChanged(partitions, now: .seconds(now)), node: index, now: now)
                    }
                }
                perform(nodes[index].machine.directoryChanged(directory(), now: .seconds(now)), node: index, now: now)
                perform(nodes[index].machine.tick(now: .seconds(now)), node: index, now: now)
            }
            // What each node would answer an upgrade now, paused or not (a paused node wakes to this clock).
            for partition in partitions {
                let servers = nodes.filter { $0.machine.decision(for: partition, now: .seconds(now)) == .serveHere }
                #expect(servers.count <= 1, "\(partition) served by \(servers.map(\.machine.nodeID)) at \(now)")
            }
        }
        for partition in partitions {
            let servers = nodes.filter { $0.machine.decision(for: partition, now: .seconds(now)) == .serveHere }
            #expect(servers.count == 1, "\(partition) at the end: \(servers.map(\.machine.nodeID))")
        }
    }
}
