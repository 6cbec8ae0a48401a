import StreamgateCore
import Testing

@Suite struct TimeStartSearchTests {
    /// A sparse log: offsets with timestamps, some offsets missing (other channels' control records).
    let log: [(offset: Int64, timestamp: Int64)] = [(0, 100), (1, 100), (3, 200), (4, 250), (7, 300), (8, 400)]

    func probe(_ reads: inout Int) -> TimeStartSearch.Probe {
        let log = self.log
        return { offset in log.first { $0.offset >= offset } }
    }

    @Test(arguments: [(Int64(50), Int64(0)), (100, 0), (150, 3), (250, 4), (260, 7), (400, 8), (401, 9)])
    func findsFirstRecordAtOrAfter(target: Int64, expected: Int64) throws {
        var reads = 0
        let search = TimeStartSearch(targetMilliseconds: target, low: 0, high: 9)
        #expect(try search.search(probe: probe(&reads)) == expected)
        // A right answer right after a hole in the offsets cannot be confirmed with two reads: the search
        // then runs instead. Every other right answer is confirmed.
        let afterHole = [Int64(3), 7].contains(expected)
        #expect(try search.confirms(brokerAnswer: expected == 9 ? -1 : expected, probe: probe(&reads)) == !afterHole)
    }

    @Test func refusesWrongBrokerAnswers() throws {
        var reads = 0
        let search = TimeStartSearch(targetMilliseconds: 250, low: 0, high: 9)
        #expect(try !search.confirms(brokerAnswer: -1, probe: probe(&reads)))
        #expect(try !search.confirms(brokerAnswer: 250, probe: probe(&reads)))
        #expect(try !search.confirms(brokerAnswer: 7, probe: probe(&reads)))
        #expect(try !search.confirms(brokerAnswer: 0, probe: probe(&reads)))
    }
}
