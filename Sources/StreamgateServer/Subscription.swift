import StreamgateCore

/// One channel subscribed by one connection: what the delivery hub hands records to.
final class Subscription: Hashable, Sendable {
    let channel: ChannelName
    let topic: String
    let partition: Int32
    let outbox: ConnectionOutbox

    init(channel: ChannelName, topic: String, partition: Int32, outbox: ConnectionOutbox) {
        self.channel = channel
        self.topic = topic
        self.partition = partition
        self.outbox = outbox
    }

    static func == (lhs: Subscription, rhs: Subscription) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A topic and one of its partitions.
struct TopicPartition: Hashable, Sendable {
    var topic: String
    var partition: Int32
}
