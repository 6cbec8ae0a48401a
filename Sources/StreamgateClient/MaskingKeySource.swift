#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Masking keys for client frames (RFC 6455 §5.3), from the system's strong entropy (`getentropy`),
/// fetched 4 KiB at a time so that a busy connection does not make a system call per frame.
struct MaskingKeySource: RandomNumberGenerator {
    private var pool = [UInt64](repeating: 0, count: 512)
    private var position = 512

    mutating func next() -> UInt64 {
        if position == pool.count { refill() }
        defer { position += 1 }
        return pool[position]
    }

    private mutating func refill() {
        let complete = pool.withUnsafeMutableBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let chunk = min(256, bytes.count - offset)
                guard getentropy(bytes.baseAddress! + offset, chunk) == 0 else { return false }
                offset += chunk
            }
            return true
        }
        if !complete {
            var generator = SystemRandomNumberGenerator()
            for index in pool.indices { pool[index] = generator.next() }
        }
        position = 0
    }
}
