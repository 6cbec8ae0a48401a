import NIOConcurrencyHelpers
import NIOCore
import StreamgateClient
import Synchronization

/// Counts message frames for all subscriber connections on one event loop and samples their latency
/// (from the publish's intended send time, carried in the payload).
final class BenchFanoutReceiver {
    struct Snapshot: Sendable {
        var delivered = 0
        var gaps = 0
        var latency = BenchLatency()

        mutating func add(_ other: Snapshot) {
            delivered += other.delivered
            gaps += other.gaps
            latency.add(other.latency)
        }
    }

    private var snapshot = Snapshot()
    private var window: BenchWindow?
    private var sequence = 0
    private let sampleEvery: Int

    init(sampleEvery: Int) { self.sampleEvery = max(1, sampleEvery) }

    func setWindow(_ window: BenchWindow) { self.window = window }

    func current() -> Snapshot { snapshot }

    func received(_ frame: ServerFrame) {
        switch frame.kind {
        case .message:
            snapshot.delivered += 1
            sequence &+= 1
            guard sequence % sampleEvery == 0, let window else { return }
            let now = BenchClock.now()
            guard let fields = try? frame.fields(),
                let sent = frame.withData(fields, { BenchPayload.timestamp(in: $0) }) ?? nil,
                window.contains(sent)
            else { return }
            snapshot.latency.record(nanoseconds: now &- sent)
        case .gap:
            snapshot.gaps += 1
        default:
            break
        }
    }
}

@available(*, unavailable)
extension BenchFanoutReceiver: Sendable {}

/// One receiver per event loop of a group, so subscribers on a loop share counters without locks.
final class BenchFanoutReceivers: Sendable {
    private let receivers: [NIOLoopBound<BenchFanoutReceiver>]
    /// Connections the server closed while the bench still used them.
    let closedByServer = Atomic<Int>(0)

    private init(receivers: [NIOLoopBound<BenchFanoutReceiver>]) {
        self.receivers = receivers
    }

    /// Creates one receiver on each event loop of `group`.
    static func make(group: any EventLoopGroup, sampleEvery: Int) async throws -> BenchFanoutReceivers {
        var receivers: [NIOLoopBound<BenchFanoutReceiver>] = []
        for loop in group.makeIterator() {
            receivers.append(
                try await loop.submit {
                    NIOLoopBound(BenchFanoutReceiver(sampleEvery: sampleEvery), eventLoop: loop)
                }.get())
        }
        return BenchFanoutReceivers(receivers: receivers)
    }

    /// The event loop of subscriber `index`.
    func loop(_ index: Int) -> any EventLoop { receivers[index % receivers.count].eventLoop }

    /// The frame handler of subscriber `index` (run on ``loop(_:)``).
    func handler(_ index: Int) -> StreamgateConnection.FrameHandler {
        let receiver = receivers[index % receivers.count]
        return { frame in receiver.value.received(frame) }
    }

    func setWindow(_ window: BenchWindow) async throws {
        for receiver in receivers { try await receiver.eventLoop.submit { receiver.value.setWindow(window) }.get() }
    }

    func total() async throws -> BenchFanoutReceiver.Snapshot {
        var total = BenchFanoutReceiver.Snapshot()
        for receiver in receivers { total.add(try await receiver.eventLoop.submit { receiver.value.current() }.get()) }
        return total
    }
}
