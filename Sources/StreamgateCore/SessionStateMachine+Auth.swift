/// Authentication and permissions (PROTOCOL §8): the `auth` frame, refresh, expiry, the auth timeout, and
/// what a connection may subscribe to and publish.
///
/// A connection without a header token on a node that requires one may send `auth` (and subscribe to
/// public namespaces) and nothing else: any other request closes it with 4001, as does the auth timeout.
/// Requests that arrive while its first token is verified are held (at most ``maxHeldRequests``) and
/// handled in order once it is in.
extension SessionStateMachine {
    public static let maxHeldRequests = 64

    /// Whether the client still has to authenticate.
    var needsAuthentication: Bool { configuration.authRequired && identity == nil }

    /// The subject records are published as.
    public var subject: String? { identity?.subject }

    func isPublic(_ channel: ChannelName) -> Bool {
        Self.isPublic(channel, publicNamespaces: configuration.publicNamespaces)
    }

    static func isPublic(_ channel: ChannelName, publicNamespaces: Set<String>) -> Bool {
        !publicNamespaces.isEmpty && publicNamespaces.contains(String(channel.namespace))
    }

    /// Whether a client that is `identity` (`nil`: not authenticated) may subscribe to `channel`: the rule of
    /// every subscribe, and of the bound channel at the upgrade.
    public static func maySubscribe(_ channel: ChannelName, identity: Identity?, authRequired: Bool,
                                    publicNamespaces: Set<String>) -> Bool {
        if !authRequired || isPublic(channel, publicNamespaces: publicNamespaces) { return true }
        return identity?.permissions.canSubscribe(channel) ?? false
    }

    func mayRead(_ channel: ChannelName) -> Bool {
        Self.maySubscribe(channel, identity: identity, authRequired: configuration.authRequired,
                          publicNamespaces: configuration.publicNamespaces)
    }

    func mayWrite(_ channel: ChannelName) -> Bool {
        if !configuration.authRequired { return true }
        return identity?.permissions.canPublish(channel) ?? false
    }

    /// Requests that cannot be handled as they come: held while a token is verified, refused before any
    /// token. `nil`: handle the request.
    mutating func gate(_ request: ClientRequest) -> [Action]? {
        let firstVerification = verifying != nil && identity == nil
        if firstVerification || (verifying != nil && request.isAuth) {
            guard held.count < Self.maxHeldRequests else {
                return close(code: CloseCode.policy, reason: "too many requests before authentication")
            }
            held.append(request)
            return []
        }
        guard needsAuthentication, !request.isAuth else { return nil }
        switch request {
        case .subscribe(_, let channel, _) where isPublic(channel): return nil
        case .unsubscribe: return nil
        default:
            return close(code: CloseCode.unauthorized, reason: "authentication required",
                         explaining: unauthorized(request.id, "authenticate first: the first frame must be auth"))
        }
    }

    mutating func receivedToken(id: RequestID?, token: String) -> [Action] {
        guard configuration.authRequired else {
            return [.reply(ServerFrameEncoder.error(RequestError(id: id, code: .badRequest,
                message: "authentication is not enabled on this node")))]
        }
        verifying = .some(id)
        return [.verifyToken(id: id, token: token)]
    }

    /// The token of the `auth` frame `id` is valid. A refresh must keep the subject (else 4003); channels
    /// its permissions no longer cover are unsubscribed.
    public mutating func tokenVerified(_ verified: Identity, id: RequestID?) -> [Action] {
        guard state == .open || state == .draining, verifying != nil else { return [] }
        verifying = nil
        if let current = identity, current.subject != verified.subject {
            held.removeAll()
            return close(code: CloseCode.forbidden, reason: "a refreshed token must have the same subject")
        }
        let first = identity == nil
        identity = verified
        authDeadline = nil
        var actions: [Action] = [.reply(ServerFrameEncoder.authed(id: id, subject: verified.subject,
                                                                   expiresAt: verified.expiresAt))]
        if first, let bound = configuration.boundChannel, let start = boundStartHeld {
            boundStartHeld = nil
            guard mayRead(bound) else {
                held.removeAll()
                return actions + close(code: CloseCode.forbidden, reason: "no permission to subscribe to \(bound)")
            }
            actions += subscribe(id: nil, channel: bound, start: start)
        }
        for channel in subscribedChannels where !mayRead(channel) {
            actions.append(forbidden(nil, "the refreshed token does not cover \(channel); unsubscribed"))
            actions += unsubscribe(id: nil, channel: channel)
        }
        while !held.isEmpty, verifying == nil, state == .open || state == .draining {
            actions += received(held.removeFirst())
        }
        return actions
    }

    /// The token of the `auth` frame `id` was refused: `error` `unauthorized`, then 4001.
    public mutating func tokenRejected(id: RequestID?, reason: String) -> [Action] {
        guard state == .open || state == .draining, verifying != nil else { return [] }
        verifying = nil
        held.removeAll()
        return close(code: CloseCode.unauthorized, reason: "unauthorized", explaining: unauthorized(id, reason))
    }

    /// Time passed (`now` monotonic nanoseconds, `wallSeconds` since 1970): a connection that did not
    /// authenticate within the auth timeout, or whose token expired without a refresh, is closed with 4001.
    /// A connection holding public subscriptions only may stay unauthenticated.
    public mutating func tick(now: Int64, wallSeconds: Int64) -> [Action] {
        guard state == .open || state == .draining, verifying == nil else { return [] }
        if let deadline = authDeadline, identity == nil, now >= deadline {
            authDeadline = nil
            guard subscriptionCount == 0 else { return [] }
            return close(code: CloseCode.unauthorized, reason: "authentication timed out",
                         explaining: unauthorized(nil, "no auth frame within the auth timeout"))
        }
        if let identity, identity.expiresAt <= wallSeconds {
            return close(code: CloseCode.unauthorized, reason: "token expired", explaining: unauthorized(nil, "token expired"))
        }
        return []
    }

    private func unauthorized(_ id: RequestID?, _ message: String) -> [UInt8] {
        ServerFrameEncoder.error(RequestError(id: id, code: .unauthorized, message: message))
    }
}

extension ClientRequest {
    var isAuth: Bool {
        if case .auth = self { return true }
        return false
    }
}
