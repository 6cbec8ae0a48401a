import Foundation
import Logging
import StreamgateKafka
import Testing

/// librdkafka's statistics JSON, as `/metrics` reads it.
@Suite struct KafkaStatisticsTests {
    /// The fields of librdkafka's statistics that are read, in its own layout (other fields omitted).
    static let sample = #"""
        {"name":"rdkafka#producer-1","type":"producer","msg_cnt":7,"msg_size":700,
         "brokers":{
           "127.0.0.1:9092/bootstrap":{"name":"127.0.0.1:9092/bootstrap","nodeid":-1,"state":"UP",
             "outbuf_cnt":0,"waitresp_cnt":0,"txerrs":0,"rxerrs":0,"req_timeouts":0,"disconnects":0},
           "127.0.0.1:9093/2":{"name":"127.0.0.1:9093/2","nodeid":2,"state":"DOWN","outbuf_cnt":3,
             "waitresp_cnt":1,"txerrs":4,"rxerrs":5,"req_timeouts":6,"disconnects":2,
             "rtt":{"min":90,"max":900,"avg":250,"p50":200,"p99":880,"cnt":12}},
           "127.0.0.1:9092/1":{"name":"127.0.0.1:9092/1","nodeid":1,"state":"UP","outbuf_cnt":0,
             "waitresp_cnt":2,"txerrs":0,"rxerrs":0,"req_timeouts":0,"disconnects":0,
             "rtt":{"min":100,"max":300,"avg":150,"p50":140,"p99":290,"cnt":40}}}}
        """#

    @Test func brokersAreReadAndTheBootstrapPlaceholderIsLeftOut() throws {
        let statistics = try #require(KafkaStatistics(json: Array(Self.sample.utf8)))
        #expect(statistics.queuedMessages == 7)
        #expect(statistics.brokers.map(\.name) == ["127.0.0.1:9092/1", "127.0.0.1:9093/2"])
        let down = statistics.brokers[1]
        #expect(down.state == "DOWN")
        #expect(down.rttAverageMicroseconds == 250 && down.rttP99Microseconds == 880)
        #expect(down.requestsQueued == 3 && down.requestsInFlight == 1)
        #expect(down.transmitErrors == 4 && down.receiveErrors == 5 && down.requestTimeouts == 6 && down.disconnects == 2)
    }

    @Test func somethingElseIsNotStatistics() {
        #expect(KafkaStatistics(json: Array("not json".utf8)) == nil)
        #expect(KafkaStatistics(json: Array(#"{"brokers": 3}"#.utf8)) == nil)
    }

    @Test func aLiveProducerReportsItsBrokers() async throws {
        let cluster = try KafkaMockCluster(brokerCount: 2)
        defer { cluster.shutdown() }
        try cluster.createTopic("t", partitions: 2)
        let configuration = KafkaConfiguration(["bootstrap.servers": cluster.bootstrapServers,
                                                "statistics.interval.ms": "100"])
        let producer = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        producer.start()
        defer { producer.shutdown(timeoutMilliseconds: 1000) }
        _ = try producer.partitionCount(topic: "t", timeoutMilliseconds: 5000)  // connects to the brokers
        let deadline = ContinuousClock.now + .seconds(20)
        var statistics = producer.statistics
        // The producer connects to the brokers it needs (the partitions' leaders); the others may stay INIT.
        // Round trips are averaged over each statistics window: a metadata request per turn gives it some.
        while ContinuousClock.now < deadline,
              !(statistics?.brokers.contains { $0.state == "UP" && $0.rttAverageMicroseconds > 0 } ?? false) {
            _ = try producer.partitionCount(topic: "t", timeoutMilliseconds: 5000)
            try await Task.sleep(for: .milliseconds(50))
            statistics = producer.statistics
        }
        let brokers = try #require(statistics).brokers
        #expect(brokers.count == 2)
        #expect(brokers.contains { $0.state == "UP" && $0.rttAverageMicroseconds > 0 })
    }
}
