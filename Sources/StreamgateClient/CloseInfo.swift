/// How a connection ended.
public struct CloseInfo: Sendable, Hashable {
    /// The close code the server sent (1000 normal, 1001 drain, 4008 slow consumer, …); `nil` when the
    /// connection ended without a close frame from the server.
    public var serverCode: UInt16?
    /// The server's close reason, if any.
    public var reason: String
    /// An error that ended the connection, if one did.
    public var error: String?
}
