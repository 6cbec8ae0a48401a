import Foundation
import NIOConcurrencyHelpers
import NIOPosix

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Reads a JWKS document from its source, bounded in size and time, without blocking the caller's thread.
enum JWKSFetcher {
    /// Largest document accepted. 1 MiB is hundreds of RSA-4096 keys; a key set larger than that is a
    /// misconfigured or hostile endpoint, and must not be buffered.
    static let maxDocumentBytes = 1 << 20
    /// Longest a fetch may take, connection included. 5 s rides out a slow identity provider; a refresh that
    /// takes longer fails and keeps the last good keys.
    static let timeoutSeconds = 5.0

    static func read(_ source: JWKSSource) async throws -> Data {
        switch source {
        case .file(let path): try await readFile(path)
        case .url(let string): try await fetch(string)
        }
    }

    /// Whether the URL is `http://` to a host other than loopback (a JWKS an attacker on the path could
    /// replace).
    static func isInsecure(_ string: String) -> Bool {
        guard let url = URL(string: string), url.scheme?.lowercased() == "http" else { return false }
        let host = (url.host ?? "").lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return !(host == "localhost" || host == "::1" || host.hasPrefix("127."))
    }

    /// On the blocking-I/O thread pool, so that neither an event loop nor the cooperative pool waits on the
    /// disk.
    private static func readFile(_ path: String) async throws -> Data {
        try await NIOThreadPool.singleton.runIfActive {
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw TokenSetupError("cannot open the JWKS file \(path)")
            }
            defer { try? handle.close() }
            let data: Data
            do {
                data = try handle.read(upToCount: maxDocumentBytes + 1) ?? Data()
            } catch {
                throw TokenSetupError("cannot read the JWKS file \(path): \(error)")
            }
            guard data.count <= maxDocumentBytes else {
                throw TokenSetupError("the JWKS file \(path) is larger than \(maxDocumentBytes) bytes")
            }
            return data
        }
    }

    private static func fetch(_ string: String) async throws -> Data {
        let source = JWKSSource.url(string)
        guard let url = URL(string: string) else { throw TokenSetupError("invalid JWKS URL \(source)") }
        var request = URLRequest(
            url: url, cachePolicy: .reloadIgnoringLocalAndRemoteCacheData,
            timeoutInterval: timeoutSeconds)
        request.setValue("application/json, application/jwk-set+json", forHTTPHeaderField: "Accept")
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeoutSeconds
        configuration.timeoutIntervalForResource = timeoutSeconds
        configuration.urlCache = nil
        let delegate = Delegate(source: source)
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                delegate.start(task, continuation: continuation)
            }
        } onCancel: {
            task.cancel()
        }
    }

    /// Collects one response: refuses any status but 200, redirects, and bodies over the limit as soon as
    /// they show (declared length, or bytes received), so a large body is never buffered.
    private final class Delegate: NSObject, URLSessionDataDelegate, Sendable {
        private struct State {
            var continuation: CheckedContinuation<Data, any Error>?
            var body = Data()
            var failure: TokenSetupError?
        }

        private let source: JWKSSource
        private let state = NIOLockedValueBox(State())

        init(source: JWKSSource) {
            self.source = source
        }

        func start(_ task: URLSessionDataTask, continuation: CheckedContinuation<Data, any Error>) {
            state.withLockedValue { $0.continuation = continuation }
            task.resume()
        }

        /// Records why the fetch failed (the first reason wins); the caller then stops the task.
        private func fail(_ message: String) {
            state.withLockedValue { state in
                if state.failure == nil { state.failure = TokenSetupError("JWKS fetch from \(source): \(message)") }
            }
        }

        func urlSession(
            _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
            completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
        ) {
            guard let http = response as? HTTPURLResponse else {
                fail("not an HTTP response")
                return completionHandler(.cancel)
            }
            guard http.statusCode == 200 else {
                fail("HTTP status \(http.statusCode)")
                return completionHandler(.cancel)
            }
            guard response.expectedContentLength <= Int64(JWKSFetcher.maxDocumentBytes) else {
                fail("document larger than \(JWKSFetcher.maxDocumentBytes) bytes")
                return completionHandler(.cancel)
            }
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            let tooLarge = state.withLockedValue { state in
                state.body.append(data)
                return state.body.count > JWKSFetcher.maxDocumentBytes
            }
            if tooLarge {
                fail("document larger than \(JWKSFetcher.maxDocumentBytes) bytes")
                dataTask.cancel()
            }
        }

        func urlSession(
            _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
            newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
        ) {
            // The configured URL is the trust anchor: a redirect could lead anywhere, plain HTTP included. Not
            // following it delivers the redirect itself as the response, which the status check refuses.
            fail("redirected (HTTP status \(response.statusCode)); configure the final URL")
            completionHandler(nil)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
            let (continuation, result): (CheckedContinuation<Data, any Error>?, Result<Data, TokenSetupError>) =
                state.withLockedValue { state in
                    defer { state.continuation = nil }
                    if let failure = state.failure { return (state.continuation, .failure(failure)) }
                    if let error {
                        let message = "JWKS fetch from \(source): \(error.localizedDescription)"
                        return (state.continuation, .failure(TokenSetupError(message)))
                    }
                    return (state.continuation, .success(state.body))
                }
            continuation?.resume(with: result.mapError { $0 as any Error })
        }
    }
}
