import Testing

@testable import StreamgateServer

/// W3C trace contexts, as the tracer reads and writes them.
@Suite struct TraceContextTests {
    static let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test func aTraceparentIsReadAndWrittenBack() throws {
        let trace = try #require(TraceContext(traceparent: Self.client))
        #expect(trace.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(trace.spanID == "00f067aa0ba902b7")
        #expect(trace.flags == "01")
        #expect(trace.traceparent == Self.client)
        #expect(TraceContext(traceparent: "garbage") == nil)
        #expect(TraceContext(traceparent: "00-" + String(repeating: "0", count: 32) + "-00f067aa0ba902b7-01") == nil)
    }

    @Test func aChildStaysInItsTraceWithAnIdOfItsOwn() throws {
        let parent = try #require(TraceContext(traceparent: Self.client))
        let child = TraceContext.child(of: parent)
        #expect(child.traceID == parent.traceID && child.flags == parent.flags)
        #expect(child.spanID != parent.spanID && child.spanID.count == 16)
        #expect(TraceContext(traceparent: child.traceparent) == child)
        let root = TraceContext.child(of: nil)
        #expect(root.traceID.count == 32 && root.traceID != parent.traceID)
        #expect(TraceContext(traceparent: root.traceparent) == root)
    }
}
