import Foundation
import NIOCore
import StreamgateCore

/// The session's deadlines and tokens: what its loop's sweep does for it, and the verification of `auth`
/// frames off the event loop.
extension WebSocketSession {
    /// The loop's sweep: pings, the ping timeout (4000), and the machine's auth deadline and token expiry.
    func sweep(now: NIODeadline) {
        guard machine.state == .open || machine.state == .draining else { return }
        let nanoseconds = Int64(now.uptimeNanoseconds)
        if activity.frames != framesSeen {
            framesSeen = activity.frames
            liveness.received(now: nanoseconds)
        }
        switch liveness.sweep(now: nanoseconds) {
        case .sendPing:
            pingCounter += 1
            var payload = ByteBuffer()
            payload.writeInteger(pingCounter)
            outbox.ping(payload)
        case .timedOut:
            perform(machine.fail(code: CloseCode.pingTimeout, reason: "ping timeout"))
            return
        case nil:
            break
        }
        perform(machine.tick(now: nanoseconds, wallSeconds: Int64(Date().timeIntervalSince1970)))
    }

    /// Verifies an `auth` frame's token off the event loop, then reports to the machine on it.
    func verify(_ token: String, id: RequestID?) {
        guard let verifier = environment.verifier, let eventLoop = context?.eventLoop else { return }
        let session = NIOLoopBound(self, eventLoop: eventLoop)
        Task {
            let result = await verifier.verify(token)
            eventLoop.execute {
                let this = session.value
                switch result {
                case .success(let identity):
                    this.perform(this.machine.tokenVerified(identity, id: id))
                case .failure(let rejection):
                    this.perform(this.machine.tokenRejected(id: id, reason: rejection.reason))
                }
            }
        }
    }
}
