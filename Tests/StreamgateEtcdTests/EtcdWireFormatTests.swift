import Foundation
import NIOCore
import Testing

@testable import StreamgateEtcd

/// The gateway's JSON as etcd 3.4 writes it (answers copied from a live etcd 3.4.23), decoded and encoded.
@Suite struct EtcdWireFormatTests {
    private func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try EtcdWire.decode(type, from: ByteBuffer(string: json), what: "test")
    }

    private func encoded(_ value: some Encodable) throws -> NSDictionary {
        let data = try JSONEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    @Test func prefixRangeEndIncrementsTheLastByteBelow0xFF() {
        #expect(EtcdKeyRange.prefixEnd(Array("/streamgate/owners/".utf8)) == Array("/streamgate/owners0".utf8))
        #expect(EtcdKeyRange.prefixEnd([0x61, 0xFF]) == [0x62])
        #expect(EtcdKeyRange.prefixEnd([0x61, 0xFE]) == [0x61, 0xFF])
        #expect(EtcdKeyRange.prefixEnd([0xFF, 0xFF]) == [0])
        #expect(EtcdKeyRange.prefixEnd([]) == [0])
        let all = EtcdKeyRange.prefix("")
        #expect(all.key == [0] && all.rangeEnd == [0])
        let some = EtcdKeyRange.prefix("/p/")
        #expect(some.key == Array("/p/".utf8) && some.rangeEnd == Array("/p0".utf8))
    }

    @Test func rangeAnswerWithOmittedFieldsDecodesAsZeros() throws {
        // A key with an empty value and no lease: etcd leaves out `value` and `lease`.
        let response = try self.decode(
            EtcdWire.RangeResponse.self,
            """
            {"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"7",\
            "raft_term":"2"},"kvs":[{"key":"L3N0cmVhbWdhdGUvbm9kZXMvczE=","create_revision":"2",\
            "mod_revision":"7","version":"2"},{"key":"bA==","create_revision":"4","mod_revision":"4",\
            "version":"1","value":"Yg==","lease":"7587899331491471378"}],"count":"2"}
            """
        )
        #expect(response.header?.revision?.value == 7)
        let kvs = (response.kvs ?? []).map(EtcdWire.keyValue)
        #expect(
            kvs == [
                EtcdKeyValue(key: "/streamgate/nodes/s1", value: [], createRevision: 2, modRevision: 7, lease: 0),
                EtcdKeyValue(
                    key: "l", value: Array("b".utf8), createRevision: 4, modRevision: 4,
                    lease: 7_587_899_331_491_471_378),
            ]
        )
        let empty = try self.decode(EtcdWire.RangeResponse.self, #"{"header":{"revision":"1"}}"#)
        #expect(empty.kvs == nil)
    }

    @Test func txnAnswerWithoutSucceededMeansTheCompareFailed() throws {
        let failed = try self.decode(
            EtcdWire.TxnResponse.self,
            """
            {"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},\
            "kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"Yg=="}],\
            "count":"1"}}]}
            """
        )
        #expect(failed.succeeded != true)
        let current = try #require(failed.responses?.first?.responseRange?.kvs?.first)
        #expect(EtcdWire.keyValue(current).value == Array("b".utf8))
        let succeeded = try self.decode(
            EtcdWire.TxnResponse.self,
            #"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#
        )
        #expect(succeeded.succeeded == true)
    }

    @Test func keepAliveAnswerWithoutTTLMeansTheLeaseIsGone() throws {
        let gone = try self.decode(
            EtcdWire.LeaseKeepAliveMessage.self,
            #"{"result":{"header":{"revision":"2","raft_term":"2"},"ID":"7587899331491471369"}}"#
        )
        #expect(gone.result?.id?.value == 7_587_899_331_491_471_369)
        #expect(gone.result?.ttl == nil)
        let alive = try self.decode(
            EtcdWire.LeaseKeepAliveMessage.self,
            #"{"result":{"header":{"revision":"3"},"ID":"7587899331491471378","TTL":"30"}}"#
        )
        #expect(alive.result?.ttl?.value == 30)
    }

    @Test func integersReadFromStringsOrNumbersAndWriteAsStrings() throws {
        #expect(try self.decode(EtcdWire.Integer.self, #""-12""#).value == -12)
        #expect(try self.decode(EtcdWire.Integer.self, "42").value == 42)
        #expect(throws: EtcdError.self) { try self.decode(EtcdWire.Integer.self, #""12a""#) }
        let body = try self.encoded(EtcdWire.LeaseGrantRequest(ttl: EtcdWire.Integer(10)))
        #expect(body == ["TTL": "10"] as NSDictionary)
    }

    @Test func requestsCarryBase64KeysAndOmitAbsentFields() throws {
        let put = try self.encoded(EtcdWire.PutRequest(key: Data("/a".utf8), value: Data([0, 255]), lease: nil))
        #expect(put == ["key": "L2E=", "value": "AP8="] as NSDictionary)
        let create = try self.encoded(
            EtcdWire.TxnRequest(
                compare: [.absent(Data("k".utf8))],
                success: [
                    EtcdWire.RequestOp(
                        requestPut: EtcdWire.PutRequest(
                            key: Data("k".utf8), value: Data(),
                            lease: EtcdWire.Integer(7)))
                ],
                failure: [EtcdWire.RequestOp(requestRange: EtcdWire.RangeRequest(key: Data("k".utf8)))]
            )
        )
        #expect(
            create
                == [
                    "compare": [["key": "aw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"]],
                    "success": [["request_put": ["key": "aw==", "value": "", "lease": "7"]]],
                    "failure": [["request_range": ["key": "aw=="]]],
                ] as NSDictionary
        )
        let watch = try self.encoded(
            EtcdWire.WatchRequest(
                createRequest: .init(
                    key: Data("/p/".utf8), rangeEnd: Data("/p0".utf8),
                    startRevision: EtcdWire.Integer(5))
            )
        )
        #expect(
            watch == ["create_request": ["key": "L3Av", "range_end": "L3Aw", "start_revision": "5"]] as NSDictionary
        )
    }

    @Test func watchMessagesYieldEventsInOrder() throws {
        let created = try self.decode(
            EtcdWire.WatchMessage.self,
            #"{"result":{"header":{"revision":"7","raft_term":"2"},"created":true}}"#
        )
        #expect(try EtcdWire.events(of: created).isEmpty)
        let batch = try self.decode(
            EtcdWire.WatchMessage.self,
            """
            {"result":{"header":{"revision":"8"},"events":[{"kv":{"key":"YQ==","create_revision":"2",\
            "mod_revision":"7","version":"2"}},{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"8"}}]}}
            """
        )
        #expect(
            try EtcdWire.events(of: batch) == [
                EtcdEvent(
                    kind: .put,
                    keyValue: EtcdKeyValue(
                        key: "a", value: [], createRevision: 2, modRevision: 7,
                        lease: 0)),
                EtcdEvent(
                    kind: .delete,
                    keyValue: EtcdKeyValue(
                        key: "a", value: [], createRevision: 0,
                        modRevision: 8, lease: 0)),
            ]
        )
    }

    @Test func watchCanceledForCompactionThrowsCompacted() throws {
        let canceled = try self.decode(
            EtcdWire.WatchMessage.self,
            #"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"8"}}"#
        )
        let error = #expect(throws: EtcdError.self) { try EtcdWire.events(of: canceled) }
        #expect(error?.code == .compacted)
        #expect(error?.compactRevision == 8)

        let other = try self.decode(
            EtcdWire.WatchMessage.self,
            #"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#
        )
        let otherError = #expect(throws: EtcdError.self) { try EtcdWire.events(of: other) }
        #expect(otherError?.code == .watchCanceled)
        #expect(otherError?.message.contains("permission denied") == true)

        let streamError = try self.decode(
            EtcdWire.WatchMessage.self,
            #"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"x"}}"#
        )
        let unavailable = #expect(throws: EtcdError.self) { try EtcdWire.events(of: streamError) }
        #expect(unavailable?.code == .unavailable)

        let unknownType = try self.decode(EtcdWire.WatchMessage.self, #"{"result":{"events":[{"type":"X","kv":{}}]}}"#)
        #expect(throws: EtcdError.self) { try EtcdWire.events(of: unknownType) }
    }

    @Test func errorBodiesMapToCodes() {
        let leaseGone = EtcdWire.error(
            status: 404,
            body: ByteBuffer(
                string:
                    #"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#
            )
        )
        #expect(leaseGone.code == .leaseNotFound)
        #expect(leaseGone.httpStatus == 404 && leaseGone.etcdCode == 5)

        let noLeader = EtcdWire.error(
            status: 503,
            body: ByteBuffer(string: #"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#)
        )
        #expect(noLeader.code == .unavailable)

        let compacted = EtcdWire.error(
            status: 400,
            body: ByteBuffer(string: #"{"message":"etcdserver: mvcc: required revision has been compacted","code":11}"#)
        )
        #expect(compacted.code == .httpStatus && compacted.etcdCode == 11)
        #expect(compacted.message == "etcdserver: mvcc: required revision has been compacted")

        let notJSON = EtcdWire.error(status: 502, body: ByteBuffer(string: "Bad Gateway"))
        #expect(notJSON.code == .httpStatus && notJSON.httpStatus == 502)
        #expect(notJSON.description.contains("Bad Gateway"))
    }

    @Test func malformedAnswersAreBadResponses() {
        let error = #expect(throws: EtcdError.self) {
            try self.decode(EtcdWire.RangeResponse.self, #"{"kvs":[{"key":"not base64!"}]}"#)
        }
        #expect(error?.code == .badResponse)
        #expect(error?.cause != nil)
        #expect(throws: EtcdError.self) { try self.decode(EtcdWire.RangeResponse.self, "<html>") }
    }
}
