import Kube
import XCTest

/// client-go's spam filter: 25 Events about one object at once, then one per 5 minutes; objects apart.
final class EventSpamFilterTests: XCTestCase {
    func testTwentyFiveAtOnceThenOnePerFiveMinutesPerObject() {
        var filter = EventSpamFilter()
        let start = ContinuousClock.now
        XCTAssertEqual((1...30).filter { _ in filter.allow("n10", at: start) }.count, 25)
        XCTAssertTrue(filter.allow("n11", at: start), "another object has its own bucket")
        XCTAssertFalse(filter.allow("n10", at: start + .seconds(299)))
        XCTAssertTrue(filter.allow("n10", at: start + .seconds(450)), "refilled at one per 300 s")
        XCTAssertFalse(filter.allow("n10", at: start + .seconds(450)), "half a token left")
        XCTAssertEqual(
            (1...30).filter { _ in filter.allow("n10", at: start + .seconds(600 + 300 * 40)) }.count, 25,
            "never more than the burst")
    }

    /// A new leader's recorder counts the Events the API holds, its own earlier ones included, once.
    func testReplayCountsTheEventsSentBeforeInPlaceOfTheBucket() {
        var filter = EventSpamFilter()
        let start = ContinuousClock.now
        XCTAssertEqual((1...10).filter { _ in filter.allow("n10", at: start) }.count, 10)
        // The API holds those 10 and 15 more from another replica: 25 in all, none left.
        filter.replay("n10", sentAt: Array(repeating: start, count: 25))
        XCTAssertFalse(filter.allow("n10", at: start + .seconds(1)))
        XCTAssertTrue(filter.allow("n10", at: start + .seconds(301)), "refilled at one per 300 s")
    }

    func testTheLeastRecentlySeenObjectIsForgottenBeyondCapacity() {
        var filter = EventSpamFilter()
        filter.capacity = 2
        filter.burst = 1
        let start = ContinuousClock.now
        XCTAssertTrue(filter.allow("a", at: start))
        XCTAssertTrue(filter.allow("b", at: start + .seconds(1)))
        XCTAssertFalse(filter.allow("a", at: start + .seconds(2)))
        XCTAssertTrue(filter.allow("c", at: start + .seconds(3)), "b, seen least recently, is forgotten")
        XCTAssertTrue(filter.allow("b", at: start + .seconds(4)), "a new bucket for b")
    }
}
