import Foundation
import StreamgateCore
import Testing

/// Affinity channels in the session (PROTOCOL §9): served on their bound endpoint only, and handed off
/// without a publish slipping through.
@Suite struct SessionAffinityTests {
    typealias Tests = SessionStateMachineTests

    static let namespaces = try! NamespaceMap.parse(json: Data(#"""
        {"namespaces": {"doc": {"topic": "docs", "mode": "affinity", "max_peers": 3}, "chat": {"topic": "chat"}}}
        """#.utf8))
    static let doc = ChannelName("doc:7")!
    static let chat = ChannelName("chat:1")!

    static func publish(_ id: Int, _ channel: ChannelName?) -> ClientRequest {
        .publish(id: Tests.id(id), channel: channel, payload: .json(Array("1".utf8)), msgId: nil, traceparent: nil)
    }

    @Test func multiplexedConnectionsAreMovedForAffinityChannelsAndNothingHappens() {
        var machine = Tests.machine(namespaces: Self.namespaces)
        #expect(Tests.describe(machine.received(.subscribe(id: Tests.id(1), channel: Self.doc, from: .latest)))
            == ["moved doc:7"])
        #expect(Tests.describe(machine.received(Self.publish(2, Self.doc))) == ["moved doc:7"])
        #expect(machine.subscriptionCount == 0)
        // Fanout channels are served as before.
        #expect(Tests.describe(machine.received(.subscribe(id: Tests.id(3), channel: Self.chat, from: .latest)))
            == ["resolve 1"])
    }

    @Test func boundConnectionPublishesToItsChannelAndIsMovedForAnotherAffinityChannel() {
        var machine = Tests.machine(bound: "doc:7", namespaces: Self.namespaces)
        #expect(Tests.describe(machine.received(Self.publish(1, nil))) == ["publish as anonymous"])
        #expect(Tests.describe(machine.received(Self.publish(2, ChannelName("doc:8")!))) == ["moved doc:8"])
    }

    @Test func handOffPausesReadingOnceAndRefusesLaterPublishes() {
        var machine = Tests.machine(bound: "doc:7", namespaces: Self.namespaces)
        _ = machine.opened(boundStart: .latest)
        #expect(Tests.describe(machine.handOff()) == ["pauseReading"])
        #expect(machine.handingOff)
        #expect(Tests.describe(machine.handOff()) == [])
        // A publish already read when the hand-off began is answered `moved`, not stored.
        #expect(Tests.describe(machine.received(Self.publish(3, nil))) == ["moved doc:7"])
        #expect(Tests.describe(machine.close(code: CloseCode.moved, reason: "moved")) == ["close 4302"])
    }

    @Test func maxPeersIsReadAndChecked() throws {
        #expect(Self.namespaces.route(for: Self.doc)?.maxPeers == 3)
        #expect(Self.namespaces.affinityTopics == ["docs"])
        #expect(Self.namespaces.isAffinity(Self.doc) && !Self.namespaces.isAffinity(Self.chat))
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "docs", "mode": "affinity", "max_peers": 0}}}"#.utf8))
        }
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"chat": {"topic": "chat", "max_peers": 5}}}"#.utf8))
        }
        // One topic cannot serve both modes: every node reads fanout partitions, only owners affinity ones.
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "t", "mode": "affinity"}, "chat": {"topic": "t"}}}"#.utf8))
        }
    }

    @Test func movedFrameCarriesTheResumeOffset() {
        let frame = String(decoding: ServerFrameEncoder.moved(id: nil, channel: Self.doc,
                                                              url: "wss://server2.example.com/v1/ws/doc:7?from=131",
                                                              offset: 131), as: UTF8.self)
        #expect(frame == #"{"type":"moved","channel":"doc:7","url":"wss://server2.example.com/v1/ws/doc:7?from=131","offset":131}"#)
    }
}
