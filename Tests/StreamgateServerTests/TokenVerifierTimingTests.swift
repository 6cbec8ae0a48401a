import Foundation
import JWTKit
import Testing

@testable import StreamgateServer

/// The cost of one verification per algorithm, printed, not asserted (timings depend on the machine and the
/// build). Runs only when `STREAMGATE_TOKEN_TIMING` is set.
@Suite struct TokenVerifierTimingTests {
    typealias F = TokenFixtures

    @Test(.enabled(if: ProcessInfo.processInfo.environment["STREAMGATE_TOKEN_TIMING"] != nil))
    func microsecondsPerVerification() async throws {
        let iterations = Int(ProcessInfo.processInfo.environment["STREAMGATE_TOKEN_TIMING"] ?? "") ?? 500
        let verifier = try await F.verifier(secret: true, jwks: F.standardJWKS)
        let clock = ContinuousClock()
        var lines: [String] = []
        for signer in [TokenTestSigner.hs(256), .rs(256), .ps(256), .es256, .es384, .eddsa] {
            let token = try await F.token(signer: signer, kid: signer.isHMAC ? nil : signer.standardKid)
            let alone = try await signer.collection()
            for _ in 0..<20 {
                _ = await verifier.verify(token, now: F.now)
                _ = try await alone.verify(token, as: TokenTestClaims.self)
            }
            let serial = await clock.measure {
                for _ in 0..<iterations {
                    let accepted = await verifier.verify(token, now: F.now).isAccepted
                    precondition(accepted)
                }
            }
            let jwtKitOnly = try await clock.measure {
                for _ in 0..<iterations { _ = try await alone.verify(token, as: TokenTestClaims.self) }
            }
            let bytes = Array(token.utf8)
            let shape = clock.measure {
                for _ in 0..<iterations { _ = try? DefaultJWTParser().parse(bytes, as: TokenClaims.self) }
            }
            let header = clock.measure {
                for _ in 0..<iterations { _ = TokenHeader(compactToken: bytes) }
            }
            let tasks = 8
            let parallel = await clock.measure {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<tasks {
                        group.addTask {
                            for _ in 0..<iterations / tasks { _ = await verifier.verify(token, now: F.now) }
                        }
                    }
                }
            }
            let parallelAlone = await clock.measure {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<tasks {
                        group.addTask {
                            for _ in 0..<iterations / tasks {
                                _ = try? await alone.verify(token, as: TokenTestClaims.self)
                            }
                        }
                    }
                }
            }
            func micros(_ duration: Duration, _ count: Int) -> String {
                let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
                return String(format: "%8.1f", seconds * 1e6 / Double(count))
            }
            lines.append(
                signer.testDescription.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + " verify \(micros(serial, iterations)) µs"
                    + "   jwt-kit alone \(micros(jwtKitOnly, iterations)) µs"
                    + "   (shape \(micros(shape, iterations)), header \(micros(header, iterations)))"
                    + "   \(tasks) tasks: \(micros(parallel, iterations / tasks * tasks)) µs wall"
                    + " (jwt-kit alone \(micros(parallelAlone, iterations / tasks * tasks)))")
        }
        print(
            "token verification, \(iterations) iterations, \(ProcessInfo.processInfo.activeProcessorCount) cores:\n"
                + lines.joined(separator: "\n"))
    }
}
