import StreamgateCore
import Testing

@Suite struct PublishFieldRulesTests {
    @Test func messageIDs() {
        #expect(PublishFieldRules.isValidMessageID("a"))
        #expect(PublishFieldRules.isValidMessageID("order 42/retry-1"))
        #expect(PublishFieldRules.isValidMessageID(String(repeating: "k", count: 256)))
        #expect(!PublishFieldRules.isValidMessageID(""))
        #expect(!PublishFieldRules.isValidMessageID(String(repeating: "k", count: 257)))
        #expect(!PublishFieldRules.isValidMessageID("line\nbreak"))
        #expect(!PublishFieldRules.isValidMessageID("tab\there"))
        #expect(PublishFieldRules.isValidMessageID("req-α-1"))
        #expect(!PublishFieldRules.isValidMessageID("c1\u{85}control"))
        #expect(!PublishFieldRules.isValidMessageID("\u{7F}"))
    }

    @Test func traceparents() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(PublishFieldRules.isValidTraceparent(good))
        #expect(PublishFieldRules.isValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"))
        #expect(!PublishFieldRules.isValidTraceparent(good + "-extra"))  // version 00 has no more fields
        #expect(!PublishFieldRules.isValidTraceparent(good.uppercased()))
        #expect(!PublishFieldRules.isValidTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(!PublishFieldRules.isValidTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"))
        #expect(!PublishFieldRules.isValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"))
        #expect(!PublishFieldRules.isValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"))
        #expect(!PublishFieldRules.isValidTraceparent("garbage"))
        #expect(!PublishFieldRules.isValidTraceparent(""))
        #expect(!PublishFieldRules.isValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + String(repeating: "x", count: 10_000)))
    }
}
