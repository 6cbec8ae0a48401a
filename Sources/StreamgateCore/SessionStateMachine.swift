/// The rules of one WebSocket session, without I/O: which requests are answered how, in which order
/// subscriptions are set up and torn down, and how the connection closes.
///
/// The owner feeds it events (a decoded request, a finished start resolution, a close frame, a drain) and
/// performs the actions it returns, in order. Subscriptions are named by tickets; the owner keeps what a
/// ticket stands for (the resolved start, the hub registration).
///
/// Ordering: the operations on one channel are answered in the order they were received — a
/// `subscribe` still being resolved holds back a later `unsubscribe` and `subscribe` of that channel — so
/// the client sees `subscribed`, `unsubscribed`, `subscribed`, … and the records of one subscription never
/// interleave with the next one's. At most `maxConcurrentResolutions` start look-ups run per connection;
/// later subscribes wait their turn, so one client cannot occupy every look-up thread.
public struct SessionStateMachine: Sendable {
    public typealias Ticket = UInt64

    public struct Configuration: Sendable {
        /// The channel of a `/v1/ws/{channel}` connection; `nil` for `/v1/ws`.
        public var boundChannel: ChannelName?
        /// Namespace → topic routing.
        public var namespaces: NamespaceMap
        /// Channels one connection may be subscribed to (or subscribing) at once.
        public var maxSubscriptions: Int
        /// Start look-ups one connection may have running at once.
        public var maxConcurrentResolutions: Int
        /// Whether the node requires a token (PROTOCOL §8); without, every client is `anonymous` and may do
        /// everything.
        public var authRequired: Bool
        /// Who the upgrade's header token says the client is; `nil` without one.
        public var headerIdentity: Identity?
        /// How long a connection without a token has to authenticate, in nanoseconds.
        public var authTimeoutNanoseconds: Int64
        /// Namespaces anyone may subscribe to.
        public var publicNamespaces: Set<String>

        public init(boundChannel: ChannelName?, namespaces: NamespaceMap, maxSubscriptions: Int,
                    maxConcurrentResolutions: Int, authRequired: Bool = false, headerIdentity: Identity? = nil,
                    authTimeoutNanoseconds: Int64 = 5_000_000_000, publicNamespaces: Set<String> = []) {
            self.boundChannel = boundChannel
            self.namespaces = namespaces
            self.maxSubscriptions = maxSubscriptions
            self.maxConcurrentResolutions = maxConcurrentResolutions
            self.authRequired = authRequired
            self.headerIdentity = headerIdentity
            self.authTimeoutNanoseconds = authTimeoutNanoseconds
            self.publicNamespaces = publicNamespaces
        }
    }

    /// Who a verified token says the client is, and what it may do.
    public struct Identity: Sendable, Equatable {
        public var subject: String
        /// `exp`, seconds since 1970.
        public var expiresAt: Int64
        public var permissions: ChannelPermissions

        public init(subject: String, expiresAt: Int64, permissions: ChannelPermissions) {
            self.subject = subject
            self.expiresAt = expiresAt
            self.permissions = permissions
        }
    }

    /// Where the connection is in its life.
    public enum State: Sendable, Equatable {
        /// Reading and answering requests.
        case open
        /// Not reading new frames; answering what was read.
        case draining
        /// A close frame was sent; no data frame is processed any more.
        case closing
        /// The transport is gone.
        case closed
    }

    /// What the owner must do.
    public enum Action: Sendable, Equatable {
        /// Queue a frame for the client.
        case reply([UInt8])
        /// Resolve where `ticket`'s subscription starts (a look-up off the event loop), then report
        /// ``resolved(_:)`` or ``resolutionFailed(_:message:)``.
        case resolve(Ticket, id: RequestID?, channel: ChannelName, topic: String, start: StartPosition)
        /// Queue `ticket`'s `subscribed` frame and register it for delivery.
        case attach(Ticket)
        /// Queue `ticket`'s `subscribed` frame only: it was unsubscribed before it was in place.
        case answerDetached(Ticket)
        /// Stop delivering to `ticket` and forget it.
        case detach(Ticket)
        /// Forget a ticket that was never attached.
        case discard(Ticket)
        /// Hand a publish to the publisher; `sender` is the verified subject (or `anonymous`).
        case publish(id: RequestID?, channel: ChannelName, topic: String, payload: Payload, msgID: String?,
                     traceparent: String?, sender: String)
        /// Verify `token` (off the event loop), then report ``tokenVerified(_:id:)`` or
        /// ``tokenRejected(id:reason:)``.
        case verifyToken(id: RequestID?, token: String)
        /// Answer `moved` for an affinity channel (PROTOCOL §9): it is served on its owner's bound endpoint
        /// only, and nothing was subscribed or published.
        case redirect(id: RequestID?, channel: ChannelName)
        case pauseReading
        /// Answer every publish still waiting for room in the producer's queue with `nack` (not persisted).
        case failWaitingPublishes
        /// Write a close frame — preceded by `explanation`, a frame telling why (`error unauthorized` before
        /// 4001), when there is one; close the transport once it is written (`thenCloseTransport`) or when the
        /// close timeout passes, whichever comes first. Frames still queued are dropped, not waited for.
        case sendClose(code: UInt16, reason: String, thenCloseTransport: Bool, explanation: [UInt8]?)
        /// Fail the connection (RFC 6455 §7.1.7): write a close frame ahead of everything, stop sending, and
        /// close the transport once the peer has gone or the close timeout passes — reading (and discarding)
        /// meanwhile, so unread input never turns the close into a reset that loses the close frame.
        case failConnection(code: UInt16, reason: String)
        /// Close the transport now.
        case closeTransport
    }

    private enum Operation: Sendable {
        case subscribe(id: RequestID?, start: StartPosition)
        case unsubscribe(id: RequestID?)
    }

    private enum SubscriptionState: Sendable {
        case idle
        case resolving(Ticket, id: RequestID?)
        case active(Ticket)
    }

    /// One channel's subscription and the operations waiting on it, in arrival order.
    private struct ChannelSlot: Sendable {
        var state = SubscriptionState.idle
        var queue: [Operation] = []
        var isEmpty: Bool {
            if case .idle = state { return queue.isEmpty }
            return false
        }
    }

    public private(set) var state = State.open
    /// Whether the bound affinity channel is being handed to another node (``handOff()``).
    public private(set) var handingOff = false
    public let configuration: Configuration
    private var slots: [ChannelName: ChannelSlot] = [:]
    /// Channels whose next subscribe waits for a free look-up.
    private var waiting: [ChannelName] = []
    /// Resolutions running, by ticket.
    private var resolving: [Ticket: ChannelName] = [:]
    private var nextTicket: Ticket = 1
    /// Authentication (``SessionStateMachine+Auth.swift``): the verified identity, whether a token is being
    /// verified, requests held meanwhile, and when an unauthenticated connection times out.
    var identity: Identity?
    var verifying: RequestID?? = nil
    var held: [ClientRequest] = []
    var authDeadline: Int64?
    /// A bound connection's start, held until it has authenticated.
    var boundStartHeld: StartPosition?

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.identity = configuration.headerIdentity
    }

    /// Number of channels subscribed or being subscribed.
    public var subscriptionCount: Int { slots.count }

    /// Channels subscribed, or being subscribed, in a stable order.
    var subscribedChannels: [ChannelName] { slots.keys.sorted { $0.value < $1.value } }

    /// The connection is open (at `now`, monotonic nanoseconds): a bound connection subscribes its channel,
    /// once authenticated when the node requires it.
    public mutating func opened(boundStart: StartPosition, now: Int64 = 0) -> [Action] {
        if needsAuthentication { authDeadline = now + configuration.authTimeoutNanoseconds }
        guard let bound = configuration.boundChannel else { return [] }
        if needsAuthentication && !isPublic(bound) {
            boundStartHeld = boundStart
            return []
        }
        return subscribe(id: nil, channel: bound, start: boundStart)
    }

    // MARK: - Frames

    /// A request frame decoded without error.
    public mutating func received(_ request: ClientRequest) -> [Action] {
        guard state == .open || state == .draining else { return [] }
        if let gated = gate(request) { return gated }
        switch request {
        case .auth(let id, let token):
            return receivedToken(id: id, token: token)
        case .subscribe(let id, let channel, let start):
            if let refusal = refuseOnBound(id) { return [refusal] }
            if configuration.namespaces.isAffinity(channel) { return [.redirect(id: id, channel: channel)] }
            guard mayRead(channel) else { return [forbidden(id, "no permission to subscribe to \(channel)")] }
            return subscribe(id: id, channel: channel, start: start)
        case .unsubscribe(let id, let channel):
            if let refusal = refuseOnBound(id) { return [refusal] }
            return unsubscribe(id: id, channel: channel)
        case .publish(let id, let channel, let payload, let msgID, let traceparent):
            guard let channel = channel ?? configuration.boundChannel else {
                return [.reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest,
                    message: "missing \"channel\"")))]
            }
            guard let route = configuration.namespaces.route(for: channel) else {
                return [unknownNamespace(id, channel)]
            }
            if route.mode == .affinity, channel != configuration.boundChannel || handingOff {
                return [.redirect(id: id, channel: channel)]
            }
            guard mayWrite(channel) else { return [forbidden(id, "no permission to publish to \(channel)")] }
            return [.publish(id: id, channel: channel, topic: route.topic, payload: payload, msgID: msgID,
                             traceparent: traceparent, sender: identity?.subject ?? "anonymous")]
        }
    }

    /// A text frame that is not a valid request.
    public mutating func receivedInvalid(_ error: RequestError) -> [Action] {
        guard state == .open || state == .draining else { return [] }
        return [.reply(ServerFrameEncoder.error(error))]
    }

    /// A binary frame (not part of `streamgate.v1`).
    public mutating func receivedBinary() -> [Action] {
        receivedInvalid(RequestError(id: nil, code: .badRequest,
            message: "binary frames are not part of streamgate.v1; send JSON text frames (binary payloads go in data_b64)"))
    }

    /// The peer sent a close frame. `code` is `nil` for an empty close payload; `reasonIsValidUTF8` tells
    /// whether its reason was valid.
    public mutating func receivedClose(code: UInt16?, reasonIsValidUTF8: Bool) -> [Action] {
        switch state {
        case .closed: return []
        case .closing:
            // Our close was answered: the server closes the transport first (RFC 6455 §7.1.1).
            return [.closeTransport]
        case .open, .draining:
            state = .closing
            let answer: UInt16
            if !reasonIsValidUTF8 {
                answer = CloseCode.invalidUTF8
            } else if let code, !CloseCode.isValidReceived(code) {
                answer = CloseCode.protocolError
            } else {
                answer = CloseCode.normal
            }
            return [.sendClose(code: answer, reason: "", thenCloseTransport: true, explanation: nil)]
        }
    }

    // MARK: - Resolutions

    /// `ticket`'s start was resolved.
    public mutating func resolved(_ ticket: Ticket) -> [Action] {
        guard let channel = finishResolution(ticket) else { return [.discard(ticket)] }
        var actions: [Action]
        if case .unsubscribe(let id)? = slots[channel]?.queue.first {
            slots[channel]!.queue.removeFirst()
            slots[channel]!.state = .idle
            actions = [.answerDetached(ticket), .reply(ServerFrameEncoder.unsubscribed(id: id, channel: channel))]
        } else {
            slots[channel]!.state = .active(ticket)
            actions = [.attach(ticket)]
        }
        actions += advance(channel)
        actions += admitWaiting()
        return actions
    }

    /// `ticket`'s start could not be resolved (Kafka did not answer).
    public mutating func resolutionFailed(_ ticket: Ticket, message: String) -> [Action] {
        guard let channel = finishResolution(ticket), case .resolving(_, let id) = slots[channel]!.state else {
            return [.discard(ticket)]
        }
        slots[channel]!.state = .idle
        var actions: [Action] = [
            .discard(ticket),
            .reply(ServerFrameEncoder.error(RequestError(id: id, code: .kafkaUnavailable, message: message))),
        ]
        if configuration.boundChannel == channel {
            actions += close(code: CloseCode.tryAgainLater, reason: "cannot subscribe; try again later")
            return actions
        }
        actions += advance(channel)
        actions += admitWaiting()
        return actions
    }

    /// The delivery side moved `ticket`'s channel to another partition (the topic grew): re-subscribe it.
    public mutating func moved(_ ticket: Ticket, channel: ChannelName) -> [Action] {
        guard state != .closed, case .active(ticket)? = slots[channel]?.state,
            let route = configuration.namespaces.route(for: channel)
        else { return [] }
        let fresh = takeTicket()
        slots[channel]!.state = .resolving(fresh, id: nil)
        resolving[fresh] = channel
        return [.detach(ticket), .resolve(fresh, id: nil, channel: channel, topic: route.topic, start: .earliest)]
    }

    // MARK: - Life cycle

    /// Stop reading new frames (the node drains).
    public mutating func beginDrain() -> [Action] {
        guard state == .open else { return [] }
        state = .draining
        return [.pauseReading]
    }

    /// The node stops serving this connection's affinity channel (ownership moved): stop reading; publishes
    /// that still arrive are answered `moved` and not stored. The owner then waits for the publishes in
    /// flight, sends `moved` with the resume offset, and closes with ``CloseCode/moved``.
    public mutating func handOff() -> [Action] {
        guard state == .open || state == .draining, !handingOff else { return [] }
        handingOff = true
        state = .draining
        return [.pauseReading]
    }

    /// The drain is over: fail what still waits and close with 1001.
    public mutating func closeForDrain() -> [Action] {
        guard state == .open || state == .draining else { return [] }
        return [.failWaitingPublishes] + close(code: CloseCode.goingAway, reason: "server is shutting down")
    }

    /// Close the connection with `code` (slow consumer, drain, authentication, …), after `explanation`.
    public mutating func close(code: UInt16, reason: String, explaining explanation: [UInt8]? = nil) -> [Action] {
        guard state == .open || state == .draining else { return [] }
        state = .closing
        return [.sendClose(code: code, reason: reason, thenCloseTransport: false, explanation: explanation)]
    }

    /// The peer broke the protocol (or went silent): fail the connection with `code`.
    public mutating func fail(code: UInt16, reason: String) -> [Action] {
        guard state == .open || state == .draining else { return [] }
        state = .closing
        return [.failWaitingPublishes, .failConnection(code: code, reason: reason)]
    }

    /// The close timeout passed without the peer completing the close.
    public mutating func closeTimedOut() -> [Action] {
        state == .closed ? [] : [.closeTransport]
    }

    /// The transport is closed: release every subscription.
    public mutating func transportClosed() -> [Action] {
        guard state != .closed else { return [] }
        state = .closed
        var actions: [Action] = []
        for slot in slots.values {
            switch slot.state {
            case .idle: break
            case .resolving(let ticket, _): actions.append(.discard(ticket))
            case .active(let ticket): actions.append(.detach(ticket))
            }
        }
        slots.removeAll()
        waiting.removeAll()
        resolving.removeAll()
        return actions
    }

    // MARK: - Subscriptions

    mutating func subscribe(id: RequestID?, channel: ChannelName, start: StartPosition) -> [Action] {
        guard configuration.namespaces.route(for: channel) != nil else { return [unknownNamespace(id, channel)] }
        if slots[channel] == nil, slots.count >= configuration.maxSubscriptions {
            return [.reply(ServerFrameEncoder.error(RequestError(id: id, code: .limitExceeded,
                message: "at most \(configuration.maxSubscriptions) subscriptions per connection")))]
        }
        slots[channel, default: ChannelSlot()].queue.append(.subscribe(id: id, start: start))
        return advance(channel)
    }

    mutating func unsubscribe(id: RequestID?, channel: ChannelName) -> [Action] {
        guard slots[channel] != nil else {
            return [.reply(ServerFrameEncoder.error(RequestError(id: id, code: .notSubscribed,
                message: "not subscribed to \(channel)")))]
        }
        slots[channel]!.queue.append(.unsubscribe(id: id))
        return advance(channel)
    }

    /// Carries out the channel's queued operations until one has to wait.
    private mutating func advance(_ channel: ChannelName) -> [Action] {
        var actions: [Action] = []
        while var slot = slots[channel], let operation = slot.queue.first {
            switch (slot.state, operation) {
            case (.resolving, _):
                return actions
            case (.idle, .subscribe(let id, let start)):
                guard resolving.count < configuration.maxConcurrentResolutions else {
                    if !waiting.contains(channel) { waiting.append(channel) }
                    return actions
                }
                let ticket = takeTicket()
                slot.queue.removeFirst()
                slot.state = .resolving(ticket, id: id)
                slots[channel] = slot
                resolving[ticket] = channel
                let topic = configuration.namespaces.route(for: channel)!.topic
                actions.append(.resolve(ticket, id: id, channel: channel, topic: topic, start: start))
            case (.idle, .unsubscribe(let id)):
                slot.queue.removeFirst()
                slots[channel] = slot
                actions.append(.reply(ServerFrameEncoder.error(RequestError(id: id, code: .notSubscribed,
                    message: "not subscribed to \(channel)"))))
            case (.active, .subscribe(let id, _)):
                slot.queue.removeFirst()
                slots[channel] = slot
                actions.append(.reply(ServerFrameEncoder.error(RequestError(id: id, code: .alreadySubscribed,
                    message: "already subscribed to \(channel)"))))
            case (.active(let ticket), .unsubscribe(let id)):
                slot.queue.removeFirst()
                slot.state = .idle
                slots[channel] = slot
                actions.append(.detach(ticket))
                actions.append(.reply(ServerFrameEncoder.unsubscribed(id: id, channel: channel)))
            }
        }
        if slots[channel]?.isEmpty == true { slots[channel] = nil }
        return actions
    }

    /// Lets channels that waited for a free look-up go on.
    private mutating func admitWaiting() -> [Action] {
        var actions: [Action] = []
        while resolving.count < configuration.maxConcurrentResolutions, !waiting.isEmpty {
            actions += advance(waiting.removeFirst())
        }
        return actions
    }

    /// The channel whose resolution `ticket` was, if it still is.
    private mutating func finishResolution(_ ticket: Ticket) -> ChannelName? {
        guard state != .closed, let channel = resolving.removeValue(forKey: ticket) else { return nil }
        return channel
    }

    private mutating func takeTicket() -> Ticket {
        defer { nextTicket += 1 }
        return nextTicket
    }

    private func refuseOnBound(_ id: RequestID?) -> Action? {
        guard let bound = configuration.boundChannel else { return nil }
        return .reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest,
            message: "this connection is bound to channel \(bound); open /v1/ws to subscribe to others")))
    }

    func forbidden(_ id: RequestID?, _ message: String) -> Action {
        .reply(ServerFrameEncoder.error(RequestError(id: id, code: .forbidden, message: message)))
    }

    private func unknownNamespace(_ id: RequestID?, _ channel: ChannelName) -> Action {
        .reply(ServerFrameEncoder.error(RequestError(id: id, code: .unknownNamespace,
            message: "namespace \"\(channel.namespace)\" is not configured on this gateway")))
    }
}
