import Foundation
import StreamgateServer
import Testing

/// Settings beyond the flags: the environment, then the configuration file's `settings`.
@Suite struct SettingsSourceTests {
    static let names: Set<String> = ["max-connections", "ping-interval", "kafka", "allowed-origin", "host", "log-level"]

    static func source(_ file: String?, environment: [String: String] = [:]) throws -> SettingsSource {
        try SettingsSource(names: names, environment: environment, configurationFile: file.map { Data($0.utf8) })
    }

    @Test func theFileGivesEveryKindOfSetting() throws {
        let settings = try Self.source(#"""
            {"namespaces": {"": {"topic": "t"}},
             "settings": {"max-connections": 500, "ping-interval": 2.5, "host": "0.0.0.0",
                          "kafka": {"linger.ms": "5", "acks": "all"}, "allowed-origin": ["https://a", "https://b"]}}
            """#)
        #expect(try settings.int("max-connections") == 500)
        #expect(try settings.double("ping-interval") == 2.5)
        #expect(try settings.string("host") == "0.0.0.0")
        #expect(try settings.list("kafka") == ["acks=all", "linger.ms=5"])
        #expect(try settings.list("allowed-origin") == ["https://a", "https://b"])
        #expect(try settings.string("log-level") == nil)
    }

    @Test func theEnvironmentBeatsTheFile() throws {
        let settings = try Self.source(#"{"settings": {"max-connections": 500, "allowed-origin": ["https://a"]}}"#,
                                       environment: ["STREAMGATE_MAX_CONNECTIONS": "7",
                                                     "STREAMGATE_ALLOWED_ORIGIN": "https://x, https://y"])
        #expect(try settings.int("max-connections") == 7)
        #expect(try settings.list("allowed-origin") == ["https://x", "https://y"])
        #expect(SettingsSource.environmentName("max-in-flight-bytes") == "STREAMGATE_MAX_IN_FLIGHT_BYTES")
    }

    @Test func mistakesAreNamed() throws {
        #expect(throws: SettingsError.self) { try Self.source(#"{"settings": {"max-conections": 5}}"#) }
        #expect(throws: SettingsError.self) { try Self.source(#"{"settings": {"kafka": {"linger.ms": [1]}}}"#) }
        #expect(throws: SettingsError.self) { try Self.source(#"{"settings": 3}"#) }
        let wrongKind = try Self.source(#"{"settings": {"max-connections": "many", "host": ["a"]}}"#)
        #expect(throws: SettingsError.self) { try wrongKind.int("max-connections") }
        #expect(throws: SettingsError.self) { try wrongKind.string("host") }
        let fractional = try Self.source(#"{"settings": {"max-connections": 2.5, "ping-interval": true}}"#)
        #expect(throws: SettingsError.self) { try fractional.int("max-connections") }
        #expect(throws: SettingsError.self) { try fractional.double("ping-interval") }
        do {
            _ = try Self.source(#"{"settings": {"max-conections": 5}}"#)
        } catch let error as SettingsError {
            #expect(error.description.contains("max-conections") && error.description.contains("max-connections"))
        }
    }

    @Test func noFileAndNoEnvironmentGiveNothing() throws {
        let settings = try Self.source(nil)
        #expect(try settings.int("max-connections") == nil)
        #expect(try settings.list("kafka") == [])
    }
}
