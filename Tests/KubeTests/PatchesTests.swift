import Kube
import XCTest

final class PatchesTests: XCTestCase {
    /// The annotation patch is the merge patch written by hand before: a value sets, nil removes.
    func testAnnotationsIsTheMergePatchOfTheMetadataAnnotations() throws {
        let patch = Patch.annotations(["wgmesh.dev/endpoint": "192.0.2.1:51820", "wgmesh.dev/pod-cidrs": nil])
        XCTAssertEqual(
            patch,
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            "wgmesh.dev/endpoint": .string("192.0.2.1:51820"), "wgmesh.dev/pod-cidrs": .null,
                        ])
                    ])
                ])))
        XCTAssertEqual(patch.contentType, "application/merge-patch+json")
        XCTAssertEqual(
            Patch.annotations(["a": "b"]).body.description, #"{"metadata":{"annotations":{"a":"b"}}}"#)
        XCTAssertEqual(Patch.annotations(["a": nil]).body.description, #"{"metadata":{"annotations":{"a":null}}}"#)
        XCTAssertEqual(Patch.annotations([String: String]()).body.description, #"{"metadata":{"annotations":{}}}"#)
    }

    /// The condition patch is a strategic merge of one entry into `status.conditions`.
    func testConditionIsAStrategicMergeOfOneCondition() {
        let entry: JSON = .object(["type": "WireGuardMeshReady", "status": "True"])
        XCTAssertEqual(
            Patch.condition(entry), .strategicMerge(.object(["status": .object(["conditions": .array([entry])])])))
        XCTAssertEqual(Patch.condition(entry).contentType, "application/strategic-merge-patch+json")
    }
}
