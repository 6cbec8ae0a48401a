#if canImport(Glibc)
import Glibc
#endif

/// Writes machine-readable lines to standard output, unbuffered by stdio: each call reaches the pipe at once
/// (a reader waiting for `listening on …` must not wait for a buffer to fill).
enum StandardOutput {
    static func line(_ text: String) {
        line(bytes: Array(text.utf8))
    }

    static func line(bytes: [UInt8]) {
        var bytes = bytes
        bytes.append(0x0a)
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 {
                    if written < 0, errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
