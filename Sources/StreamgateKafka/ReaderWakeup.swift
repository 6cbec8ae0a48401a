import CRDKafka
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A non-blocking pipe that librdkafka queues write to when they become non-empty, and that the reader
/// thread waits on when it has nothing to do. Level-triggered: a byte written before the wait makes it
/// return at once.
final class ReaderWakeup: @unchecked Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32
    private static let payload: [UInt8] = [1]

    init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw KafkaError.invalidArgument("pipe failed: errno \(errno)") }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Makes `queue` write to the pipe whenever it becomes non-empty.
    func enable(on queue: OpaquePointer) {
        Self.payload.withUnsafeBytes {
            rd_kafka_queue_io_event_enable(queue, writeEnd, $0.baseAddress, $0.count)
        }
    }

    /// Wakes the waiting thread (or makes its next wait return at once).
    func signal() {
        Self.payload.withUnsafeBytes { _ = write(writeEnd, $0.baseAddress, $0.count) }
    }

    /// Empties the pipe without blocking.
    func drain() {
        var sink = [UInt8](repeating: 0, count: 256)
        while sink.withUnsafeMutableBytes({ read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Blocks until the pipe is readable or `timeoutMilliseconds` passed.
    func wait(timeoutMilliseconds: Int32) {
        var descriptor = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, timeoutMilliseconds)
    }
}
