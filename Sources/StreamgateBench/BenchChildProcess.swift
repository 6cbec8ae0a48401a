import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A process the bench starts (dev Kafka, gateway): its first stdout lines are read for addresses, its
/// standard error goes to a log file, and it is stopped with SIGTERM (SIGKILL after a grace period).
final class BenchChildProcess {
    let name: String
    let logPath: String
    private let process = Process()
    private let output = Pipe()
    private var pending: [UInt8] = []

    init(name: String, executable: String, arguments: [String], logDirectory: String) throws {
        self.name = name
        self.logPath = "\(logDirectory)/\(name).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Reads standard output until a line satisfies `accept`, for at most `timeoutSeconds`.
    func waitForLine(timeoutSeconds: Double, where accept: (String) -> Bool) throws -> String {
        let deadline = BenchClock.now() + BenchClock.nanoseconds(timeoutSeconds)
        let fd = output.fileHandleForReading.fileDescriptor
        while true {
            while let newline = pending.firstIndex(of: 0x0a) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                if accept(line) { return line }
            }
            let now = BenchClock.now()
            guard now < deadline, process.isRunning else {
                throw BenchError("\(name) did not print the expected line (see \(logPath))")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                pending.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                throw BenchError("\(name) closed its output (see \(logPath))")
            }
        }
    }

    /// User plus system CPU seconds the process has used so far.
    func cpuSeconds() -> Double? { ProcessCPU.seconds(pid: pid) }

    /// SIGTERM, then SIGKILL if it has not exited after `graceSeconds`.
    func stop(graceSeconds: Double = 15) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = BenchClock.now() + BenchClock.nanoseconds(graceSeconds)
        while process.isRunning, BenchClock.now() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// CPU time of a process from `/proc/PID/stat` (utime + stime).
enum ProcessCPU {
    static func seconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func ownSeconds() -> Double? { seconds(pid: getpid()) }
}

/// A bench failure with a message for the operator.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
