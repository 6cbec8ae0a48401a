import StreamgateCore
import Testing

/// The session's rules, driven as the connection handler would drive them.
@Suite struct SessionStateMachineTests {
    typealias Machine = SessionStateMachine

    static func machine(bound: String? = nil, maxSubscriptions: Int = 10, maxResolutions: Int = 2,
                        namespaces: NamespaceMap = NamespaceMap()) -> Machine {
        Machine(configuration: .init(boundChannel: bound.flatMap(ChannelName.init), namespaces: namespaces,
                                     maxSubscriptions: maxSubscriptions, maxConcurrentResolutions: maxResolutions))
    }

    static func id(_ value: Int) -> RequestID { RequestID(json: Array(String(value).utf8)) }
    static let doc = ChannelName("doc:1")!

    /// The frames and hub actions as short strings, in order.
    static func describe(_ actions: [Machine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .reply(let bytes):
                let text = String(decoding: bytes, as: UTF8.self)
                if text.contains("\"unsubscribed\"") { return "unsubscribed" }
                if let code = text.split(separator: ",").first(where: { $0.hasPrefix("\"code\":") }) {
                    return "error " + code.dropFirst(8).dropLast()
                }
                return text
            case .resolve(let ticket, _, _, _, _): return "resolve \(ticket)"
            case .attach(let ticket): return "attach \(ticket)"
            case .answerDetached(let ticket): return "answerDetached \(ticket)"
            case .detach(let ticket): return "detach \(ticket)"
            case .discard(let ticket): return "discard \(ticket)"
            case .publish(_, _, _, _, _, _, let sender): return "publish as \(sender)"
            case .verifyToken(_, let token): return "verify \(token)"
            case .pauseReading: return "pauseReading"
            case .failWaitingPublishes: return "failWaitingPublishes"
            case .sendClose(let code, _, let then, let explanation):
                let close = "close \(code)\(then ? " then transport" : "")"
                return explanation.map { describe([.reply($0)])[0] + ", " + close } ?? close
            case .failConnection(let code, _): return "fail \(code)"
            case .closeTransport: return "closeTransport"
            case .redirect(_, let channel): return "moved \(channel)"
            }
        }
    }

    @Test func subscribeUnsubscribeSubscribeIsAnsweredInOrder() {
        var machine = Self.machine()
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))) == ["resolve 1"])
        #expect(Self.describe(machine.received(.unsubscribe(id: Self.id(2), channel: Self.doc))) == [])
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(3), channel: Self.doc, from: .latest))) == [])
        #expect(Self.describe(machine.received(.unsubscribe(id: Self.id(4), channel: Self.doc))) == [])
        // The first resolution ends: answered without attaching, then the unsubscribe, then the next subscribe starts.
        #expect(Self.describe(machine.resolved(1)) == ["answerDetached 1", "unsubscribed", "resolve 2"])
        #expect(Self.describe(machine.resolved(2)) == ["answerDetached 2", "unsubscribed"])
        #expect(machine.subscriptionCount == 0)
    }

    @Test func activeSubscriptionUnsubscribesAtOnceAndRefusesADouble() {
        var machine = Self.machine()
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))
        #expect(Self.describe(machine.resolved(1)) == ["attach 1"])
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(2), channel: Self.doc, from: .latest)))
            == ["error already_subscribed"])
        #expect(Self.describe(machine.received(.unsubscribe(id: Self.id(3), channel: Self.doc)))
            == ["detach 1", "unsubscribed"])
        #expect(Self.describe(machine.received(.unsubscribe(id: Self.id(4), channel: Self.doc)))
            == ["error not_subscribed"])
    }

    @Test func lookUpsPerConnectionAreBounded() {
        var machine = Self.machine(maxResolutions: 2)
        let channels = (0..<4).map { ChannelName("c\($0)")! }
        var started: [String] = []
        for (index, channel) in channels.enumerated() {
            started += Self.describe(machine.received(.subscribe(id: Self.id(index), channel: channel, from: .earliest)))
        }
        #expect(started == ["resolve 1", "resolve 2"])
        #expect(Self.describe(machine.resolved(1)) == ["attach 1", "resolve 3"])
        #expect(Self.describe(machine.resolutionFailed(2, message: "down")) == ["discard 2", "error kafka_unavailable", "resolve 4"])
        #expect(machine.subscriptionCount == 3)
    }

    @Test func subscriptionLimit() {
        var machine = Self.machine(maxSubscriptions: 1)
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(2), channel: ChannelName("x")!, from: .latest)))
            == ["error limit_exceeded"])
    }

    @Test func unknownNamespaceAndBoundConnections() {
        let namespaces = NamespaceMap(routes: ["doc": NamespaceRoute(topic: "docs")])
        var machine = Self.machine(bound: "doc:1", namespaces: namespaces)
        #expect(Self.describe(machine.opened(boundStart: .earliest)) == ["resolve 1"])
        #expect(Self.describe(machine.received(.subscribe(id: Self.id(2), channel: Self.doc, from: .latest)))
            == ["error bad_request"])
        #expect(Self.describe(machine.received(.publish(id: Self.id(3), channel: ChannelName("news"), payload: .json([0x31]),
                                                         msgId: nil, traceparent: nil))) == ["error unknown_namespace"])
        #expect(Self.describe(machine.received(.publish(id: Self.id(4), channel: nil, payload: .json([0x31]),
                                                         msgId: nil, traceparent: nil))) == ["publish as anonymous"])
        // A bound connection whose subscription fails is closed: try again later.
        #expect(Self.describe(machine.resolutionFailed(1, message: "down")) == ["discard 1", "error kafka_unavailable", "close 1013"])
    }

    @Test func closeHandshakeAndNoDataAfterClose() {
        var machine = Self.machine()
        #expect(Self.describe(machine.close(code: 4008, reason: "slow")) == ["close 4008"])
        #expect(machine.received(.subscribe(id: nil, channel: Self.doc, from: .latest)).isEmpty)
        #expect(machine.close(code: 1000, reason: "").isEmpty)
        #expect(Self.describe(machine.receivedClose(code: 4008, reasonIsValidUTF8: true)) == ["closeTransport"])
        #expect(Self.describe(machine.closeTimedOut()) == ["closeTransport"])
        #expect(machine.transportClosed().isEmpty)
        #expect(machine.closeTimedOut().isEmpty)
    }

    @Test func peerCloseCodesAreValidatedNotEchoed() {
        for (code, answer) in [(UInt16?.none, 1000), (1000, 1000), (4001, 1000), (1005, 1002), (999, 1002), (1015, 1002),
                               (2000, 1002), (5000, 1002), (1013, 1000)] as [(UInt16?, Int)] {
            var machine = Self.machine()
            #expect(Self.describe(machine.receivedClose(code: code, reasonIsValidUTF8: true)) == ["close \(answer) then transport"])
        }
        var machine = Self.machine()
        #expect(Self.describe(machine.receivedClose(code: 1000, reasonIsValidUTF8: false)) == ["close 1007 then transport"])
    }

    @Test func drainStopsReadingThenFailsWaitingPublishesAndCloses() {
        var machine = Self.machine()
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))
        _ = machine.resolved(1)
        #expect(Self.describe(machine.beginDrain()) == ["pauseReading"])
        #expect(machine.state == .draining)
        #expect(Self.describe(machine.received(.publish(id: nil, channel: Self.doc, payload: .json([0x31]), msgId: nil,
                                                         traceparent: nil))) == ["publish as anonymous"])
        #expect(Self.describe(machine.closeForDrain()) == ["failWaitingPublishes", "close 1001"])
        #expect(Self.describe(machine.transportClosed()) == ["detach 1"])
    }

    @Test func transportLossReleasesEverything() {
        var machine = Self.machine()
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))
        _ = machine.received(.subscribe(id: Self.id(2), channel: ChannelName("b")!, from: .latest))
        _ = machine.resolved(1)
        #expect(Set(Self.describe(machine.transportClosed())) == ["detach 1", "discard 2"])
        #expect(Self.describe(machine.resolved(2)) == ["discard 2"])
    }

    @Test func movedSubscriptionResubscribesFromTheEarliestOfItsNewPartition() {
        var machine = Self.machine()
        _ = machine.received(.subscribe(id: Self.id(1), channel: Self.doc, from: .latest))
        _ = machine.resolved(1)
        let actions = machine.moved(1, channel: Self.doc)
        #expect(Self.describe(actions) == ["detach 1", "resolve 2"])
        #expect(actions.last == .resolve(2, id: nil, channel: Self.doc, topic: NamespaceMap.defaultTopic, start: .earliest))
        #expect(Self.describe(machine.resolved(2)) == ["attach 2"])
    }
}
