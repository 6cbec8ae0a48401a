import Foundation

/// Where a `serve` setting comes from when its flag is not given: the environment variable
/// `STREAMGATE_<NAME>` (the flag's name in upper case, `-` as `_`), then the `settings` object of the
/// configuration file, keyed by the flag's name. So a flag beats the environment, which beats the file,
/// which beats the default.
///
/// The file is checked whole when read: a key that names no setting, or a value of the wrong kind, is an
/// error that names it — a typo never silently falls back to a default.
public struct SettingsSource: Sendable {
    /// One value of the file's `settings`.
    enum FileValue: Sendable, Equatable {
        case text(String)
        case number(Double)
        case flag(Bool)
        case list([String])
        case table([String: String])
    }

    public let names: Set<String>
    private let environment: [String: String]
    private let file: [String: FileValue]

    /// - Parameters:
    ///   - names: every setting (flag names without `--`).
    ///   - environment: the process environment.
    ///   - configurationFile: the configuration file's JSON; `nil` without one. Its `settings` object is read.
    public init(names: Set<String>, environment: [String: String], configurationFile: Data?) throws {
        self.names = names
        self.environment = environment
        var file: [String: FileValue] = [:]
        if let configurationFile {
            let decoded: FileSettings
            do {
                decoded = try JSONDecoder().decode(FileSettings.self, from: configurationFile)
            } catch {
                throw SettingsError("\"settings\" in the configuration file: \(Self.describe(error))")
            }
            for (key, value) in decoded.settings ?? [:] {
                guard names.contains(key) else {
                    throw SettingsError("unknown setting \"\(key)\" in the configuration file; settings are the flag names of serve: \(names.sorted().joined(separator: ", "))")
                }
                file[key] = value
            }
        }
        self.file = file
    }

    private struct FileSettings: Decodable {
        var settings: [String: FileValue]?
    }

    private static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error { return context.debugDescription }
        if case DecodingError.typeMismatch(_, let context) = error {
            return (context.codingPath.last?.stringValue).map { "\"\($0)\": " } .map { $0 + context.debugDescription }
                ?? context.debugDescription
        }
        return "\(error)"
    }

    /// `STREAMGATE_<NAME>` of setting `name`.
    public static func environmentName(_ name: String) -> String {
        "STREAMGATE_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    public func string(_ name: String) throws -> String? {
        if let value = try raw(name) {
            switch value {
            case .text(let text): return text
            case .number(let number): return number == number.rounded() ? String(Int64(number)) : String(number)
            case .flag(let flag): return String(flag)
            case .list, .table: throw SettingsError("setting \"\(name)\" takes one value, not a list")
            }
        }
        return nil
    }

    public func int(_ name: String) throws -> Int? {
        guard let text = try string(name) else { return nil }
        guard let value = Int(text) else { throw SettingsError("setting \"\(name)\" takes a whole number, got \(text)") }
        return value
    }

    public func double(_ name: String) throws -> Double? {
        guard let text = try string(name) else { return nil }
        guard let value = Double(text), value.isFinite else {
            throw SettingsError("setting \"\(name)\" takes a number, got \(text)")
        }
        return value
    }

    /// A repeatable setting: a JSON array (or, for `kafka`, an object of properties) in the file; a
    /// comma-separated list in the environment. Empty when neither gives it.
    public func list(_ name: String) throws -> [String] {
        switch try raw(name) {
        case nil: return []
        case .text(let text): return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .list(let items): return items
        case .table(let table): return table.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        case .number, .flag: throw SettingsError("setting \"\(name)\" takes a list")
        }
    }

    private func raw(_ name: String) throws -> FileValue? {
        precondition(names.contains(name), "setting \(name) is not declared")
        if let value = environment[Self.environmentName(name)], !value.isEmpty { return .text(value) }
        return file[name]
    }
}

extension SettingsSource.FileValue: Decodable {
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            self = .flag(flag)
        } else if let number = try? container.decode(Double.self) {
            self = .number(number)
        } else if let text = try? container.decode(String.self) {
            self = .text(text)
        } else if let items = try? container.decode([String].self) {
            self = .list(items)
        } else if let table = try? container.decode([String: String].self) {
            self = .table(table)
        } else {
            throw DecodingError.typeMismatch(
                Self.self, .init(codingPath: decoder.codingPath,
                                 debugDescription: "a setting is a string, a number, a list of strings or an object of strings"))
        }
    }
}

public struct SettingsError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
