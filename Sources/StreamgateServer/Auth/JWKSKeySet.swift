import Foundation
import JWTKit

/// The usable keys of one JWKS document (RFC 7517 §5), ready for verification.
///
/// Each key is held by its own jwt-kit collection, one per algorithm the key allows, each collection holding
/// only that key with that algorithm fixed. A `JWTKeyCollection` with several keys falls back to its first key
/// for a token whose `kid` it does not know, and it never compares the header's `alg` with the key: the
/// verifier picks the collection itself from `kid` and `alg`, so neither behaviour is reachable.
struct JWKSKeySet: Sendable {
    /// `kid` → `alg` → the collection that verifies exactly that.
    var collections: [String: [String: JWTKeyCollection]] = [:]
    /// Keys of the document left out, or taken with a caveat, with the reason; for the log.
    var notes: [Note] = []

    /// One remark on one key. `id` names the key and the kind of remark, without details that may differ from
    /// one load to the next (a crypto library's error text), so that a refresh does not log it again.
    struct Note: Sendable, Hashable {
        var id: String
        var message: String

        init(id: String, message: String) {
            self.id = id
            self.message = message
        }

        /// A remark whose text is the same on every load.
        init(_ message: String) {
            self.init(id: message, message: message)
        }
    }

    /// How many of the document's keys are usable.
    var keyCount: Int { collections.count }

    /// The signature algorithms RFC 7518 defines for each kind of public key jwt-kit can read.
    static let rsaAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    /// Every algorithm a JWKS key may allow.
    static let publicKeyAlgorithms: Set<String> = Set(rsaAlgorithms + ["ES256", "ES384", "ES512", "EdDSA"])

    /// The algorithms a key allows: its own `alg` when it has one (if that fits the key), otherwise every
    /// algorithm of its type and curve. `nil`: the key cannot verify any signature algorithm.
    static func algorithms(for jwk: JWK) -> [String]? {
        let byType: [String]
        switch jwk.keyType {
        case .rsa:
            byType = rsaAlgorithms
        case .ecdsa:
            switch jwk.curve?.rawValue {
            case "P-256": byType = ["ES256"]
            case "P-384": byType = ["ES384"]
            case "P-521": byType = ["ES512"]
            default: return nil
            }
        case .octetKeyPair:
            guard jwk.curve?.rawValue == "Ed25519" else { return nil }
            byType = ["EdDSA"]
        default:
            return nil
        }
        guard let declared = jwk.algorithm?.rawValue else { return byType }
        return byType.contains(declared) ? [declared] : nil
    }

    /// Reads a JWKS document. Keys jwt-kit cannot use, keys not meant for signatures (`use` other than `sig`,
    /// `key_ops` without `verify`) and keys without a `kid` are left out and noted.
    ///
    /// - Throws: ``TokenSetupError`` when the document is not a JWKS, or none of its keys is usable.
    static func load(_ document: Data) async throws -> JWKSKeySet {
        let entries: [Entry]
        do {
            entries = try JSONDecoder().decode(Document.self, from: document).keys
        } catch {
            throw TokenSetupError("not a JWKS document (a JSON object with a \"keys\" array)")
        }
        var set = JWKSKeySet()
        for (index, entry) in entries.enumerated() {
            // Quoted with escapes: a document from the network must not be able to forge log lines.
            let name = entry.kid.map { "key \($0.debugDescription)" } ?? "key #\(index + 1)"
            if let problem = entry.problem {
                set.notes.append(Note("\(name) skipped: \(problem)"))
                continue
            }
            guard let jwk = entry.jwk, let kid = entry.kid else { continue }
            guard let algorithms = algorithms(for: jwk) else {
                let declared = jwk.algorithm.map { " with alg \($0.rawValue)" } ?? ""
                let curve = jwk.curve.map { " on \($0.rawValue)" } ?? ""
                set.notes.append(
                    Note(
                        "\(name) skipped: \(jwk.keyType.rawValue) key\(curve)\(declared) signs no supported "
                            + "algorithm"))
                continue
            }
            if set.collections[kid] != nil {
                set.notes.append(Note("\(name) skipped: an earlier key has the same kid"))
                continue
            }
            if jwk.privateExponent != nil {
                set.notes.append(Note("\(name) holds private key material; only its public part is used"))
            }
            var publicKey = jwk
            publicKey.privateExponent = nil
            publicKey.prime1 = nil
            publicKey.prime2 = nil
            var byAlgorithm: [String: JWTKeyCollection] = [:]
            do {
                for algorithm in algorithms {
                    publicKey.algorithm = JWK.Algorithm(rawValue: algorithm)
                    let collection = JWTKeyCollection()
                    try await collection.add(jwk: publicKey)
                    byAlgorithm[algorithm] = collection
                }
            } catch {
                set.notes.append(
                    Note(
                        id: "\(name) skipped: key material",
                        message: "\(name) skipped: jwt-kit cannot use its key material (\(error))"))
                continue
            }
            set.collections[kid] = byAlgorithm
        }
        guard set.keyCount > 0 else {
            let reasons = set.notes.isEmpty ? "it lists no keys" : set.notes.map(\.message).joined(separator: "; ")
            throw TokenSetupError("the JWKS has no usable key: \(reasons)")
        }
        return set
    }

    private struct Document: Decodable {
        var keys: [Entry]
    }

    /// One element of `keys`, decoded leniently so that one key jwt-kit cannot read does not spoil the others
    /// (jwt-kit's `JWKS` type fails as a whole on the first such key).
    private struct Entry: Decodable {
        var jwk: JWK?
        var kid: String?
        /// Why the key cannot be used, when that is known before building it.
        var problem: String?

        private enum CodingKeys: String, CodingKey {
            case kid, kty, use
            case keyOps = "key_ops"
        }

        init(from decoder: any Decoder) throws {
            guard let container = try? decoder.container(keyedBy: CodingKeys.self) else {
                problem = "not a JSON object"
                return
            }
            let use: String?
            let keyOps: [String]?
            do {
                kid = try container.decodeIfPresent(String.self, forKey: .kid)
                use = try container.decodeIfPresent(String.self, forKey: .use)
                keyOps = try container.decodeIfPresent([String].self, forKey: .keyOps)
            } catch {
                problem = "kid, use or key_ops is not of the type RFC 7517 gives it"
                return
            }
            if let use, use != "sig" {
                problem = "use is \(use.debugDescription), not \"sig\""
            } else if let keyOps, !keyOps.contains("verify") {
                problem = "key_ops does not include \"verify\""
            } else if kid?.isEmpty ?? true {
                problem = "no kid (tokens select JWKS keys by kid)"
            } else {
                do {
                    jwk = try JWK(from: decoder)
                } catch {
                    let type = ((try? container.decodeIfPresent(String.self, forKey: .kty)) ?? nil) ?? "?"
                    problem =
                        "jwt-kit cannot read this key (kty \(type.debugDescription)): unsupported type, curve or alg"
                }
            }
        }
    }
}
