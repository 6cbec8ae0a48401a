import Logging
import NIOPosix
import Testing

@testable import StreamgateEtcd

/// Endpoint URLs are checked up front; the one that answered is tried first.
@Suite struct EtcdEndpointTests {
    @Test func acceptsHTTPAndHTTPSURLs() throws {
        #expect(try EtcdEndpoint("http://127.0.0.1:2379", index: 0).baseURL == "http://127.0.0.1:2379")
        #expect(
            try EtcdEndpoint("https://etcd.example.test:2379/", index: 1).baseURL == "https://etcd.example.test:2379")
        #expect(try EtcdEndpoint(" http://[::1]:2379 ", index: 2).baseURL == "http://[::1]:2379")
    }

    @Test(arguments: [
        "", "127.0.0.1:2379", "ftp://127.0.0.1:2379", "http://", "http://127.0.0.1:2379/v3",
        "http://127.0.0.1:2379?x=1", "http://user:secret@127.0.0.1:2379", "not a url",
    ])
    func rejectsOtherText(_ text: String) {
        let error = #expect(throws: EtcdError.self) { try EtcdEndpoint(text, index: 0) }
        #expect(error?.code == .invalidEndpoint)
    }

    @Test func clientRejectsMalformedOrMissingEndpoints() {
        for endpoints in [[], ["http://127.0.0.1:2379", "tcp://127.0.0.1:2380"]] {
            let error = #expect(throws: EtcdError.self) {
                try EtcdClient(
                    endpoints: endpoints, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                    logger: Logger(label: "test"))
            }
            #expect(error?.code == .invalidEndpoint)
        }
    }

    @Test func triesTheLastOneThatAnsweredFirst() async throws {
        let all = try ["http://a:1", "http://b:1", "http://c:1"].enumerated().map {
            try EtcdEndpoint($0.element, index: $0.offset)
        }
        let endpoints = EtcdEndpoints(all)
        #expect(await endpoints.inTurn() == all)
        await endpoints.answered(all[2])
        #expect(await endpoints.inTurn() == [all[2], all[0], all[1]])
        await endpoints.answered(all[1])
        #expect(await endpoints.inTurn() == [all[1], all[2], all[0]])
    }
}
