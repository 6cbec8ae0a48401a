import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// The node's TLS context, swappable: SIGHUP loads the certificate files again and later handshakes use
/// the new context, while open connections keep theirs.
final class TLSContextStore: Sendable {
    private let files: TLSFiles
    private let current: NIOLockedValueBox<NIOSSLContext>

    /// Loads the files now; a start with unreadable or mismatched files fails.
    init(files: TLSFiles) throws {
        self.files = files
        self.current = NIOLockedValueBox(try Self.load(files))
    }

    var context: NIOSSLContext { current.withLockedValue { $0 } }

    /// Loads the files again; on failure the current context stays and the error is returned.
    func reload() -> (any Error)? {
        do {
            let fresh = try Self.load(files)
            current.withLockedValue { $0 = fresh }
            return nil
        } catch {
            return error
        }
    }

    /// TLS 1.2 or later, ALPN `http/1.1` (WebSocket runs over HTTP/1.1), the whole chain from the file.
    private static func load(_ files: TLSFiles) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificatePath)
        guard !chain.isEmpty else { throw NIOSSLError.failedToLoadCertificate }
        let key = try NIOSSLPrivateKey(file: files.keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }
}
