import ArgumentParser
import Foundation
import StreamgateCore
import StreamgateKafka

/// `streamgate replay`: prints a channel's records in an offset or time range, one JSON object per line.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Print a channel's records, one JSON object per line (start inclusive, end exclusive).")

    @Option(help: "Kafka bootstrap servers.") var brokers: String
    @Option(help: "The channel.") var channel: String
    @Option(help: "Topic (default: from --config, else streamgate.events).") var topic: String?
    @Option(help: "JSON namespace configuration, to find the channel's topic.") var config: String?
    @Option(help: "First offset (inclusive).") var fromOffset: Int64?
    @Option(help: "First record at or after this RFC 3339 time.") var fromTime: String?
    @Option(help: "End offset (exclusive).") var toOffset: Int64?
    @Option(help: "End: the first record at or after this RFC 3339 time (exclusive).") var toTime: String?
    @Option(help: "Print at most this many records.") var limit: Int?
    @Option(help: "Seconds to wait for Kafka on each request.") var timeout = 10

    func validate() throws {
        if fromOffset != nil, fromTime != nil { throw ValidationError("give --from-offset or --from-time, not both") }
        if toOffset != nil, toTime != nil { throw ValidationError("give --to-offset or --to-time, not both") }
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
        if ChannelName(channel) == nil { throw ValidationError("invalid channel name \(channel)") }
        if let fromTime, RFC3339.milliseconds(fromTime) == nil { throw ValidationError("--from-time is not RFC 3339") }
        if let toTime, RFC3339.milliseconds(toTime) == nil { throw ValidationError("--to-time is not RFC 3339") }
    }

    func run() throws {
        let channel = ChannelName(channel)!
        let topic = try resolveTopic(channel)
        let timeoutMilliseconds = Int32(timeout * 1000)
        let lookup = try KafkaPartitionLookup(configuration: KafkaConfiguration([
            "bootstrap.servers": brokers, "client.id": "streamgate-replay", "log_level": "3",
        ]))
        defer { lookup.shutdown() }
        let count = try lookup.partitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
        let partition = Murmur2Partitioner.partition(for: channel.value.utf8, partitionCount: count)
        let (low, high) = try lookup.watermarks(topic: topic, partition: partition, timeoutMilliseconds: timeoutMilliseconds)

        func offset(atTime text: String) throws -> Int64 {
            let search = TimeStartSearch(targetMilliseconds: RFC3339.milliseconds(text)!, low: low, high: high)
            return try search.search { offset in
                var found: (offset: Int64, timestamp: Int64)?
                try lookup.read(topic: topic, partition: partition, from: offset, timeoutMilliseconds: Int(timeoutMilliseconds)) {
                    found = ($0.offset, $0.timestampMilliseconds)
                    return false
                }
                return found
            }
        }

        var start = try fromOffset ?? fromTime.map(offset(atTime:)) ?? low
        let end = min(try toOffset ?? toTime.map(offset(atTime:)) ?? high, high)
        if start < low {
            FileHandle.standardError.write(Data("replay: offsets \(start)..<\(low) are no longer retained; starting at \(low)\n".utf8))
            start = low
        }
        guard start < end, limit != 0 else { return }
        var printed = 0
        let key = Array(channel.value.utf8)
        try lookup.read(topic: topic, partition: partition, from: start, timeoutMilliseconds: 600_000) { record in
            guard record.offset < end else { return false }
            if record.key.elementsEqual(key) {
                StandardOutput.line(bytes: Self.line(record))
                printed += 1
                if let limit, printed >= limit { return false }
            }
            return record.offset + 1 < end
        }
    }

    private func resolveTopic(_ channel: ChannelName) throws -> String {
        if let topic { return topic }
        guard let config else { return NamespaceMap.defaultTopic }
        let map = try NamespaceMap.parse(json: Data(contentsOf: URL(fileURLWithPath: config)))
        guard let route = map.route(for: channel) else {
            throw ValidationError("namespace \"\(channel.namespace)\" is not configured in \(config)")
        }
        return route.topic
    }

    private static func line(_ record: KafkaRecordView) -> [UInt8] {
        var headers: [(name: String, value: [UInt8])] = []
        var contentType: UnsafeRawBufferPointer?
        record.forEachHeader { name, value in
            let name = String(cString: name)
            if name == RecordHeaders.Name.contentType { contentType = value }
            headers.append((name, Array(value)))
        }
        return AuditLineEncoder.line(
            channel: record.key, partition: record.partition, offset: record.offset,
            timestamp: record.timestampMilliseconds, headers: headers,
            payload: RecordPayloadClassifier.classify(value: record.value, contentType: contentType))
    }
}
