import StreamgateCore
import Testing

/// Two to four nodes share one simulated etcd, each through its own ``OwnershipStateMachine``, with random
/// delays, pauses, crashes, drains and etcd errors: no partition is ever served by two nodes at one instant
/// (each node's serving judged by its own local deadline, paused or not), and once the nodes are stable every
/// partition is served by exactly one, its rendezvous owner.
@Suite struct PlacementSimulationTests {
    @Test(arguments: [2, 3, 4], [1, 2, 3, 4, 5, 6] as [UInt64])
    func neverTwoServersAndEventuallyOne(nodes: Int, seed: UInt64) {
        let simulation = PlacementSimulation(nodeCount: nodes, seed: seed)
        simulation.run()
        let violations = simulation.violations.count
        #expect(violations == 0, "\(simulation.violations.prefix(6).joined(separator: "\n"))")
        let problems = simulation.finalProblems.count
        #expect(problems == 0, "\(simulation.finalProblems.prefix(6).joined(separator: "\n"))")
        // The run did move partitions around, not just sit still.
        let stats = simulation.stats
        #expect(stats["stopServing", default: 0] > 0 && stats["pause", default: 0] > 0, "\(stats)")
    }
}

/// The simulated cluster: etcd (leases that expire one TTL after etcd last received a renewal, create-if-absent
/// claims, delete-if-mine releases, a watch history) and the nodes' processes around their machines.
final class PlacementSimulation {
    typealias Machine = OwnershipStateMachine<TestInstant>

    let ttl = 2.0
    let step = 0.01
    /// Pauses, crashes, drains, etcd errors and long delays happen only before this.
    let chaosEnd = 30.0
    let end = 50.0
    let keys = PlacementFixtures.keys
    let partitions = Set(PlacementFixtures.partitions(16))
    private(set) var violations: [String] = []
    private(set) var finalProblems: [String] = []
    private(set) var stats: [String: Int] = [:]

    private var random: PlacementRandom
    private var now = 0.0
    private var chaos: Bool { now < chaosEnd }

    // MARK: etcd

    private struct Entry {
        var value: [UInt8]
        var lease: Int64
    }

    private struct Change {
        var time: Double
        var key: String
        var value: [UInt8]?
        var revision: Int64
    }

    private var store: [String: Entry] = [:]
    private var leases: [Int64: Double] = [:]  // id → expiry
    private var nextLease: Int64 = 1
    private var revision: Int64 = 1
    private var history: [Change] = []

    // MARK: messages

    private enum Request {
        case grant(sentAt: Double)
        case register(lease: Int64)
        case keepAlive(lease: Int64, sentAt: Double, epoch: Int)
        case claim(PartitionKey, lease: Int64, epoch: Int)
        case release(PartitionKey, epoch: Int)
        case leave(lease: Int64)
        case revoke(lease: Int64)
    }

    private enum Response {
        case granted(lease: Int64, sentAt: Double)
        case registered(Bool)
        case renewed(sentAt: Double, epoch: Int)
        case leaseNotFound(epoch: Int)
        /// `won == nil`: an etcd error (or no answer in time).
        case claimed(PartitionKey, won: Bool?, epoch: Int)
        case released(PartitionKey, ok: Bool, epoch: Int)
    }

    private enum Body {
        case request(Request)
        case response(Response)
    }

    private struct Message {
        var time: Double
        var order: Int
        var node: Int
        var incarnation: Int
        var body: Body
    }

    private var messages: [Message] = []
    private var order = 0

    // MARK: nodes

    private enum Phase {
        case down(restartAt: Double)
        case granting
        case registering(lease: Int64, sentAt: Double)
        case waiting(until: Double)
        case up
        case draining(since: Double)
    }

    private struct Node {
        var id: String
        var incarnation = 0
        var phase: Phase = .down(restartAt: 0)
        var machine: Machine?
        var lease: Int64?
        /// Changes at every grant and loss: answers to requests of an earlier lease are dropped.
        var epoch = 0
        var nextRenewal = 0.0
        var pausedUntil = 0.0
        var inbox: [Response] = []
        var view: PlacementDirectory
        var cursor = 0
        var lag = 0.0
        var nextLagChange = 0.0
        /// What the actions said is served, to check that starts and stops pair up.
        var mirror: Set<PartitionKey> = []
    }

    private var nodes: [Node]

    init(nodeCount: Int, seed: UInt64) {
        random = PlacementRandom(state: seed &* 0x2545_f491_4f6c_dd1d)
        nodes = (1...nodeCount).map {
            Node(id: "server\($0)", view: PlacementDirectory(keys: PlacementFixtures.keys, entries: [], revision: 0))
        }
        for index in nodes.indices { nodes[index].phase = .down(restartAt: Double.random(in: 0...2, using: &random)) }
    }

    func run() {
        while now < end {
            now += step
            deliver()
            expireLeases(at: now)
            for index in nodes.indices { advance(index) }
            checkServers()
        }
        checkFinalState()
    }

    // MARK: - etcd

    private func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &random) < probability }

    private func latency() -> Double {
        if chaos, chance(0.05) { return Double.random(in: 0.1...0.6, using: &random) }
        return Double.random(in: 0.001...0.03, using: &random)
    }

    private func send(_ request: Request, from node: Int) {
        order += 1
        messages.append(
            Message(
                time: now + latency(), order: order, node: node,
                incarnation: nodes[node].incarnation, body: .request(request)))
    }

    private func answer(_ message: Message, _ response: Response, at time: Double) {
        order += 1
        messages.append(
            Message(
                time: time + latency(), order: order, node: message.node,
                incarnation: message.incarnation, body: .response(response)))
    }

    private func deliver() {
        let due = messages.filter { $0.time <= now }.sorted { ($0.time, $0.order) < ($1.time, $1.order) }
        messages.removeAll { $0.time <= now }
        for message in due {
            expireLeases(at: message.time)
            switch message.body {
            case .request(let request):
                handle(request, message)
            case .response(let response):
                if nodes[message.node].incarnation == message.incarnation { nodes[message.node].inbox.append(response) }
            }
        }
    }

    private func record(_ key: String, _ value: [UInt8]?, at time: Double) {
        history.append(Change(time: time, key: key, value: value, revision: revision))
    }

    private func expireLeases(at time: Double) {
        for (lease, expiry) in leases.sorted(by: { $0.key < $1.key }) where expiry <= time {
            revoke(lease, at: time)
            stats["leaseExpired", default: 0] += 1
        }
    }

    private func revoke(_ lease: Int64, at time: Double) {
        leases[lease] = nil
        let attached = store.filter { $0.value.lease == lease }.keys.sorted()
        guard !attached.isEmpty else { return }
        revision += 1
        for key in attached {
            store[key] = nil
            record(key, nil, at: time)
        }
    }

    private func isAlive(_ lease: Int64, at time: Double) -> Bool { leases[lease].map { $0 > time } ?? false }

    private func handle(_ request: Request, _ message: Message) {
        let time = message.time
        let id = nodes[message.node].id
        switch request {
        case .grant(let sentAt):
            let lease = nextLease
            nextLease += 1
            leases[lease] = time + ttl
            answer(message, .granted(lease: lease, sentAt: sentAt), at: time)
        case .register(let lease):
            let key = keys.nodeKey(id)
            guard isAlive(lease, at: time), store[key] == nil else {
                answer(message, .registered(false), at: time)
                return
            }
            let value = PlacementFixtures.recordJSON(id)
            revision += 1
            store[key] = Entry(value: value, lease: lease)
            record(key, value, at: time)
            answer(message, .registered(true), at: time)
        case .keepAlive(let lease, let sentAt, let epoch):
            if isAlive(lease, at: time) {
                leases[lease] = time + ttl
                if chaos, chance(0.05) { return }  // the answer is lost: nothing is reported
                answer(message, .renewed(sentAt: sentAt, epoch: epoch), at: time)
            } else {
                answer(message, .leaseNotFound(epoch: epoch), at: time)
            }
        case .claim(let partition, let lease, let epoch):
            if chaos, chance(0.03) {  // lost on the way
                answer(message, .claimed(partition, won: nil, epoch: epoch), at: time + 0.5)
                return
            }
            let key = keys.ownerKey(partition)
            var won: Bool?
            if !isAlive(lease, at: time) {
                won = nil
            } else if store[key] == nil {
                revision += 1
                store[key] = Entry(value: Array(id.utf8), lease: lease)
                record(key, Array(id.utf8), at: time)
                won = true
            } else {
                won = false
                stats["claimLost", default: 0] += 1
            }
            if chaos, chance(0.03) { won = nil }  // done, but the answer is lost
            answer(message, .claimed(partition, won: won, epoch: epoch), at: time)
        case .release(let partition, let epoch):
            if chaos, chance(0.03) {
                answer(message, .released(partition, ok: false, epoch: epoch), at: time + 0.5)
                return
            }
            let key = keys.ownerKey(partition)
            if store[key]?.value == Array(id.utf8) {
                revision += 1
                store[key] = nil
                record(key, nil, at: time)
            }
            answer(message, .released(partition, ok: !(chaos && chance(0.03)), epoch: epoch), at: time)
        case .leave(let lease):
            let key = keys.nodeKey(id)
            if store[key]?.lease == lease {
                revision += 1
                store[key] = nil
                record(key, nil, at: time)
            }
        case .revoke(let lease):
            revoke(lease, at: time)
        }
    }

    // MARK: - Nodes

    private func advance(_ index: Int) {
        if case .down(let restartAt) = nodes[index].phase {
            if now >= restartAt { restart(index) }
            return
        }
        guard nodes[index].pausedUntil <= now else { return }
        if chaos {
            if chance(1.0 / 700) {
                nodes[index].pausedUntil = now + Double.random(in: 0.2...(2.5 * ttl), using: &random)
                stats["pause", default: 0] += 1
                return
            }
            if chance(1.0 / 6000) {
                stats["crash", default: 0] += 1
                goDown(index)
                return
            }
            if case .up = nodes[index].phase, chance(1.0 / 5000) {
                stats["drain", default: 0] += 1
                nodes[index].phase = .draining(since: now)
                if let lease = nodes[index].lease { send(.leave(lease: lease), from: index) }
                perform(index) { $0.drain(now: .seconds(now)) }
            }
        }
        if case .waiting(let until) = nodes[index].phase, now >= until {
            nodes[index].phase = .granting
            send(.grant(sentAt: now), from: index)
        }
        let inbox = nodes[index].inbox
        nodes[index].inbox = []
        for response in inbox { receive(response, index) }
        guard nodes[index].machine != nil else { return }
        switch nodes[index].phase {
        case .up, .draining: break
        default: return
        }
        followWatch(index)
        if let lease = nodes[index].lease, now >= nodes[index].nextRenewal {
            nodes[index].nextRenewal = now + ttl / 4
            send(.keepAlive(lease: lease, sentAt: now, epoch: nodes[index].epoch), from: index)
        }
        perform(index) { $0.tick(now: .seconds(now)) }
        if case .draining(let since) = nodes[index].phase,
            nodes[index].machine?.drained == true || now - since > 3
        {
            if let lease = nodes[index].lease { send(.revoke(lease: lease), from: index) }
            goDown(index)
        }
    }

    private func restart(_ index: Int) {
        nodes[index].incarnation += 1
        nodes[index].machine = Machine(
            nodeID: nodes[index].id, leaseTTL: .milliseconds(Int64(ttl * 1000)),
            retryDelay: .milliseconds(300))
        nodes[index].view = PlacementDirectory(keys: keys, entries: [], revision: 0)
        nodes[index].cursor = 0
        nodes[index].mirror = []
        nodes[index].inbox = []
        nodes[index].lease = nil
        nodes[index].phase = .granting
        send(.grant(sentAt: now), from: index)
    }

    /// The process ends (drained, or killed): whatever it served ends with it.
    private func goDown(_ index: Int) {
        nodes[index].machine = nil
        nodes[index].mirror = []
        nodes[index].lease = nil
        nodes[index].incarnation += 1
        nodes[index].phase = .down(restartAt: now + Double.random(in: 0.5...3, using: &random))
    }

    private func receive(_ response: Response, _ index: Int) {
        let epoch = nodes[index].epoch
        switch response {
        case .granted(let lease, let sentAt):
            guard case .granting = nodes[index].phase else { return }
            nodes[index].phase = .registering(lease: lease, sentAt: sentAt)
            send(.register(lease: lease), from: index)
        case .registered(let ok):
            guard case .registering(let lease, let sentAt) = nodes[index].phase else { return }
            guard ok else {
                // The id is still registered by an earlier lease: wait for it to expire.
                send(.revoke(lease: lease), from: index)
                nodes[index].phase = .waiting(until: now + 0.5)
                return
            }
            nodes[index].lease = lease
            nodes[index].phase = .up
            nodes[index].epoch += 1
            nodes[index].nextRenewal = now + ttl / 4
            perform(index) { $0.leaseGranted(sentAt: .seconds(sentAt)) }
            let all = partitions
            perform(index) { $0.partitionsChanged(all, now: .seconds(now)) }
        case .renewed(let sentAt, let sent):
            guard sent == epoch else { return }
            perform(index) { $0.leaseRenewed(sentAt: .seconds(sentAt)) }
        case .leaseNotFound(let sent):
            guard sent == epoch, nodes[index].lease != nil else { return }
            stats["leaseLost", default: 0] += 1
            perform(index) { $0.leaseLost() }
            nodes[index].epoch += 1
            nodes[index].lease = nil
            if case .draining = nodes[index].phase {
                goDown(index)
            } else {
                nodes[index].phase = .granting
                send(.grant(sentAt: now), from: index)
            }
        case .claimed(let partition, let won, let sent):
            guard sent == epoch else { return }
            if let won {
                perform(index) { $0.claimFinished(partition, won: won, now: .seconds(now)) }
            } else {
                perform(index) { $0.claimFailed(partition, now: .seconds(now)) }
            }
        case .released(let partition, let ok, let sent):
            guard sent == epoch else { return }
            if ok {
                perform(index) { $0.releaseFinished(partition, now: .seconds(now)) }
            } else {
                perform(index) { $0.releaseFailed(partition, now: .seconds(now)) }
            }
        }
    }

    /// The watch: every change of etcd's history reaches the node in order, `lag` after it happened.
    private func followWatch(_ index: Int) {
        if now >= nodes[index].nextLagChange {
            nodes[index].nextLagChange = now + 1
            nodes[index].lag =
                chaos && chance(0.1)
                ? Double.random(in: 0.3...1.5, using: &random) : Double.random(in: 0...0.1, using: &random)
        }
        var changed = false
        while nodes[index].cursor < history.count, history[nodes[index].cursor].time + nodes[index].lag <= now {
            let change = history[nodes[index].cursor]
            if let value = change.value {
                nodes[index].view.apply(put: change.key, value: value, revision: change.revision)
            } else {
                nodes[index].view.apply(delete: change.key, revision: change.revision)
            }
            nodes[index].cursor += 1
            changed = true
        }
        if changed {
            let view = nodes[index].view
            perform(index) { $0.directoryChanged(view, now: .seconds(now)) }
        }
    }

    private func perform(_ index: Int, _ input: (inout Machine) -> [Machine.Action]) {
        guard var machine = nodes[index].machine else { return }
        let actions = input(&machine)
        nodes[index].machine = machine
        let id = nodes[index].id
        for action in actions {
            switch action {
            case .startServing(let partition):
                stats["startServing", default: 0] += 1
                if nodes[index].mirror.contains(partition) { violations.append("\(id) started \(partition) twice") }
                nodes[index].mirror.insert(partition)
                for other in nodes.indices where other != index {
                    if nodes[other].machine?.decision(for: partition, now: .seconds(now)) == .serveHere {
                        violations.append("\(id) started \(partition) at \(now) while \(nodes[other].id) serves it")
                    }
                }
            case .stopServing(let partition, let next):
                stats["stopServing", default: 0] += 1
                if nodes[index].mirror.remove(partition) == nil {
                    violations.append("\(id) stopped \(partition), which it did not serve")
                }
                if next == id { violations.append("\(id) moved \(partition)'s clients to itself") }
            case .claim(let partition):
                stats["claim", default: 0] += 1
                if let lease = nodes[index].lease {
                    send(.claim(partition, lease: lease, epoch: nodes[index].epoch), from: index)
                } else {
                    violations.append("\(id) claimed \(partition) without a lease")
                }
            case .release(let partition):
                stats["release", default: 0] += 1
                send(.release(partition, epoch: nodes[index].epoch), from: index)
            }
        }
        if nodes[index].mirror != machine.serving {
            violations.append("\(id): actions and serving disagree at \(now)")
        }
    }

    // MARK: - Checks

    private func servers(of partition: PartitionKey) -> [String] {
        nodes.compactMap { node in
            node.machine?.decision(for: partition, now: .seconds(now)) == .serveHere ? node.id : nil
        }
    }

    private func checkServers() {
        for partition in partitions.sorted() {
            let servers = servers(of: partition)
            if servers.count > 1 { violations.append("\(partition) served by \(servers) at \(now)") }
        }
    }

    private func checkFinalState() {
        let ids = nodes.map(\.id)
        for node in nodes {
            if case .up = node.phase {} else { finalProblems.append("\(node.id) is not up at the end: \(node.phase)") }
        }
        for partition in partitions.sorted() {
            let servers = servers(of: partition)
            let owner = Rendezvous.owner(of: partition, among: ids)!
            if servers != [owner] { finalProblems.append("\(partition): served by \(servers), owner \(owner)") }
        }
    }
}
