import StreamgateCore
import Testing

@Suite struct ChannelPermissionsTests {
    private func channel(_ name: String) -> ChannelName { ChannelName(name)! }

    @Test func exactPrefixAndAnyEntries() {
        let (permissions, invalid) = ChannelPermissions.parse(subscribe: ["doc:42", "news", "chat:*"], publish: ["doc:42"])
        #expect(invalid.isEmpty)
        #expect(permissions.canSubscribe(channel("doc:42")))
        #expect(!permissions.canSubscribe(channel("doc:421")))
        #expect(permissions.canSubscribe(channel("news")))
        #expect(!permissions.canSubscribe(channel("news:x")))
        #expect(permissions.canSubscribe(channel("chat:room-1")))
        #expect(!permissions.canSubscribe(channel("chatter")))
        #expect(permissions.canPublish(channel("doc:42")))
        #expect(!permissions.canPublish(channel("news")))
        let everything = ChannelPermissions.parse(subscribe: ["*"], publish: []).permissions
        #expect(everything.canSubscribe(channel("anything:at/all")))
        #expect(!everything.canPublish(channel("anything")))
    }

    @Test func entriesThatAreNotPatternsGrantNothing() {
        let (permissions, invalid) = ChannelPermissions.parse(subscribe: ["", "doc 42", "a*b", "**"], publish: ["é"])
        #expect(invalid == ["", "doc 42", "a*b", "**", "é"])
        #expect(permissions == .none)
    }
}
