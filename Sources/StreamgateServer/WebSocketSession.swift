import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import StreamgateCore
import StreamgateKafka

/// One WebSocket connection's I/O: decodes frames, feeds them to its ``SessionStateMachine`` and carries out
/// the actions it returns — start look-ups on the blocking pool, token checks, hub registrations, publishes
/// through its ``Publisher`` (within the publish rate), frames through its ``ConnectionOutbox``, closes
/// bounded by the close timeout. Its loop's sweep pings it and times it out (``Liveness``), and ticks the
/// machine's auth deadlines.
final class WebSocketSession: ChannelInboundHandler, RemovableChannelHandler, SweepMember {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A ticket's subscription and, until it is attached, its resolved start.
    struct Ticketed {
        var subscription: Subscription
        var id: RequestID?
        var resolution: StartResolution?
    }

    let environment: SessionEnvironment
    private let connectionID: String
    private let boundStart: StartPosition
    let window: PublishWindow
    /// The partition of the bound affinity channel, which this node served at the upgrade.
    let affinity: PartitionKey?
    var machine: SessionStateMachine
    var outbox: ConnectionOutbox!
    private var publisher: Publisher!
    var context: ChannelHandlerContext?
    var tickets: [SessionStateMachine.Ticket: Ticketed] = [:]
    private var readingPaused = false
    /// Tickets re-subscribing a channel that moved partition, with the offset it had reached in the old one.
    private var repartitioned: [SessionStateMachine.Ticket: Int64] = [:]
    private var logger: Logger
    var liveness: Liveness
    private var publishRate: TokenBucket
    let activity: InboundActivity
    private var sweeper: LoopSweeper?
    var pingCounter: UInt64 = 0
    /// ``InboundActivity/frames`` at the last sweep.
    var framesSeen: UInt64 = 0

    init(environment: SessionEnvironment, connectionID: String, boundChannel: ChannelName?, boundStart: StartPosition,
         identity: SessionStateMachine.Identity?, affinity: PartitionKey? = nil, activity: InboundActivity) {
        self.environment = environment
        self.connectionID = connectionID
        self.boundStart = boundStart
        self.affinity = affinity
        self.activity = activity
        self.window = PublishWindow(total: environment.registry.inFlight)
        let configuration = environment.configuration
        self.machine = SessionStateMachine(configuration: .init(
            boundChannel: boundChannel, namespaces: configuration.namespaces,
            maxSubscriptions: configuration.maxSubscriptionsPerConnection,
            maxConcurrentResolutions: configuration.maxConcurrentResolutionsPerConnection,
            authRequired: environment.verifier != nil, headerIdentity: identity,
            authTimeoutNanoseconds: Int64(configuration.authTimeoutSeconds * 1e9),
            publicNamespaces: configuration.publicNamespaces))
        let now = NIODeadline.now().uptimeNanoseconds
        self.liveness = Liveness(intervalNanoseconds: Int64(configuration.pingIntervalSeconds * 1e9),
                                 timeoutNanoseconds: Int64(configuration.pingTimeoutSeconds * 1e9), now: Int64(now))
        self.publishRate = TokenBucket(ratePerSecond: configuration.publishRatePerSecond, burst: configuration.publishBurst,
                                       now: Int64(now))
        self.logger = environment.logger
        self.logger[metadataKey: "connection"] = "\(connectionID)"
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let configuration = environment.configuration
        let channel = context.channel
        let hub = environment.backend.hub
        outbox = ConnectionOutbox(
            channel: channel, pauseBytes: configuration.slowConsumerBytes,
            stallTimeout: .milliseconds(Int64(configuration.slowConsumerSeconds * 1000)),
            resume: { hub.resume($0) },
            onStall: { channel.pipeline.fireUserInboundEventTriggered(SlowConsumerEvent()) },
            framesSent: environment.metrics.framesSent)
        publisher = Publisher(
            sink: environment.backend.producer,
            limits: .init(maxInFlight: configuration.maxInFlightPerConnection,
                          maxInFlightBytes: configuration.maxInFlightBytesPerConnection),
            window: window, outbox: outbox, metrics: environment.metrics, tracer: environment.backend.tracer,
            onRoom: { channel.pipeline.fireUserInboundEventTriggered(SessionEvent.windowReopened) })
        environment.registry.add(ObjectIdentifier(self), channel)
        environment.metrics.connectionOpened(endpoint)
        if let affinity, let bound = machine.configuration.boundChannel {
            environment.placement.members.join(ObjectIdentifier(self), partition: affinity, channel: bound,
                                               connection: channel)
        }
        let sweeper = environment.sweepers.sweeper(for: context.eventLoop)
        sweeper.add(self)
        self.sweeper = sweeper
        perform(machine.opened(boundStart: boundStart, now: Int64(NIODeadline.now().uptimeNanoseconds)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { outbox.flush() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        environment.metrics.framesReceived.increment()
        switch frame.opcode {
        case .text:
            // The frame guard checked the UTF-8 as the fragments came.
            let result = frame.data.withUnsafeReadableBytes { environment.decoder.decode($0) }
            switch result {
            case .failure(let error): perform(machine.receivedInvalid(error))
            case .success(let request):
                if case .publish = request { confirmPlacement() }
                perform(machine.received(request))
            }
        case .binary:
            perform(machine.receivedBinary())
        case .ping:
            guard machine.state == .open || machine.state == .draining else { return }
            outbox.pong(frame.unmaskedData)
        case .connectionClose:
            // The frame guard checked the code and the reason's UTF-8.
            var data = frame.data
            let code = data.readInteger(as: UInt16.self)
            perform(machine.receivedClose(code: code, reasonIsValidUTF8: true))
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let event as SessionEvent:
            switch event {
            case .beginDrain: perform(machine.beginDrain())
            case .closeForDrain: perform(machine.closeForDrain())
            case .windowReopened: resumeReadingIfRoom()
            }
        case let violation as FrameViolationEvent:
            perform(machine.fail(code: violation.code, reason: violation.reason))
        case is SlowConsumerEvent:
            environment.metrics.slowConsumerCloses.increment()
            perform(machine.close(code: CloseCode.slowConsumer, reason: "slow consumer: resume from your last offset"))
        case let handOff as PartitionHandOffEvent:
            beginHandOff(to: handOff.url)
        case let moved as SubscriptionMovedEvent:
            guard let (ticket, _) = tickets.first(where: { $0.value.subscription === moved.subscription }) else { return }
            let from = environment.backend.hub.next(of: moved.subscription)
            let actions = machine.moved(ticket, channel: moved.subscription.channel)
            for case .resolve(let fresh, _, _, _, _) in actions { repartitioned[fresh] = from ?? 0 }
            perform(actions)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        // A frame the decoder refused: over the frame limit (1009), a control frame over 125 bytes or
        // fragmented (1002). The decoder drops whatever follows.
        if let error = error as? NIOWebSocketError {
            let (code, reason): (UInt16, String) =
                switch error {
                case .invalidFrameLength: (CloseCode.tooBig, "frame over the size limit")
                case .fragmentedControlFrame: (CloseCode.protocolError, "fragmented control frame")
                case .multiByteControlFrameLength: (CloseCode.protocolError, "control frame over 125 bytes")
                }
            perform(machine.fail(code: code, reason: reason))
            return
        }
        context.close(promise: nil)
    }

    // MARK: - Actions

    func perform(_ actions: [SessionStateMachine.Action]) {
        for action in actions { perform(action) }
        if publisher.wantsPause { pauseReading() }
    }

    private func perform(_ action: SessionStateMachine.Action) {
        switch action {
        case .reply(let bytes):
            outbox.enqueue(bytes: bytes)
        case .resolve(let ticket, let id, let channel, let topic, let start):
            environment.metrics.subscribed(from: start.metricsKind)
            resolve(ticket, id: id, channel: channel, topic: topic, start: start)
        case .attach(let ticket):
            guard let entry = tickets[ticket], let resolution = entry.resolution else { return }
            environment.backend.hub.subscribe(entry.subscription, resolution: resolution,
                                              subscribedFrame: subscribedFrame(entry, resolution))
        case .answerDetached(let ticket):
            guard let entry = tickets.removeValue(forKey: ticket), let resolution = entry.resolution else { return }
            outbox.enqueue(bytes: subscribedFrame(entry, resolution))
        case .detach(let ticket):
            guard let entry = tickets.removeValue(forKey: ticket) else { return }
            environment.backend.hub.unsubscribe(entry.subscription)
        case .discard(let ticket):
            tickets[ticket] = nil
        case .publish(let id, let channel, let topic, let payload, let msgID, let traceparent, let sender):
            guard publishRate.take(now: Int64(NIODeadline.now().uptimeNanoseconds)) else {
                outbox.enqueue(bytes: ServerFrameEncoder.error(RequestError(id: id, code: .rateLimited,
                    message: "over \(Int(environment.configuration.publishRatePerSecond)) publishes a second; not stored")))
                return
            }
            let headers = RecordHeaders(
                contentType: payload.contentType, msgID: msgID, sender: sender, connection: connectionID,
                node: environment.configuration.nodeID, traceparent: traceparent)
            publisher.publish(id: id, channel: channel, topic: topic, payload: payload, headers: headers)
        case .verifyToken(let id, let token):
            verify(token, id: id)
        case .redirect(let id, let channel):
            let topic = machine.configuration.namespaces.route(for: channel)?.topic ?? ""
            outbox.enqueue(bytes: ServerFrameEncoder.moved(
                id: id, channel: channel, url: environment.placement.movedURL(for: channel, topic: topic), offset: nil))
        case .pauseReading:
            pauseReading()
        case .failWaitingPublishes:
            publisher.failWaiting(reason: "the connection closed before this publish reached Kafka")
        case .sendClose(let code, let reason, let thenCloseTransport, let explanation):
            sendClose(code: code, reason: reason, thenCloseTransport: thenCloseTransport, explanation: explanation)
        case .failConnection(let code, let reason):
            failConnection(code: code, reason: reason)
        case .closeTransport:
            context?.close(promise: nil)
        }
    }

    private func subscribedFrame(_ entry: Ticketed, _ resolution: StartResolution) -> [UInt8] {
        let subscription = entry.subscription
        return ServerFrameEncoder.subscribed(id: entry.id, channel: subscription.channel,
                                             partition: subscription.partition, offset: resolution.next,
                                             head: resolution.head, gap: resolution.gap)
    }

    /// Resolves a start on the blocking pool, then reports back on the event loop.
    private func resolve(_ ticket: SessionStateMachine.Ticket, id: RequestID?, channel: ChannelName, topic: String,
                         start: StartPosition) {
        let backend = environment.backend
        let outbox = self.outbox!
        let eventLoop = outbox.eventLoop
        let session = NIOLoopBound(self, eventLoop: eventLoop)
        let pool = start.needsSearch ? environment.searchPool : environment.blockingPool
        pool.submit { _ in
            do {
                let count = try backend.partitionCount(topic: topic)
                let partition = Murmur2Partitioner.partition(for: channel.value.utf8, partitionCount: count)
                let resolution = try backend.resolver.resolve(start, in: TopicPartition(topic: topic, partition: partition))
                let subscription = Subscription(channel: channel, topic: topic, partition: partition, outbox: outbox)
                eventLoop.execute {
                    let this = session.value
                    guard this.machine.state != .closed else { return }
                    var resolution = resolution
                    if let from = this.repartitioned.removeValue(forKey: ticket) {
                        resolution.gap = .init(from: from, to: resolution.next, reason: "repartitioned")
                    }
                    this.tickets[ticket] = Ticketed(subscription: subscription, id: id, resolution: resolution)
                    this.perform(this.machine.resolved(ticket))
                }
            } catch {
                let message = "cannot subscribe to \(channel): \(error)"
                eventLoop.execute { session.value.perform(session.value.machine.resolutionFailed(ticket, message: message)) }
            }
        }
    }

    // MARK: - Flow control and closing

    private func pauseReading() {
        guard !readingPaused, let channel = context?.channel else { return }
        readingPaused = true
        channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    private func resumeReadingIfRoom() {
        guard readingPaused, machine.state == .open, !publisher.wantsPause, let channel = context?.channel else { return }
        readingPaused = false
        channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        channel.read()
    }

    /// Writes the close frame ahead of anything still queued (queued data is dropped: the close must not wait
    /// behind it) and bounds the close: the transport is closed once the frame is written when asked, and
    /// in any case when the close timeout passes.
    func sendClose(code: UInt16, reason: String, thenCloseTransport: Bool, explanation: [UInt8]? = nil) {
        guard let context else { return }
        outbox.close()
        publisher.stop()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeString(reason)
        let channel = context.channel
        if let explanation {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(bytes: explanation))),
                          promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
        // The peer's answering close must be read (what comes before it is dropped): a read paused for flow
        // control or a hand-off would hold the close until its time-out.
        if readingPaused {
            readingPaused = false
            channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            channel.read()
        }
        if thenCloseTransport { written.whenComplete { _ in channel.close(promise: nil) } }
        let session = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let timeout = TimeAmount.milliseconds(Int64(environment.configuration.closeTimeoutSeconds * 1000))
        channel.eventLoop.scheduleTask(in: timeout) {
            session.value.perform(session.value.machine.closeTimedOut())
        }
    }

    /// Writes the close frame, then shuts down our side only: the peer sees the close frame and an end of
    /// stream and closes, while whatever it still sends is read and dropped (a full close with unread input
    /// would reset the connection, and the peer could lose the close frame). The close timeout bounds it.
    private func failConnection(code: UInt16, reason: String) {
        guard let context else { return }
        sendClose(code: code, reason: reason, thenCloseTransport: false)
        let channel = context.channel
        channel.flush()
        channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
    }

    /// Runs once, from `channelInactive` or `handlerRemoved`, whichever comes first.
    private func tearDown() {
        guard outbox != nil, machine.state != .closed else { return }
        outbox.close()
        publisher.stop()
        sweeper?.remove(self)
        sweeper = nil
        environment.registry.remove(ObjectIdentifier(self))
        // The places the handshake gate reserved for this connection.
        environment.registry.releaseWebSocket()
        environment.metrics.connectionClosed(endpoint)
        if let affinity, let bound = machine.configuration.boundChannel {
            environment.placement.members.leave(ObjectIdentifier(self), partition: affinity, channel: bound)
        }
        perform(machine.transportClosed())
    }
}

@available(*, unavailable)
extension WebSocketSession: Sendable {}

/// Fired into a connection's pipeline when the delivery side moved one of its subscriptions' channels to
/// another partition (the topic grew partitions).
struct SubscriptionMovedEvent: Sendable {
    let subscription: Subscription
}

extension WebSocketSession {
    fileprivate var endpoint: GatewayMetrics.Endpoint {
        machine.configuration.boundChannel == nil ? .multiplexed : .bound
    }
}

extension StartPosition {
    fileprivate var metricsKind: GatewayMetrics.StartKind {
        switch self {
        case .latest: .latest
        case .earliest: .earliest
        case .offset: .offset
        case .time: .time
        }
    }

    /// Whether resolving it reads records (a time search), which runs on its own small pool.
    var needsSearch: Bool {
        if case .time = self { return true }
        return false
    }
}
