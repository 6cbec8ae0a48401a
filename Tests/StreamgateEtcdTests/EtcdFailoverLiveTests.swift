import StreamgateEtcd
import Testing

extension EtcdLiveTests {
    /// Several endpoints: skipping the dead, remembering the live, giving up quickly.
    @Suite struct Failover {
        @Test func anUnreachableFirstEndpointFailsOverToTheSecond() async throws {
            let dead = "http://127.0.0.1:\(try await EtcdTestServer.freePort())"
            try await EtcdLiveTests.withEtcd(endpointsBefore: [dead]) { _, client in
                let revision = try await client.put(key: "/k", value: Array("v".utf8), leaseID: nil)
                #expect(try await client.range(prefix: "/k").revision == revision)
                let lease = try await client.grantLease(ttlSeconds: 10)
                #expect(try await client.keepAlive(leaseID: lease.id) > 0)
                let events = try await EtcdLiveTests.events(of: client.watch(prefix: "/k", fromRevision: 1), count: 1)
                #expect(events.first?.keyValue.key == "/k")
            }
        }

        @Test func aHangingEndpointTimesOutAndTheAnsweringOneIsRemembered() async throws {
            let silent = try await SilentServer.start()
            do {
                try await EtcdLiveTests.withEtcd(endpointsBefore: [silent.url], requestTimeout: .seconds(1)) {
                    _, client in
                    let clock = ContinuousClock()
                    let first = try await clock.measure { _ = try await client.range(prefix: "/") }
                    #expect(first >= .milliseconds(900), "the hanging endpoint was not tried first")
                    let second = try await clock.measure { _ = try await client.range(prefix: "/") }
                    #expect(second < .milliseconds(500), "the answering endpoint was not tried first")
                }
            } catch {
                try await silent.stop()
                throw error
            }
            try await silent.stop()
        }

        @Test func allEndpointsDownFailsQuicklyWithUnavailable() async throws {
            let endpoints = [
                "http://127.0.0.1:\(try await EtcdTestServer.freePort())",
                "http://127.0.0.1:\(try await EtcdTestServer.freePort())",
            ]
            try await EtcdLiveTests.withClient(endpoints: endpoints, requestTimeout: .seconds(2)) { client in
                let clock = ContinuousClock()
                var caught: EtcdError?
                let elapsed = await clock.measure {
                    do {
                        _ = try await client.put(key: "/k", value: [], leaseID: nil)
                    } catch {
                        caught = error as? EtcdError
                    }
                }
                #expect(caught?.code == .unavailable)
                #expect(caught?.cause != nil)
                #expect(caught?.message.contains(endpoints[1]) == true)
                #expect(elapsed < .seconds(2))

                let watch = await #expect(throws: EtcdError.self) {
                    _ = try await EtcdLiveTests.events(of: client.watch(prefix: "/", fromRevision: 1), count: 1)
                }
                #expect(watch?.code == .unavailable)
            }
        }

        @Test func onlyHangingEndpointsFailWithinTheRequestTimeout() async throws {
            let silent = try await SilentServer.start()
            do {
                try await EtcdLiveTests.withClient(endpoints: [silent.url], requestTimeout: .seconds(1)) { client in
                    let clock = ContinuousClock()
                    var caught: EtcdError?
                    let elapsed = await clock.measure {
                        do {
                            _ = try await client.grantLease(ttlSeconds: 10)
                        } catch {
                            caught = error as? EtcdError
                        }
                    }
                    #expect(caught?.code == .unavailable)
                    #expect(elapsed >= .milliseconds(900) && elapsed < .milliseconds(2500))
                }
            } catch {
                try await silent.stop()
                throw error
            }
            try await silent.stop()
        }
    }
}
