import NIOCore
import StreamgateClient

/// Publishes on one connection, on the connection's event loop: closed-loop (keep `window` publishes
/// outstanding) or open-loop (a fixed rate, latency from each publish's intended time).
final class BenchPublisher {
    enum Mode {
        case closedLoop
        case openLoop(rate: Double)
    }

    /// What one publisher saw; merged across publishers.
    struct Outcome: Sendable {
        var sent = 0
        var acked = 0
        var ackedInWindow = 0
        var errors = 0
        var overloaded = false
        var latency = BenchLatency()
        var firstOffset: Int64 = .max
        var lastOffset: Int64 = -1
        var lastError: String?

        mutating func add(_ other: Outcome) {
            sent += other.sent
            acked += other.acked
            ackedInWindow += other.ackedInWindow
            errors += other.errors
            overloaded = overloaded || other.overloaded
            latency.add(other.latency)
            firstOffset = min(firstOffset, other.firstOffset)
            lastOffset = max(lastOffset, other.lastOffset)
            lastError = lastError ?? other.lastError
        }
    }

    /// Most publishes an open-loop publisher lets wait in the client before it declares the gateway overloaded.
    static let maxBacklog = 200_000

    private let connection: StreamgateConnection
    private let channel: String
    private let mode: Mode
    private let window: BenchWindow
    private let origin: UInt64
    private let payload: (UInt64) -> [UInt8]
    private var outcome = Outcome()
    private var task: RepeatedTask?

    /// - Parameters:
    ///   - payload: builds a payload from the publish's intended send time.
    init(
        connection: StreamgateConnection, channel: String, mode: Mode, window: BenchWindow, origin: UInt64,
        payload: @escaping (UInt64) -> [UInt8]
    ) {
        self.connection = connection
        self.channel = channel
        self.mode = mode
        self.window = window
        self.origin = origin
        self.payload = payload
    }

    /// Starts publishing on the connection's event loop; returns a handle to collect the outcome.
    static func start(
        connection: StreamgateConnection, channel: String, mode: Mode, window: BenchWindow,
        origin: UInt64, windowSize: Int, payload: @escaping @Sendable (UInt64) -> [UInt8]
    )
        -> EventLoopFuture<NIOLoopBound<BenchPublisher>>
    {
        connection.eventLoop.submit {
            let publisher = BenchPublisher(
                connection: connection, channel: channel, mode: mode, window: window,
                origin: origin, payload: payload)
            let bound = NIOLoopBound(publisher, eventLoop: connection.eventLoop)
            switch mode {
            case .closedLoop:
                for _ in 0..<windowSize { publisher.publish(intended: BenchClock.now(), bound: bound) }
            case .openLoop:
                publisher.task = connection.eventLoop.scheduleRepeatedTask(
                    initialDelay: .zero, delay: .microseconds(500)
                ) {
                    _ in bound.value.tick(bound: bound)
                }
            }
            return bound
        }
    }

    /// Publishes still unanswered.
    var outstanding: Int { connection.outstandingPublishes() }

    func snapshot() -> Outcome { outcome }

    func stop() {
        task?.cancel()
        task = nil
    }

    private func tick(bound: NIOLoopBound<BenchPublisher>) {
        guard case .openLoop(let rate) = mode else { return }
        let now = BenchClock.now()
        guard now < window.end, !outcome.overloaded else { return stop() }
        guard now >= origin else { return }
        let interval = 1e9 / rate
        let due = Int(Double(now - origin) / interval)
        while outcome.sent <= due {
            let intended = origin + UInt64(Double(outcome.sent) * interval)
            guard intended < window.end else { return stop() }
            if connection.outstandingPublishes() > Self.maxBacklog {
                outcome.overloaded = true
                return stop()
            }
            publish(intended: intended, bound: bound)
        }
    }

    private func publish(intended: UInt64, bound: NIOLoopBound<BenchPublisher>) {
        outcome.sent += 1
        connection.publish(channel: channel, payload: .jsonBytes(payload(intended))) { result in
            bound.value.completed(result, intended: intended, bound: bound)
        }
    }

    private func completed(
        _ result: Result<PublishAck, StreamgateClientError>, intended: UInt64,
        bound: NIOLoopBound<BenchPublisher>
    ) {
        let now = BenchClock.now()
        switch result {
        case .success(let ack):
            outcome.acked += 1
            if let offset = ack.offset {
                outcome.firstOffset = min(outcome.firstOffset, offset)
                outcome.lastOffset = max(outcome.lastOffset, offset)
            }
            if window.contains(now) {
                outcome.ackedInWindow += 1
                outcome.latency.record(nanoseconds: now &- intended)
            }
        case .failure(let error):
            outcome.errors += 1
            outcome.lastError = "\(error)"
        }
        if case .closedLoop = mode, now < window.end, case .success = result {
            publish(intended: now, bound: bound)
        }
    }
}

@available(*, unavailable)
extension BenchPublisher: Sendable {}

/// Runs publishers on many connections and gathers what they saw.
enum BenchPublishing {
    static func run(
        connections: [StreamgateConnection], channels: [String], mode: (Int) -> BenchPublisher.Mode,
        window: BenchWindow, origin: UInt64, windowSize: Int,
        payload: @escaping @Sendable (UInt64) -> [UInt8], drainSeconds: Double = 10,
        atWindowStart: () async throws -> Void = {}, atWindowEnd: () async throws -> Void = {}
    ) async throws -> BenchPublisher.Outcome {
        var publishers: [NIOLoopBound<BenchPublisher>] = []
        for (index, connection) in connections.enumerated() {
            publishers.append(
                try await BenchPublisher.start(
                    connection: connection, channel: channels[index % channels.count], mode: mode(index),
                    window: window,
                    origin: origin, windowSize: windowSize, payload: payload
                ).get())
        }
        await BenchClock.sleep(until: window.start)
        try await atWindowStart()
        await BenchClock.sleep(until: window.end)
        try await atWindowEnd()
        let deadline = BenchClock.now() + BenchClock.nanoseconds(drainSeconds)
        for publisher in publishers {
            let loop = publisher.eventLoop
            _ = try await loop.submit { publisher.value.stop() }.get()
            while try await loop.submit({ publisher.value.outstanding }).get() > 0, BenchClock.now() < deadline {
                try await Task.sleep(nanoseconds: 10_000_000)
            }
        }
        var total = BenchPublisher.Outcome()
        for publisher in publishers {
            total.add(try await publisher.eventLoop.submit { publisher.value.snapshot() }.get())
        }
        return total
    }
}
