/// The configured endpoints and the one that answered last, which is tried first next time.
actor EtcdEndpoints {
    /// Every endpoint, in configured order.
    nonisolated let all: [EtcdEndpoint]
    private var preferred: Int = 0

    /// - Precondition: `all` is not empty and `all[i].index == i`.
    init(_ all: [EtcdEndpoint]) {
        precondition(!all.isEmpty, "at least one etcd endpoint")
        self.all = all
    }

    /// Every endpoint once, starting with the last one that answered and continuing in configured order.
    func inTurn() -> [EtcdEndpoint] {
        Array(self.all[self.preferred...] + self.all[..<self.preferred])
    }

    /// Remembers that `endpoint` answered, so it is tried first from now on.
    func answered(_ endpoint: EtcdEndpoint) {
        self.preferred = endpoint.index
    }
}
