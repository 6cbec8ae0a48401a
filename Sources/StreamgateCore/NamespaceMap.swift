import Foundation

/// Where a namespace's channels live.
public struct NamespaceRoute: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Codable {
        /// Any node serves any channel.
        case fanout
        /// All connections of a channel live on the node that owns it.
        case affinity
    }

    public var topic: String
    public var mode: Mode
    /// Connections one affinity channel may have on its owner (`429` beyond); `nil`: no limit but the node's.
    public var maxPeers: Int?

    public init(topic: String, mode: Mode = .fanout, maxPeers: Int? = nil) {
        self.topic = topic
        self.mode = mode
        self.maxPeers = maxPeers
    }

    private enum CodingKeys: String, CodingKey {
        case topic, mode
        case maxPeers = "max_peers"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.topic = try container.decode(String.self, forKey: .topic)
        self.mode = try container.decodeIfPresent(Mode.self, forKey: .mode) ?? .fanout
        self.maxPeers = try container.decodeIfPresent(Int.self, forKey: .maxPeers)
    }
}

/// Maps a channel's namespace to its topic and mode (PROTOCOL §1).
///
/// Unconfigured, every channel maps to `streamgate.events` in mode `fanout`. Configured, a namespace that
/// is not listed is unknown; the key `""` names the default namespace (channels without `:`).
public struct NamespaceMap: Sendable, Equatable {
    public static let defaultTopic = "streamgate.events"

    /// `nil` when no configuration was given.
    public let routes: [String: NamespaceRoute]?

    public init(routes: [String: NamespaceRoute]? = nil) {
        self.routes = routes
    }

    /// The route of `channel`'s namespace; `nil` when the namespace is not configured.
    public func route(for channel: ChannelName) -> NamespaceRoute? {
        guard let routes else { return NamespaceRoute(topic: Self.defaultTopic) }
        return routes[String(channel.namespace)]
    }

    /// Whether `channel` belongs to an affinity namespace.
    public func isAffinity(_ channel: ChannelName) -> Bool {
        route(for: channel)?.mode == .affinity
    }

    /// The topics of affinity namespaces.
    public var affinityTopics: [String] {
        guard let routes else { return [] }
        return Array(Set(routes.values.filter { $0.mode == .affinity }.map(\.topic))).sorted()
    }

    /// Every topic a channel can map to.
    public var topics: [String] {
        guard let routes else { return [Self.defaultTopic] }
        return Array(Set(routes.values.map(\.topic))).sorted()
    }

    /// Whether a configuration file's JSON has a `namespaces` object (a file may hold only `settings`).
    public static func hasNamespaces(json: Data) throws -> Bool {
        struct File: Decodable { var namespaces: [String: NamespaceRoute]? }
        return try JSONDecoder().decode(File.self, from: json).namespaces != nil
    }

    /// Reads `{"namespaces": {"doc": {"topic": "docs", "mode": "fanout"}, "": {"topic": "…"}}}`.
    public static func parse(json: Data) throws -> NamespaceMap {
        struct File: Decodable { var namespaces: [String: NamespaceRoute] }
        let file = try JSONDecoder().decode(File.self, from: json)
        for (name, route) in file.namespaces {
            guard name.isEmpty || ChannelName(name).map({ !$0.value.contains(":") }) == true else {
                throw ConfigurationError("namespace \"\(name)\" is not a valid channel prefix")
            }
            guard !route.topic.isEmpty, route.topic.utf8.count <= 249,
                route.topic.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
                    || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            else {
                throw ConfigurationError("namespace \"\(name)\" has an invalid topic name (Kafka topics are 1-249 of [a-zA-Z0-9._-])")
            }
            if let maxPeers = route.maxPeers, maxPeers < 1 {
                throw ConfigurationError("namespace \"\(name)\": max_peers must be at least 1")
            }
            if route.maxPeers != nil, route.mode != .affinity {
                throw ConfigurationError("namespace \"\(name)\": max_peers applies to mode \"affinity\" only")
            }
        }
        let affinity = Set(file.namespaces.values.filter { $0.mode == .affinity }.map(\.topic))
        if let shared = file.namespaces.first(where: { $0.value.mode == .fanout && affinity.contains($0.value.topic) }) {
            // Every node reads fanout partitions; affinity partitions only their owner: one topic cannot be both.
            throw ConfigurationError("topic \"\(shared.value.topic)\" serves both affinity and fanout namespaces (\"\(shared.key)\"); give each mode its own topics")
        }
        return NamespaceMap(routes: file.namespaces)
    }
}

/// A configuration the gateway cannot run with.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
