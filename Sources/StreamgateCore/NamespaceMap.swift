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

    public init(topic: String, mode: Mode = .fanout) {
        self.topic = topic
        self.mode = mode
    }

    private enum CodingKeys: String, CodingKey { case topic, mode }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.topic = try container.decode(String.self, forKey: .topic)
        self.mode = try container.decodeIfPresent(Mode.self, forKey: .mode) ?? .fanout
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

    /// Every topic a channel can map to.
    public var topics: [String] {
        guard let routes else { return [Self.defaultTopic] }
        return Array(Set(routes.values.map(\.topic))).sorted()
    }

    /// Reads `{"namespaces": {"doc": {"topic": "docs", "mode": "fanout"}, "": {"topic": "…"}}}`.
    public static func parse(json: Data) throws -> NamespaceMap {
        struct File: Decodable { var namespaces: [String: NamespaceRoute] }
        let file = try JSONDecoder().decode(File.self, from: json)
        for (name, route) in file.namespaces {
            guard name.isEmpty || ChannelName(name).map({ !$0.value.contains(":") }) == true else {
                throw ConfigurationError("namespace \"\(name)\" is not a valid channel prefix")
            }
            guard !route.topic.isEmpty, route.topic.utf8.count <= 249 else {
                throw ConfigurationError("namespace \"\(name)\" has an invalid topic name")
            }
        }
        return NamespaceMap(routes: file.namespaces)
    }
}

/// A configuration the gateway cannot run with.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
