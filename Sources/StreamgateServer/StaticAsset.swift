/// The files the gateway serves from its own binary (embedded at build time from `Static/`): the console
/// page at `/` and the browser client at `/v1/client.js` (the same file as `clients/js/streamgate.js`).
enum StaticAsset {
    case consolePage
    case consoleScript
    case client

    var bytes: [UInt8] {
        switch self {
        case .consolePage: PackageResources.index_html
        case .consoleScript: PackageResources.console_js
        case .client: PackageResources.streamgate_js
        }
    }

    var contentType: String {
        switch self {
        case .consolePage: "text/html; charset=utf-8"
        case .consoleScript, .client: "text/javascript; charset=utf-8"
        }
    }
}
