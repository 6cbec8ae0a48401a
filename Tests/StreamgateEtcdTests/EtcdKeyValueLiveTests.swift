import StreamgateEtcd
import Testing

extension EtcdLiveTests {
    /// Reads, writes and compare-and-set transactions.
    @Suite struct KeyValues {
        @Test func putThenRangeReadsOnlyThePrefix() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let first = try await client.put(key: "/p/b", value: Array("2".utf8), leaseID: nil)
                let second = try await client.put(key: "/p/a", value: Array("1".utf8), leaseID: nil)
                _ = try await client.put(key: "/p0", value: [], leaseID: nil)
                let last = try await client.put(key: "/o", value: [], leaseID: nil)
                #expect(second > first)

                let result = try await client.range(prefix: "/p/")
                #expect(result.revision == last)
                #expect(
                    result.keyValues == [
                        EtcdKeyValue(
                            key: "/p/a", value: Array("1".utf8), createRevision: second,
                            modRevision: second, lease: 0),
                        EtcdKeyValue(
                            key: "/p/b", value: Array("2".utf8), createRevision: first,
                            modRevision: first, lease: 0),
                    ]
                )
                #expect(try await client.range(prefix: "/none/").keyValues.isEmpty)
                #expect(try await client.range(prefix: "").keyValues.count == 4)
            }
        }

        @Test func createIfAbsentTwiceAnswersTheFirstValue() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let lease = try await client.grantLease(ttlSeconds: 30)
                let created = try await client.createIfAbsent(
                    key: "/owners/docs/3", value: Array("server1".utf8), leaseID: lease.id)
                guard case .created(let revision) = created else {
                    Issue.record("expected .created, got \(created)")
                    return
                }
                let again = try await client.createIfAbsent(
                    key: "/owners/docs/3", value: Array("server2".utf8), leaseID: nil)
                #expect(
                    again
                        == .exists(
                            EtcdKeyValue(
                                key: "/owners/docs/3", value: Array("server1".utf8),
                                createRevision: revision, modRevision: revision, lease: lease.id))
                )
            }
        }

        @Test func deleteOnlyWhenTheValueMatches() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                _ = try await client.put(key: "/k", value: Array("mine".utf8), leaseID: nil)
                #expect(try await client.delete(key: "/k", ifValueIs: Array("theirs".utf8)) == false)
                #expect(try await client.range(prefix: "/k").keyValues.count == 1)
                #expect(try await client.delete(key: "/k", ifValueIs: Array("mine".utf8)) == true)
                #expect(try await client.range(prefix: "/k").keyValues.isEmpty)
                #expect(try await client.delete(key: "/k", ifValueIs: Array("mine".utf8)) == false)
            }
        }

        @Test func replaceOnlyWhenTheValueMatches() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let lease = try await client.grantLease(ttlSeconds: 30)
                _ = try await client.put(key: "/k", value: Array("old".utf8), leaseID: nil)
                #expect(
                    try await client.replace(
                        key: "/k", ifValueIs: Array("other".utf8), with: Array("new".utf8),
                        leaseID: lease.id) == false)
                #expect(
                    try await client.replace(
                        key: "/k", ifValueIs: Array("old".utf8), with: Array("new".utf8),
                        leaseID: lease.id) == true)
                let current = try #require(try await client.range(prefix: "/k").keyValues.first)
                #expect(current.value == Array("new".utf8))
                #expect(current.lease == lease.id)
                #expect(
                    try await client.replace(key: "/absent", ifValueIs: [], with: Array("x".utf8), leaseID: nil)
                        == false)
            }
        }
    }
}
