import AsyncHTTPClient
import Foundation
import NIOCore

/// The changes of the keys under a prefix, batch by batch, from ``EtcdClient/watch(prefix:fromRevision:)``.
///
/// Iterating opens one `/v3/watch` stream (trying the endpoints in turn) and yields each non-empty batch of
/// events in revision order; one batch holds the events of one or more whole revisions. The sequence:
/// - ends (returns nil) when the iterating task is cancelled or the iterator is dropped: either closes the
///   watch's HTTP connection, which ends the watch in etcd;
/// - throws ``EtcdError/Code/compacted`` when the start revision was compacted away;
/// - throws ``EtcdError/Code/unavailable`` when no endpoint could be reached or the connection was lost;
/// - throws ``EtcdError/Code/watchCanceled`` or ``EtcdError/Code/badResponse`` for other failures.
///
/// It never reconnects by itself: to continue after an error, watch again from the revision after the last
/// event seen. Each iterator opens its own watch.
public struct EtcdWatchStream: AsyncSequence, Sendable {
    public typealias Element = [EtcdEvent]

    private let transport: EtcdTransport
    private let request: EtcdWire.WatchRequest.Create

    init(transport: EtcdTransport, key: [UInt8], rangeEnd: [UInt8], fromRevision: Int64) {
        self.transport = transport
        self.request = EtcdWire.WatchRequest.Create(
            key: Data(key),
            rangeEnd: Data(rangeEnd),
            startRevision: EtcdWire.Integer(fromRevision)
        )
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(transport: self.transport, request: self.request)
    }

    /// Reads one watch stream. Not to be shared between tasks.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private enum State {
            case idle
            case streaming(HTTPClientResponse.Body.AsyncIterator)
            case finished
        }

        private let transport: EtcdTransport
        private let request: EtcdWire.WatchRequest.Create
        private var state = State.idle
        private var splitter = EtcdJSONStreamSplitter()

        fileprivate init(transport: EtcdTransport, request: EtcdWire.WatchRequest.Create) {
            self.transport = transport
            self.request = request
        }

        /// The next batch of events, or nil once the iterating task was cancelled.
        public mutating func next() async throws -> [EtcdEvent]? {
            var body: HTTPClientResponse.Body.AsyncIterator
            switch self.state {
            case .finished:
                return nil
            case .streaming(let iterator):
                body = iterator
            case .idle:
                do {
                    let response = try await self.transport.stream(
                        "/v3/watch",
                        EtcdWire.WatchRequest(createRequest: self.request)
                    )
                    body = response.body.makeAsyncIterator()
                } catch {
                    return try self.finish(throwing: error)
                }
            }
            // While suspended the state holds no connection: if this task is cancelled or the error path runs,
            // the body iterator is released here and its connection closed.
            self.state = .finished
            do {
                while true {
                    while let object = try self.splitter.next() {
                        let message = try EtcdWire.decode(
                            EtcdWire.WatchMessage.self,
                            from: object,
                            what: "a watch message"
                        )
                        let events = try EtcdWire.events(of: message)
                        if !events.isEmpty {
                            self.state = .streaming(body)
                            return events
                        }
                    }
                    guard let chunk = try await body.next() else {
                        throw EtcdError.unavailable("the watch stream ended")
                    }
                    self.splitter.append(chunk)
                }
            } catch let error as EtcdError {
                return try self.finish(throwing: error)
            } catch {
                return try self.finish(throwing: EtcdError.unavailable("the watch stream failed", cause: error))
            }
        }

        /// Ends the sequence: quietly after cancellation, else with `error`.
        private mutating func finish(throwing error: any Error) throws -> [EtcdEvent]? {
            self.state = .finished
            if Task.isCancelled {
                return nil
            }
            throw error
        }
    }
}

@available(*, unavailable)
extension EtcdWatchStream.AsyncIterator: Sendable {}
