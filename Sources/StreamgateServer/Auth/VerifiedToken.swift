import StreamgateCore

/// What a verified token says about its holder: the session state machine's identity. `subject` is the
/// `sub` claim (non-empty, at most 256 bytes, no control characters; it becomes `sg-sender`), `expiresAt` the
/// `exp` claim in whole seconds since 1970 (a fractional `exp` is rounded down), `permissions` the
/// `channels` claim (a token without it grants nothing).
public typealias VerifiedToken = SessionStateMachine.Identity
