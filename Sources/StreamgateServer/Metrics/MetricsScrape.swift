import Foundation
import NIOConcurrencyHelpers
import StreamgateKafka

/// The values `GET /metrics` reads when it is asked, rather than counting them as they change: the readers'
/// state, librdkafka's queue, the placement, and the process's CPU, memory and descriptors.
enum MetricsScrape {
    /// Sets the scrape-time gauges of `environment`'s node; returns the exposition.
    static func exposition(_ environment: SessionEnvironment) -> [UInt8] {
        let metrics = environment.metrics
        let readers = environment.backend.hub.readerSnapshot()
        metrics.gauge("streamgate_reader_partitions", Double(readers.partitions))
        metrics.gauge("streamgate_reader_subscribers", Double(readers.subscribers))
        metrics.gauge("streamgate_catchup_subscribers", Double(readers.catchingUp))
        metrics.gauge("streamgate_paused_subscribers", Double(readers.paused))
        metrics.gauge("streamgate_catchup_partitions", Double(readers.sweeping))
        metrics.gauge("streamgate_catchup_max_lag_records", Double(readers.maxSweepLag))
        metrics.readerLag(readers.liveLag.map { (topic: $0.key.topic, partition: $0.key.partition, lag: $0.value) })
        metrics.gauge("streamgate_stalled_partitions",
                      Double(environment.backend.hub.stalledPartitions(longerThan: .seconds(10)).count))
        metrics.gauge("streamgate_kafka_producer_queue", Double(environment.backend.producer.queueLength))
        metrics.gauge("streamgate_kafka_producer_in_flight", Double(environment.backend.producer.inFlight))
        metrics.gauge("streamgate_draining", environment.lifecycle.isDraining ? 1 : 0)
        if let statistics = environment.backend.producer.statistics {
            metrics.gauge("streamgate_kafka_producer_queued_messages", Double(statistics.queuedMessages))
            // A broker the producer never needed stays INIT (librdkafka connects to leaders only): left out.
            for broker in statistics.brokers where broker.state != "INIT" {
                let label = [("broker", broker.name)]
                metrics.gauge("streamgate_kafka_broker_up", broker.state == "UP" ? 1 : 0, labels: label)
                metrics.gauge("streamgate_kafka_broker_rtt_avg_seconds", Double(broker.rttAverageMicroseconds) / 1e6, labels: label)
                metrics.gauge("streamgate_kafka_broker_rtt_p99_seconds", Double(broker.rttP99Microseconds) / 1e6, labels: label)
                metrics.gauge("streamgate_kafka_broker_requests_queued", Double(broker.requestsQueued), labels: label)
                metrics.gauge("streamgate_kafka_broker_requests_in_flight", Double(broker.requestsInFlight), labels: label)
                // librdkafka's totals since the producer started.
                metrics.gauge("streamgate_kafka_broker_errors", Double(broker.transmitErrors), labels: label + [("kind", "transmit")])
                metrics.gauge("streamgate_kafka_broker_errors", Double(broker.receiveErrors), labels: label + [("kind", "receive")])
                metrics.gauge("streamgate_kafka_broker_errors", Double(broker.requestTimeouts), labels: label + [("kind", "timeout")])
                metrics.gauge("streamgate_kafka_broker_disconnects", Double(broker.disconnects), labels: label)
            }
        }
        let placement = environment.placement.snapshot(localConnections: environment.registry.webSocketCount)
        if placement.clustered {
            metrics.gauge("streamgate_cluster_nodes", Double(placement.nodes.count))
            metrics.gauge("streamgate_affinity_partitions_served", Double(placement.serving.count))
            metrics.gauge("streamgate_affinity_partitions_unowned", Double(placement.unowned.count))
        }
        if let process = ProcessStatistics.read() {
            metrics.processCPU(seconds: process.cpuSeconds)
            metrics.gauge("process_resident_memory_bytes", process.residentBytes)
            metrics.gauge("process_virtual_memory_bytes", process.virtualBytes)
            metrics.gauge("process_open_fds", process.openDescriptors)
            metrics.gauge("process_start_time_seconds", process.startTimeSeconds)
        }
        return metrics.exposition()
    }
}

/// `/proc/self` on Linux; `nil` elsewhere.
struct ProcessStatistics {
    var cpuSeconds: Double
    var residentBytes: Double
    var virtualBytes: Double
    var openDescriptors: Double
    var startTimeSeconds: Double

    private static let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    private static let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
    /// When the process started (seconds since the epoch): read once.
    private static let started = Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime
        + ((try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8)).flatMap { fields(of: $0) }
            .flatMap { Double($0[19]) }.map { $0 / ticks } ?? 0)

    static func read() -> ProcessStatistics? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let fields = fields(of: stat),
              let user = Double(fields[11]), let system = Double(fields[12]), let virtual = Double(fields[20]),
              let resident = Double(fields[21])
        else { return nil }
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessStatistics(cpuSeconds: (user + system) / ticks, residentBytes: resident * pageSize,
                                 virtualBytes: virtual, openDescriptors: Double(descriptors), startTimeSeconds: started)
    }

    /// The fields after the command name (which may hold spaces): field 3 of proc(5) is index 0.
    private static func fields(of stat: String) -> [Substring]? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 21 ? fields : nil
    }
}
