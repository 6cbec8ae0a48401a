import Testing

@testable import StreamgateEtcd

extension EtcdLiveTests {
    /// Watches: order, compaction, cancellation, connection loss.
    @Suite struct Watches {
        @Test func seesPutsAndDeletesInOrderFromARevision() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                _ = try await client.put(key: "/before", value: [], leaseID: nil)
                let first = try await client.put(key: "/w/a", value: Array("1".utf8), leaseID: nil)
                let second = try await client.put(key: "/w/b", value: Array("2".utf8), leaseID: nil)
                _ = try await client.put(key: "/outside", value: [], leaseID: nil)
                #expect(try await client.delete(key: "/w/a", ifValueIs: Array("1".utf8)))

                let watch = client.watch(prefix: "/w/", fromRevision: first)
                let past = try await EtcdLiveTests.events(of: watch, count: 3)
                #expect(past.map(\.kind) == [.put, .put, .delete])
                #expect(past.map(\.keyValue.key) == ["/w/a", "/w/b", "/w/a"])
                #expect(past[0].keyValue.value == Array("1".utf8))
                #expect(past[1].keyValue.modRevision == second)
                #expect(past[2].keyValue.modRevision == second + 2)

                // And live: a change made while the watch is open.
                let live = Task { try await EtcdLiveTests.events(of: watch, count: 4) }
                try await Task.sleep(for: .milliseconds(300))
                let latest = try await client.put(key: "/w/c", value: Array("3".utf8), leaseID: nil)
                let all = try await live.value
                #expect(all.count == 4)
                #expect(
                    all.last?.keyValue
                        == EtcdKeyValue(
                            key: "/w/c", value: Array("3".utf8),
                            createRevision: latest, modRevision: latest, lease: 0))
            }
        }

        @Test func fromACompactedRevisionFailsWithCompacted() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let first = try await client.put(key: "/w/a", value: Array("1".utf8), leaseID: nil)
                _ = try await client.put(key: "/w/a", value: Array("2".utf8), leaseID: nil)
                let third = try await client.put(key: "/w/a", value: Array("3".utf8), leaseID: nil)
                try await client.compact(toRevision: third)

                let error = await #expect(throws: EtcdError.self) {
                    _ = try await EtcdLiveTests.events(of: client.watch(prefix: "/w/", fromRevision: first), count: 1)
                }
                #expect(error?.code == .compacted)
                #expect(error?.compactRevision == third)

                // From the compaction revision on, the history is there.
                let kept = try await EtcdLiveTests.events(
                    of: client.watch(prefix: "/w/", fromRevision: third), count: 1)
                #expect(kept.first?.keyValue.value == Array("3".utf8))
            }
        }

        @Test func cancellingTheConsumerClosesTheWatch() async throws {
            try await EtcdLiveTests.withEtcd { server, client in
                let watchers = "etcd_debugging_mvcc_watcher_total"
                let watch = client.watch(prefix: "/w/", fromRevision: 1)
                let consumer = Task {
                    var batches = 0
                    for try await _ in watch {
                        batches += 1
                    }
                    return batches
                }
                #expect(try await server.waitForMetric(watchers, toBe: 1) == 1)
                _ = try await client.put(key: "/w/a", value: [], leaseID: nil)
                try await Task.sleep(for: .milliseconds(200))
                consumer.cancel()
                #expect(try await consumer.value == 1, "a cancelled watch ends without an error")
                #expect(try await server.waitForMetric(watchers, toBe: 0) == 0, "etcd still holds the watch")
            }
        }

        @Test func leavingTheLoopClosesTheWatch() async throws {
            try await EtcdLiveTests.withEtcd { server, client in
                _ = try await client.put(key: "/w/a", value: [], leaseID: nil)
                let events = try await EtcdLiveTests.events(of: client.watch(prefix: "/w/", fromRevision: 1), count: 1)
                #expect(events.count == 1)
                #expect(try await server.waitForMetric("etcd_debugging_mvcc_watcher_total", toBe: 0) == 0)
            }
        }

        @Test func connectionLossEndsTheWatchWithUnavailable() async throws {
            try await EtcdLiveTests.withEtcd { server, client in
                _ = try await client.put(key: "/w/a", value: [], leaseID: nil)
                var iterator = client.watch(prefix: "/w/", fromRevision: 1).makeAsyncIterator()
                #expect(try await iterator.next()?.count == 1)
                server.stop()
                do {
                    let batch = try await iterator.next()
                    Issue.record("expected the watch to fail, got \(String(describing: batch))")
                } catch let error as EtcdError {
                    #expect(error.code == .unavailable)
                }
                #expect(try await iterator.next() == nil, "a failed watch stays finished")
            }
        }
    }
}
