import Foundation
import StreamgateCore
import Testing

/// Affinity namespaces in the configuration and the `moved` frame (PROTOCOL §9).
@Suite struct NamespaceAffinityTests {
    static let namespaces = try! NamespaceMap.parse(json: Data(#"""
        {"namespaces": {"doc": {"topic": "docs", "mode": "affinity", "max_peers": 3}, "chat": {"topic": "chat"}}}
        """#.utf8))
    static let doc = ChannelName("doc:7")!
    static let chat = ChannelName("chat:1")!

    @Test func maxPeersIsReadAndChecked() throws {
        #expect(Self.namespaces.route(for: Self.doc)?.maxPeers == 3)
        #expect(Self.namespaces.route(for: Self.chat)?.maxPeers == nil)
        #expect(Self.namespaces.affinityTopics == ["docs"])
        #expect(Self.namespaces.isAffinity(Self.doc))
        #expect(!Self.namespaces.isAffinity(Self.chat))
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "docs", "mode": "affinity", "max_peers": 0}}}"#.utf8))
        }
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"chat": {"topic": "chat", "max_peers": 5}}}"#.utf8))
        }
    }

    @Test func oneTopicCannotServeBothModes() {
        // Every node reads fanout partitions, only their owner reads affinity ones.
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "t", "mode": "affinity"}, "chat": {"topic": "t"}}}"#.utf8))
        }
    }

    @Test func topicNamesAreKafkas() {
        #expect(throws: ConfigurationError.self) {
            try NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "docs/x"}}}"#.utf8))
        }
        #expect((try? NamespaceMap.parse(json: Data(#"{"namespaces": {"doc": {"topic": "a.b_c-9"}}}"#.utf8))) != nil)
    }

    @Test func movedFrameCarriesTheResumeOffset() {
        let frame = String(decoding: ServerFrameEncoder.moved(id: nil, channel: Self.doc,
                                                              url: "wss://server2.example.com/v1/ws/doc:7?from=131",
                                                              offset: 131), as: UTF8.self)
        #expect(frame == #"{"type":"moved","channel":"doc:7","url":"wss://server2.example.com/v1/ws/doc:7?from=131","offset":131}"#)
        let answer = String(decoding: ServerFrameEncoder.moved(id: RequestID(json: Array("4".utf8)), channel: Self.doc,
                                                               url: "wss://s/v1/ws/doc:7", offset: nil), as: UTF8.self)
        #expect(answer == #"{"type":"moved","id":4,"channel":"doc:7","url":"wss://s/v1/ws/doc:7"}"#)
    }
}
