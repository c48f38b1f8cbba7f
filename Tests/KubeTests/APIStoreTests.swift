import Foundation
import XCTest
import Kube
@testable import KubeTestSupport

final class APIStoreTests: XCTestCase {
    func node(_ name: String, annotations: [String: JSON] = [:]) -> JSON {
        .object([
            "metadata": .object(["name": .string(name), "annotations": .object(annotations)]), "spec": .object([:]),
        ])
    }

    func rv(_ o: JSON) -> String { ObjectMeta(o["metadata"]).resourceVersion ?? "" }

    func testResourceVersionsIncreaseAndConflictsAre409() throws {
        var store = APIStore(resource: .nodes)
        let a = try store.create(node("a"))
        let b = try store.create(node("b"))
        XCTAssertLessThan(Int(rv(a))!, Int(rv(b))!)
        XCTAssertThrowsError(try store.create(node("a"))) { XCTAssertEqual(($0 as? Status)?.reason, "AlreadyExists") }
        XCTAssertThrowsError(try store.get("zz")) { XCTAssertEqual(($0 as? Status)?.code, 404) }

        // Merge patch with the current version goes through; a stale one is 409 Conflict, as in sample 05.
        let patched = try store.mergePatch(
            "a",
            .object([
                "metadata": .object([
                    "resourceVersion": .string(rv(a)),
                    "annotations": .object(["wgmesh.dev/x": "y"]),
                ])
            ]))
        XCTAssertEqual(ObjectMeta(patched["metadata"]).annotations["wgmesh.dev/x"], "y")
        XCTAssertThrowsError(
            try store.mergePatch("a", .object(["metadata": .object(["resourceVersion": .string(rv(a))])]))
        ) { error in
            let s = error as? Status
            XCTAssertEqual(s?.code, 409)
            XCTAssertEqual(s?.reason, "Conflict")
        }
        // null deletes a key (RFC 7386), as in sample 06; an invalid annotation key is 422, as in sample 08.
        let cleared = try store.mergePatch(
            "a", .object(["metadata": .object(["annotations": .object(["wgmesh.dev/x": .null])])]))
        XCTAssertNil(ObjectMeta(cleared["metadata"]).annotations["wgmesh.dev/x"])
        XCTAssertThrowsError(
            try store.mergePatch("a", .object(["metadata": .object(["annotations": .object(["bad key!": "v"])])]))
        ) {
            XCTAssertEqual(($0 as? Status)?.code, 422)
        }
        XCTAssertThrowsError(try store.update(a)) {
            XCTAssertEqual(($0 as? Status)?.code, 409, "PUT with a stale version")
        }
    }

    func testPagedListIsAConsistentSnapshot() throws {
        var store = APIStore(resource: .nodes)
        for i in 0..<5 { _ = try store.create(node("node-\(i)")) }
        let first = try ObjectList(json: try store.list(limit: 2))
        XCTAssertEqual(first.items.map(\.metadata.name), ["node-0", "node-1"])
        XCTAssertEqual(first.remainingItemCount, 3)
        // Changes after the first page do not show in the later pages of the same list.
        _ = try store.delete("node-3")
        _ = try store.create(node("node-9"))
        let second = try ObjectList(json: try store.list(limit: 2, continueToken: first.continueToken))
        XCTAssertEqual(second.items.map(\.metadata.name), ["node-2", "node-3"])
        XCTAssertEqual(second.resourceVersion, first.resourceVersion)
        let third = try ObjectList(json: try store.list(limit: 2, continueToken: second.continueToken))
        XCTAssertEqual(third.items.map(\.metadata.name), ["node-4"])
        XCTAssertNil(third.continueToken)
        // A fresh list sees today's state.
        XCTAssertEqual(
            try ObjectList(json: try store.list()).items.map(\.metadata.name),
            ["node-0", "node-1", "node-2", "node-4", "node-9"])
        XCTAssertThrowsError(try store.list(continueToken: "garbage")) { XCTAssertEqual(($0 as? Status)?.code, 400) }
    }

    func testWatchWindowAnd410() throws {
        var store = APIStore(resource: .nodes, windowSize: 3)
        let start = store.resourceVersion
        for i in 0..<3 { _ = try store.create(node("n\(i)")) }
        XCTAssertEqual(try store.changes(after: start).map(\.type), [.added, .added, .added])
        _ = try store.mergePatch("n0", .object(["metadata": .object(["annotations": .object(["a": "b"])])]))
        XCTAssertThrowsError(try store.changes(after: start)) { error in
            let s = error as? Status
            XCTAssertEqual(s?.code, 410)
            XCTAssertEqual(s?.reason, "Expired")
            XCTAssertTrue(s?.message?.hasPrefix("too old resource version: \(start)") ?? false)
        }
        let recent = try store.changes(after: store.resourceVersion - 1)
        XCTAssertEqual(recent.map(\.type), [.modified])
        let list = try ObjectList(json: try store.list(limit: 1))
        _ = try store.delete("n2")
        store.compact(keepLast: 0)  // the list's version is now older than anything kept
        XCTAssertThrowsError(try store.list(limit: 1, continueToken: list.continueToken)) {
            XCTAssertEqual(($0 as? Status)?.code, 410)
        }
    }

    func testStatusBodiesHaveTheSampleShape() throws {
        let sample = try JSON.parse(
            Data(
                """
                {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",\
                "message":"m","reason":"Conflict","code":409}
                """.utf8))
        let made = APIStore.status(409, "Conflict", "m")
        XCTAssertEqual(made, try Status(json: sample))
        XCTAssertTrue(APIStore.isQualifiedName("wgmesh.dev/public-key"))
        XCTAssertTrue(APIStore.isQualifiedName("kubectl.kubernetes.io/last-applied-configuration"))
        for bad in ["", "-x", "a/b/c", "Upper.Case/x", String(repeating: "a", count: 64)] {
            XCTAssertFalse(APIStore.isQualifiedName(bad), bad)
        }
    }

    func testListThenWatchReproducesTheStateAfterRandomWrites() throws {
        var rng = SystemRandomNumberGenerator()
        var store = APIStore(resource: .nodes, windowSize: 10_000)
        var snapshots: [(rv: Int64, items: [String: JSON])] = []
        for step in 0..<400 {
            let name = "n\(Int.random(in: 0..<15, using: &rng))"
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: _ = try? store.create(node(name))
            case 1:
                _ = try? store.mergePatch(
                    name, .object(["metadata": .object(["annotations": .object(["step": .string("\(step)")])])]))
            default: _ = try? store.delete(name)
            }
            if step % 40 == 0 {
                let list = try ObjectList(json: try store.list())
                snapshots.append(
                    (
                        Int64(list.resourceVersion!)!,
                        Dictionary(uniqueKeysWithValues: list.items.map { ($0.metadata.name, $0.json) })
                    ))
            }
        }
        let now = try ObjectList(json: try store.list()).items.map(\.json)
        for (rv, items) in snapshots {
            var state = items
            for change in try store.changes(after: rv) {
                let name = ObjectMeta(change.object["metadata"]).name
                state[name] = change.type == .deleted ? nil : APIStore.withoutType(change.object)
            }
            XCTAssertEqual(state.keys.sorted().map { state[$0]! }, now, "list at \(rv) + watch from \(rv) == now")
        }
    }
}
