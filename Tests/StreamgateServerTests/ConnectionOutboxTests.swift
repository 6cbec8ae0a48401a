import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import StreamgateCore
import Testing

@testable import StreamgateServer

/// The outbox's bounds: paused offers, resumes, stall detection and closes, on an embedded channel.
@Suite struct ConnectionOutboxTests {
    final class Probe: Sendable {
        let resumed = NIOLockedValueBox<[Subscription]>([])
        let stalls = NIOLockedValueBox(0)
    }

    static func make(_ channel: EmbeddedChannel, pauseBytes: Int = 100, probe: Probe) -> ConnectionOutbox {
        ConnectionOutbox(channel: channel, pauseBytes: pauseBytes, stallTimeout: .seconds(2),
                         resume: { subscriptions in probe.resumed.withLockedValue { $0 += subscriptions } },
                         onStall: { probe.stalls.withLockedValue { $0 += 1 } })
    }

    static func frame(_ size: Int) -> ByteBuffer { ByteBuffer(repeating: UInt8(ascii: "x"), count: size) }

    static func written(_ channel: EmbeddedChannel) throws -> Int {
        var count = 0
        while try channel.readOutbound(as: WebSocketFrame.self) != nil { count += 1 }
        return count
    }

    @Test func offersPauseAtTheBoundAndResumeBelowHalf() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let probe = Probe()
        let outbox = Self.make(channel, probe: probe)
        let subscription = Subscription(channel: ChannelName("c")!, topic: "t", partition: 0, outbox: outbox)
        channel.isWritable = false
        #expect(outbox.offer(Self.frame(60), for: subscription))
        #expect(outbox.offer(Self.frame(60), for: subscription))
        #expect(!outbox.offer(Self.frame(60), for: subscription))  // 120 queued ≥ 100: refused, not dropped silently
        // Control frames are still taken.
        #expect(outbox.enqueue(Self.frame(10)))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == 0)
        #expect(outbox.queuedBytes == 130)
        channel.isWritable = true
        outbox.flush()
        #expect(try Self.written(channel) == 3)
        #expect(probe.resumed.withLockedValue { $0 } == [subscription])
    }

    @Test func aClientThatStopsReadingIsReportedOnceAfterTheStallTimeout() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let probe = Probe()
        let outbox = Self.make(channel, probe: probe)
        channel.isWritable = false
        outbox.enqueue(Self.frame(10))
        channel.embeddedEventLoop.run()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(probe.stalls.withLockedValue { $0 } == 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(probe.stalls.withLockedValue { $0 } == 1)
        // Closed: nothing is taken any more, and nothing queued is left to write.
        #expect(!outbox.enqueue(Self.frame(10)))
        #expect(outbox.queuedBytes == 0)
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(probe.stalls.withLockedValue { $0 } == 1)
    }

    @Test func writeProgressKeepsASlowReaderOpen() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let probe = Probe()
        let outbox = Self.make(channel, probe: probe)
        for _ in 0..<5 {
            channel.isWritable = false
            outbox.enqueue(Self.frame(10))
            channel.embeddedEventLoop.run()
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(1500))
            channel.isWritable = true
            outbox.flush()
            _ = try Self.written(channel)
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(probe.stalls.withLockedValue { $0 } == 0)
    }
}
