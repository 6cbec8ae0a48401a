/// The byte ranges etcd requests name: a key and an exclusive range end.
enum EtcdKeyRange {
    /// The range end that selects every key starting with `prefix`: the prefix with its last byte that is not
    /// 0xFF incremented and what follows it dropped. A prefix that is empty or all 0xFF has no such end; etcd
    /// reads the range end `[0]` as "every key from `key` on".
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    /// The `(key, range_end)` pair for every key under `prefix`. An empty prefix means every key, which etcd
    /// spells as key `[0]` and range end `[0]`.
    static func prefix(_ prefix: String) -> (key: [UInt8], rangeEnd: [UInt8]) {
        let key = Array(prefix.utf8)
        return (key.isEmpty ? [0] : key, self.prefixEnd(key))
    }
}
