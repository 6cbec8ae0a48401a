import StreamgateCore
import Testing

/// PROTOCOL §8 as the session state machine applies it: the auth frame, holding, refresh, expiry, the auth
/// timeout, permissions, public namespaces.
@Suite struct SessionAuthTests {
    typealias Machine = SessionStateMachine
    static let second: Int64 = 1_000_000_000
    static let describe = SessionStateMachineTests.describe
    static let id = SessionStateMachineTests.id

    static func machine(bound: String? = nil, header: Machine.Identity? = nil, publicNamespaces: Set<String> = []) -> Machine {
        Machine(configuration: .init(boundChannel: bound.flatMap(ChannelName.init), namespaces: NamespaceMap(),
                                     maxSubscriptions: 10, maxConcurrentResolutions: 2, authRequired: true,
                                     headerIdentity: header, authTimeoutNanoseconds: 5 * second,
                                     publicNamespaces: publicNamespaces))
    }

    static func alice(sub: [String] = ["doc:*"], pub: [String] = ["doc:1"], exp: Int64 = 2_000) -> Machine.Identity {
        .init(subject: "alice", expiresAt: exp, permissions: ChannelPermissions.parse(subscribe: sub, publish: pub).permissions)
    }

    static let doc = ChannelName("doc:1")!
    static let news = ChannelName("news:x")!

    static func publish(_ id: Int, _ channel: ChannelName) -> ClientRequest {
        .publish(id: Self.id(id), channel: channel, payload: .json([0x31]), msgId: nil, traceparent: nil)
    }

    @Test func theFirstFrameMustBeAuth() {
        var machine = Self.machine()
        #expect(Self.describe(machine.opened(boundStart: .latest, now: 0)) == [])
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest)))
            == ["error unauthorized, close 4001"])
    }

    @Test func requestsWhileTheTokenIsVerifiedAreHeldThenHandledAsTheSubject() {
        var machine = Self.machine()
        _ = machine.opened(boundStart: .latest, now: 0)
        #expect(Self.describe(machine.received(.auth(id: Self.id(1), token: "t"))) == ["verify t"])
        #expect(Self.describe(machine.received(Self.publish(2, Self.doc))) == [])
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(3), channel: Self.news, from: .latest))) == [])
        let actions = Self.describe(machine.tokenVerified(Self.alice(), id: Self.id(1)))
        #expect(actions.count == 3)
        #expect(actions[0].contains(#""type":"authed""#) && actions[0].contains(#""sub":"alice""#)
            && actions[0].contains(#""exp":2000"#))
        #expect(Array(actions.dropFirst()) == ["publish as alice", "error forbidden"])
    }

    @Test func permissionsDecideSubscribeAndPublish() {
        var machine = Self.machine(header: Self.alice())
        _ = machine.opened(boundStart: .latest, now: 0)
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(1), channel: ChannelName("doc:9")!, from: .earliest)))
            == ["resolve 1"])
        #expect(Self.describe(machine.received(Self.publish(2, ChannelName("doc:9")!))) == ["error forbidden"])
        #expect(Self.describe(machine.received(Self.publish(3, Self.doc))) == ["publish as alice"])
        #expect(machine.state == .open)
    }

    @Test func aRejectedTokenClosesWith4001() {
        var machine = Self.machine()
        _ = machine.opened(boundStart: .latest, now: 0)
        _ = machine.received(.auth(id: Self.id(1), token: "t"))
        #expect(Self.describe(machine.tokenRejected(id: Self.id(1), reason: "token expired"))
            == ["error unauthorized, close 4001"])
    }

    @Test func aRefreshMustKeepTheSubjectAndNarrowsSubscriptions() {
        var machine = Self.machine(header: Self.alice(sub: ["doc:*", "news:*"]))
        _ = machine.opened(boundStart: .latest, now: 0)
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.news, from: .latest))
        _ = machine.resolved(1)
        #expect(Self.describe(machine.received(.auth(id: Self.id(2), token: "r"))) == ["verify r"])
        // Publishes go on under the current token while the refresh is verified.
        #expect(Self.describe(machine.received(Self.publish(3, Self.doc))) == ["publish as alice"])
        let refreshed = Self.describe(machine.tokenVerified(Self.alice(sub: ["doc:*"], exp: 3_000), id: Self.id(2)))
        #expect(refreshed.count == 4)
        #expect(Array(refreshed.dropFirst()) == ["error forbidden", "detach 1", "unsubscribed"])
        var other = Self.machine(header: Self.alice())
        _ = other.opened(boundStart: .latest, now: 0)
        _ = other.received(.auth(id: Self.id(1), token: "bob"))
        let bob = Machine.Identity(subject: "bob", expiresAt: 3_000, permissions: .all)
        #expect(Self.describe(other.tokenVerified(bob, id: Self.id(1))) == ["close 4003"])
    }

    @Test func expiryAndTheAuthTimeoutClose() {
        var machine = Self.machine(header: Self.alice(exp: 2_000))
        _ = machine.opened(boundStart: .latest, now: 0)
        #expect(Self.describe(machine.tick(now: 10 * Self.second, wallSeconds: 1_999)) == [])
        #expect(Self.describe(machine.tick(now: 11 * Self.second, wallSeconds: 2_000)) == ["error unauthorized, close 4001"])

        var silent = Self.machine()
        _ = silent.opened(boundStart: .latest, now: 0)
        #expect(Self.describe(silent.tick(now: 4 * Self.second, wallSeconds: 0)) == [])
        #expect(Self.describe(silent.tick(now: 5 * Self.second, wallSeconds: 0)) == ["error unauthorized, close 4001"])
    }

    @Test func publicNamespacesNeedNoToken() {
        var machine = Self.machine(publicNamespaces: ["news"])
        _ = machine.opened(boundStart: .latest, now: 0)
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(1), channel: Self.news, from: .latest))) == ["resolve 1"])
        // Holding a public subscription, it may stay past the auth timeout; it may not publish.
        #expect(Self.describe(machine.tick(now: 6 * Self.second, wallSeconds: 0)) == [])
        #expect(Self.describe(machine.received(Self.publish(2, Self.news))) == ["error unauthorized, close 4001"])
    }

    @Test func aBoundConnectionSubscribesOnceAuthenticatedAndOnlyWithPermission() {
        var machine = Self.machine(bound: "doc:1")
        #expect(Self.describe(machine.opened(boundStart: .earliest, now: 0)) == [])
        _ = machine.received(.auth(id: nil, token: "t"))
        let actions = Self.describe(machine.tokenVerified(Self.alice(), id: nil))
        #expect(Array(actions.dropFirst()) == ["resolve 1"])

        var refused = Self.machine(bound: "secret:1")
        _ = refused.opened(boundStart: .earliest, now: 0)
        _ = refused.received(.auth(id: nil, token: "t"))
        #expect(Array(Self.describe(refused.tokenVerified(Self.alice(), id: nil)).dropFirst()) == ["close 4003"])
    }

    @Test func withoutAuthenticationEveryoneIsAnonymous() {
        var machine = SessionStateMachineTests.machine()
        #expect(Self.describe(machine.received(Self.publish(1, Self.doc))) == ["publish as anonymous"])
        #expect(Self.describe(machine.received(.auth(id: Self.id(2), token: "t"))) == ["error bad_request"])
    }
}
