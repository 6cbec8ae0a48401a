import StreamgateEtcd
import Testing

extension EtcdLiveTests {
    /// Leases: grant, keepalive, revoke, expiry.
    @Suite struct Leases {
        @Test func grantKeepAliveRevoke() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let lease = try await client.grantLease(ttlSeconds: 10)
                #expect(lease.id != 0)
                #expect(lease.ttlSeconds == 10)
                let remaining = try await client.keepAlive(leaseID: lease.id)
                #expect(remaining > 0 && remaining <= 10)

                try await client.revokeLease(lease.id)
                let gone = await #expect(throws: EtcdError.self) { try await client.keepAlive(leaseID: lease.id) }
                #expect(gone?.code == .leaseNotFound)
                let again = await #expect(throws: EtcdError.self) { try await client.revokeLease(lease.id) }
                #expect(again?.code == .leaseNotFound)
            }
        }

        @Test func writesUnderAMissingLeaseFailWithLeaseNotFound() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let put = await #expect(throws: EtcdError.self) {
                    try await client.put(key: "/k", value: [], leaseID: 12345)
                }
                #expect(put?.code == .leaseNotFound)
                let create = await #expect(throws: EtcdError.self) {
                    try await client.createIfAbsent(key: "/k", value: [], leaseID: 12345)
                }
                #expect(create?.code == .leaseNotFound)
                let written = try await client.range(prefix: "/k")
                #expect(written.keyValues.isEmpty)
            }
        }

        @Test func expiryDeletesTheLeasesKeys() async throws {
            try await EtcdLiveTests.withEtcd { _, client in
                let lease = try await client.grantLease(ttlSeconds: 2)
                let start = ContinuousClock.now
                _ = try await client.put(key: "/nodes/s1", value: Array("{}".utf8), leaseID: lease.id)
                #expect(try await client.range(prefix: "/nodes/").keyValues.first?.lease == lease.id)

                var gone = false
                while !gone, ContinuousClock.now - start < .seconds(8) {
                    try await Task.sleep(for: .milliseconds(200))
                    gone = try await client.range(prefix: "/nodes/").keyValues.isEmpty
                }
                let elapsed = ContinuousClock.now - start
                #expect(gone, "the key outlived its 2 s lease by far")
                #expect(elapsed >= .milliseconds(1500), "the key went away before its lease could expire")

                let error = await #expect(throws: EtcdError.self) { try await client.keepAlive(leaseID: lease.id) }
                #expect(error?.code == .leaseNotFound)
            }
        }
    }
}
