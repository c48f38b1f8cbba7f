import WGMeshCore
import XCTest

final class AnnotationWritersTests: XCTestCase {
    /// Each key of the contract has exactly one writer, so the admission policies can name it.
    func testEveryKeyHasExactlyOneWriter() {
        let lists = [
            "controllerOwned": Annotation.controllerOwned, "agentOwned": Annotation.agentOwned,
            "peopleOwned": Annotation.peopleOwned,
        ]
        var writers: [String: [String]] = [:]
        for (list, keys) in lists {
            for key in keys { writers[key, default: []].append(list) }
        }
        for (key, lists) in writers where lists.count != 1 {
            XCTFail("\(key) is in \(lists.sorted()); a key has one writer")
        }
        let contract = Set(Annotation.all + Annotation.agentOwned)
        for key in contract where writers[key] == nil {
            XCTFail("\(key) has no writer: put it in controllerOwned, agentOwned or peopleOwned")
        }
        for key in writers.keys where !contract.contains(key) {
            XCTFail("\(key) has a writer but is not in Annotation.all or agentOwned")
        }
        XCTAssertEqual(Annotation.known.count, Set(Annotation.known).count, "a key twice in Annotation.known")
        XCTAssertEqual(Set(Annotation.known), contract)
        for key in Annotation.known { XCTAssertTrue(key.hasPrefix(Annotation.prefix), key) }
    }
}
