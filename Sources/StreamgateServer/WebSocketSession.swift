import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import StreamgateCore
import StreamgateKafka

#if canImport(Glibc)
import Glibc
#endif

/// One WebSocket connection: decodes request frames, publishes to Kafka, manages subscriptions, and
/// answers every request. Lives on its channel's event loop; Kafka work runs on the blocking pool.
final class WebSocketSession: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A subscription in progress or in place.
    private final class Entry {
        var subscription: Subscription?
        /// Set when the client unsubscribed (or left) before the subscription was in place.
        var cancelled = false
        var unsubscribeID: RequestID??
    }

    /// A publish waiting for room in librdkafka's queue.
    private struct PendingPublish {
        var id: RequestID?
        var channel: ChannelName
        var topic: String
        var payload: Payload
        var headers: [KafkaHeader]
        var timestamp: Int64
    }

    private let environment: SessionEnvironment
    private let connectionID: String
    private let boundChannel: ChannelName?
    private let boundStart: StartPosition
    private let window = PublishWindow()
    private var outbox: ConnectionOutbox!
    private var channel: (any Channel)?
    private var entries: [ChannelName: Entry] = [:]
    private var blocked = CircularBuffer<PendingPublish>()
    private var retryScheduled = false
    private var readingPaused = false
    private var draining = false
    private var closing = false
    private var tornDown = false
    private var logger: Logger

    init(environment: SessionEnvironment, connectionID: String, boundChannel: ChannelName?, boundStart: StartPosition) {
        self.environment = environment
        self.connectionID = connectionID
        self.boundChannel = boundChannel
        self.boundStart = boundStart
        self.logger = environment.logger
        self.logger[metadataKey: "connection"] = "\(connectionID)"
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
        outbox = ConnectionOutbox(channel: context.channel, slowConsumerBytes: environment.configuration.slowConsumerBytes)
        environment.registry.add(ObjectIdentifier(self), .init(channel: context.channel, window: window))
        if let boundChannel { subscribe(id: nil, channel: boundChannel, from: boundStart) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !closing else { return }
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            let result: Result<ClientRequest, RequestError>? = payload.withUnsafeReadableBytes { bytes in
                guard UTF8Validation.isValid(bytes) else { return nil }
                return environment.decoder.decode(bytes)
            }
            payload.clear()
            switch result {
            case nil: close(context: context, code: CloseCode.invalidUTF8, reason: "text frame is not valid UTF-8")
            case .failure(let error): reply(ServerFrameEncoder.error(error))
            case .success(let request): handle(request)
            }
        case .binary:
            reply(ServerFrameEncoder.error(RequestError(id: nil, code: .badRequest,
                message: "binary frames are not part of streamgate.v1; send JSON text frames (binary payloads go in data_b64)")))
        case .ping:
            var pong = frame.unmaskedData
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: pong)), promise: nil)
            pong.clear()
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? CloseCode.normal
            close(context: context, code: code == 1005 ? CloseCode.normal : code, reason: "")
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let event as SessionEvent:
            switch event {
            case .beginDrain:
                draining = true
                pauseReading(context.channel)
            case .closeForDrain:
                close(context: context, code: CloseCode.goingAway, reason: "server is shutting down")
            case .windowReopened:
                resumeReadingIfRoom(context.channel)
            }
        case is SlowConsumerEvent:
            close(context: context, code: CloseCode.slowConsumer, reason: "slow consumer: resume from your last offset")
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOWebSocketFrameAggregator.Error {
            close(context: context, code: CloseCode.tooBig, reason: "message is over the frame limit")
            return
        }
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: - Requests

    private func handle(_ request: ClientRequest) {
        switch request {
        case .auth(let id, _):
            reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest,
                message: "authentication is not enabled on this node")))
        case .subscribe(let id, let channel, let from):
            guard boundChannel == nil else { return refuseOnBound(id) }
            subscribe(id: id, channel: channel, from: from)
        case .unsubscribe(let id, let channel):
            guard boundChannel == nil else { return refuseOnBound(id) }
            unsubscribe(id: id, channel: channel)
        case .publish(let id, let channel, let payload, let msgId, let traceparent):
            publish(id: id, channel: channel, payload: payload, msgId: msgId, traceparent: traceparent)
        }
    }

    private func refuseOnBound(_ id: RequestID?) {
        reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest,
            message: "this connection is bound to channel \(boundChannel!); open /v1/ws to subscribe to others")))
    }

    private func route(_ channel: ChannelName, id: RequestID?) -> NamespaceRoute? {
        guard let route = environment.configuration.namespaces.route(for: channel) else {
            reply(ServerFrameEncoder.error(RequestError(id: id, code: .unknownNamespace,
                message: "namespace \"\(channel.namespace)\" is not configured on this gateway")))
            return nil
        }
        return route
    }

    private func subscribe(id: RequestID?, channel: ChannelName, from start: StartPosition) {
        guard entries[channel] == nil else {
            return reply(ServerFrameEncoder.error(RequestError(id: id, code: .alreadySubscribed,
                message: "already subscribed to \(channel)")))
        }
        guard let route = route(channel, id: id) else { return }
        let entry = Entry()
        entries[channel] = entry
        let backend = environment.backend
        let outbox = self.outbox!
        let eventLoop = outbox.eventLoop
        let session = NIOLoopBound(self, eventLoop: eventLoop)
        let boundEntry = NIOLoopBound(entry, eventLoop: eventLoop)
        environment.blockingPool.submit { _ in
            do {
                let count = try backend.partitionCount(topic: route.topic)
                let partition = Murmur2Partitioner.partition(for: channel.value.utf8, partitionCount: count)
                let location = TopicPartition(topic: route.topic, partition: partition)
                let resolution = try backend.resolver.resolve(start, in: location)
                let subscription = Subscription(channel: channel, topic: route.topic, partition: partition, outbox: outbox)
                let frame = ServerFrameEncoder.subscribed(id: id, channel: channel, partition: partition,
                                                          offset: resolution.next, head: resolution.head, gap: resolution.gap)
                backend.hub.subscribe(subscription, resolution: resolution, subscribedFrame: frame)
                eventLoop.execute { session.value.subscribed(channel, entry: boundEntry.value, subscription: subscription) }
            } catch {
                let message = "cannot subscribe to \(channel): \(error)"
                eventLoop.execute { session.value.subscribeFailed(channel, entry: boundEntry.value, id: id, message: message) }
            }
        }
    }

    private func subscribed(_ channel: ChannelName, entry: Entry, subscription: Subscription) {
        entry.subscription = subscription
        guard entry.cancelled else { return }
        let unsubscribeID = entry.unsubscribeID
        if entries[channel] === entry { entries[channel] = nil }
        let hub = environment.backend.hub
        environment.blockingPool.submit { _ in
            hub.unsubscribe(subscription)
            if let unsubscribeID {
                subscription.outbox.enqueue(bytes: ServerFrameEncoder.unsubscribed(id: unsubscribeID, channel: channel))
            }
        }
    }

    private func subscribeFailed(_ channel: ChannelName, entry: Entry, id: RequestID?, message: String) {
        if entries[channel] === entry { entries[channel] = nil }
        reply(ServerFrameEncoder.error(RequestError(id: id, code: .kafkaUnavailable, message: message)))
        if let unsubscribeID = entry.unsubscribeID {
            reply(ServerFrameEncoder.error(RequestError(id: unsubscribeID, code: .notSubscribed,
                message: "the subscription to \(channel) failed")))
        }
        if boundChannel != nil, let context = try? self.channel?.pipeline.syncOperations.context(handler: self) {
            close(context: context, code: CloseCode.tryAgainLater, reason: "cannot subscribe; try again later")
        }
    }

    private func unsubscribe(id: RequestID?, channel: ChannelName) {
        guard let entry = entries[channel], !entry.cancelled else {
            return reply(ServerFrameEncoder.error(RequestError(id: id, code: .notSubscribed,
                message: "not subscribed to \(channel)")))
        }
        guard let subscription = entry.subscription else {
            entry.cancelled = true
            entry.unsubscribeID = .some(id)
            return
        }
        entries[channel] = nil
        let hub = environment.backend.hub
        environment.blockingPool.submit { _ in
            hub.unsubscribe(subscription)
            subscription.outbox.enqueue(bytes: ServerFrameEncoder.unsubscribed(id: id, channel: channel))
        }
    }

    // MARK: - Publishing

    private func publish(id: RequestID?, channel: ChannelName?, payload: Payload, msgId: String?, traceparent: String?) {
        guard let channel = channel ?? boundChannel else {
            return reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest, message: "missing \"channel\"")))
        }
        guard let route = route(channel, id: id) else { return }
        var headers = [
            KafkaHeader(name: "content-type", string: payload.contentType),
            KafkaHeader(name: "sg-sender", string: "anonymous"),
            KafkaHeader(name: "sg-conn", string: connectionID),
            KafkaHeader(name: "sg-node", string: environment.configuration.nodeID),
        ]
        if let msgId { headers.append(KafkaHeader(name: "sg-msg-id", string: msgId)) }
        if let traceparent { headers.append(KafkaHeader(name: "traceparent", string: traceparent)) }
        let pending = PendingPublish(id: id, channel: channel, topic: route.topic, payload: payload, headers: headers,
                                     timestamp: Self.nowMilliseconds())
        if !blocked.isEmpty || !attempt(pending) {
            blocked.append(pending)
            pauseReading(self.channel!)
            scheduleRetry()
        }
    }

    /// Hands a publish to Kafka. `false` when librdkafka's queue is full (back-pressure: try again later).
    private func attempt(_ publish: PendingPublish) -> Bool {
        let outbox = self.outbox!
        let window = self.window
        let channel = self.channel!
        let maxInFlight = environment.configuration.maxInFlightPerConnection
        let (id, channelName) = (publish.id, publish.channel)
        var key = channelName.value
        let result = key.withUTF8 { key in
            publish.payload.bytes.withUnsafeBytes { value in
                environment.backend.producer.produce(
                    topic: publish.topic, key: UnsafeRawBufferPointer(key), value: value, headers: publish.headers,
                    timestampMilliseconds: publish.timestamp
                ) { report in
                    outbox.enqueue(bytes: Self.answer(to: report, id: id, channel: channelName))
                    if window.closed() == maxInFlight / 2 {
                        channel.pipeline.fireUserInboundEventTriggered(SessionEvent.windowReopened)
                    }
                }
            }
        }
        switch result {
        case .enqueued:
            if window.opened() >= maxInFlight { pauseReading(channel) }
            return true
        case .queueFull:
            return false
        case .failed(let error):
            reply(ServerFrameEncoder.nack(id: id, code: .kafkaUnavailable, message: "\(error)", persisted: "no"))
            return true
        }
    }

    private static func answer(to report: KafkaDeliveryReport, id: RequestID?, channel: ChannelName) -> [UInt8] {
        guard let error = report.error else {
            return ServerFrameEncoder.ack(id: id, channel: channel, partition: report.partition, offset: report.offset)
        }
        return ServerFrameEncoder.nack(id: id, code: .kafkaUnavailable, message: error.description,
                                       persisted: report.persistence == .notPersisted ? "no" : "unknown")
    }

    private func scheduleRetry() {
        guard !retryScheduled, let channel else { return }
        retryScheduled = true
        let session = NIOLoopBound(self, eventLoop: channel.eventLoop)
        channel.eventLoop.scheduleTask(in: .milliseconds(5)) { session.value.retryBlocked() }
    }

    private func retryBlocked() {
        retryScheduled = false
        while let next = blocked.first {
            guard attempt(next) else { return scheduleRetry() }
            blocked.removeFirst()
        }
        if let channel { resumeReadingIfRoom(channel) }
    }

    // MARK: - Flow control and closing

    private func pauseReading(_ channel: any Channel) {
        guard !readingPaused else { return }
        readingPaused = true
        channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    private func resumeReadingIfRoom(_ channel: any Channel) {
        guard readingPaused, !draining, blocked.isEmpty,
            window.current < environment.configuration.maxInFlightPerConnection
        else { return }
        readingPaused = false
        channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        channel.read()
    }

    private func reply(_ bytes: [UInt8]) {
        outbox.enqueue(bytes: bytes)
    }

    private func close(context: ChannelHandlerContext, code: UInt16, reason: String) {
        guard !closing else { return }
        closing = true
        outbox.flush()
        outbox.close()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeString(reason)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Runs once, from `channelInactive` or `handlerRemoved`, whichever comes first.
    private func tearDown() {
        guard !tornDown, outbox != nil else { return }
        tornDown = true
        outbox.close()
        environment.registry.remove(ObjectIdentifier(self))
        let subscriptions = entries.values.compactMap { entry -> Subscription? in
            entry.cancelled = true
            return entry.subscription
        }
        entries.removeAll()
        guard !subscriptions.isEmpty else { return }
        let hub = environment.backend.hub
        environment.blockingPool.submit { _ in
            for subscription in subscriptions { hub.unsubscribe(subscription) }
        }
    }

    private static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

@available(*, unavailable)
extension WebSocketSession: Sendable {}
