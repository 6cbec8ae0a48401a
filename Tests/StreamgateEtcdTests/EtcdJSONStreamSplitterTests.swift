import NIOCore
import Testing

@testable import StreamgateEtcd

/// A streamed watch body cut into messages whatever the chunking.
@Suite struct EtcdJSONStreamSplitterTests {
    /// Three watch messages as the gateway writes them, one with braces, brackets and escaped quotes inside a
    /// string.
    private let messages = [
        #"{"result":{"header":{"revision":"7"},"created":true}}"#,
        #"{"result":{"events":[{"kv":{"key":"YQ==","mod_revision":"8"}}],"note":"} ] { \" \\"}}"#,
        #"{"result":{"canceled":true,"compact_revision":"8"}}"#,
    ]

    private func split(_ chunks: [String], maximumObjectBytes: Int = 1 << 20) throws -> [String] {
        var splitter = EtcdJSONStreamSplitter(maximumObjectBytes: maximumObjectBytes)
        var objects: [String] = []
        for chunk in chunks {
            splitter.append(ByteBuffer(string: chunk))
            while let object = try splitter.next() {
                objects.append(String(buffer: object))
            }
        }
        #expect(splitter.isEmpty)
        return objects
    }

    @Test func packedInOneChunk() throws {
        #expect(try self.split([self.messages.joined(separator: "\n") + "\n"]) == self.messages)
        #expect(try self.split([self.messages.joined()]) == self.messages)
    }

    @Test func splitAtEveryByte() throws {
        let body = Array((self.messages.joined(separator: "\n") + "\n").utf8)
        #expect(try self.split(body.map { String(decoding: [$0], as: UTF8.self) }) == self.messages)
    }

    @Test func splitAtEveryPosition() throws {
        let body = self.messages.joined(separator: "\r\n")
        for cut in 0...body.utf8.count {
            let bytes = Array(body.utf8)
            let chunks = [
                String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self),
            ]
            #expect(try self.split(chunks) == self.messages, "cut at \(cut)")
        }
    }

    @Test func waitsForTheRestOfAnObject() throws {
        var splitter = EtcdJSONStreamSplitter()
        splitter.append(ByteBuffer(string: #"{"result":{"created":"#))
        #expect(try splitter.next() == nil)
        #expect(!splitter.isEmpty)
        splitter.append(ByteBuffer(string: "true}}\n{"))
        #expect(try splitter.next().map { String(buffer: $0) } == #"{"result":{"created":true}}"#)
        #expect(try splitter.next() == nil)
        #expect(!splitter.isEmpty)
    }

    @Test func somethingOtherThanAnObjectIsABadResponse() {
        let error = #expect(throws: EtcdError.self) { try self.split(["<html>"]) }
        #expect(error?.code == .badResponse)
        #expect(throws: EtcdError.self) { try self.split([#"{"a":1}"#, "\n]"]) }
    }

    @Test func anObjectAboveTheLimitIsABadResponse() {
        let error = #expect(throws: EtcdError.self) {
            try self.split([#"{"a":""#, String(repeating: "x", count: 100)], maximumObjectBytes: 64)
        }
        #expect(error?.code == .badResponse)
    }
}
