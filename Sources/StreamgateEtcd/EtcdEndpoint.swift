import Foundation

/// One etcd client URL, checked: `http://host:port` or `https://host:port`, nothing after the authority.
struct EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Position in the configured list, so the client can remember which one answered.
    let index: Int
    /// Scheme and authority without a trailing slash, e.g. `http://127.0.0.1:2379`; request paths are appended.
    let baseURL: String

    var description: String { self.baseURL }

    /// Parses `text` as the `index`-th endpoint.
    /// - Throws: ``EtcdError`` with code ``EtcdError/Code/invalidEndpoint`` when `text` is not an http(s) URL with
    ///   a host and without path, query, fragment or credentials.
    init(_ text: String, index: Int) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        func invalid(_ reason: String) -> EtcdError {
            EtcdError(code: .invalidEndpoint, message: "etcd endpoint \"\(text)\" \(reason)")
        }
        guard let url = URL(string: trimmed), let scheme = url.scheme?.lowercased() else {
            throw invalid("is not a URL")
        }
        guard scheme == "http" || scheme == "https" else {
            throw invalid("must start with http:// or https://")
        }
        guard let host = url.host, !host.isEmpty else {
            throw invalid("has no host")
        }
        guard url.path.isEmpty || url.path == "/", url.query == nil, url.fragment == nil else {
            throw invalid("must not have a path, query or fragment")
        }
        guard url.user == nil, url.password == nil else {
            throw invalid("must not carry credentials")
        }
        var base = trimmed
        while base.hasSuffix("/") {
            base.removeLast()
        }
        self.index = index
        self.baseURL = base
    }
}
