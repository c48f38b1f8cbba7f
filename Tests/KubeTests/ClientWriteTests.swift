import Foundation
import Kube
import KubeTestSupport
import XCTest

/// KubeClient against the test server: patch types, preconditions, retries of conflicts and server errors.
extension ClientTests {
    func testPatchTypesPreconditionsAndUnknownFields() async throws {
        try await withServer { server, client in
            var n = node("n1", annotations: ["keep": "1", "drop": "2"], internalIP: "10.0.0.1")
            n = APIStore.mergePatch(n, .object(["spec": .object(["futureField": .object(["nested": .integer(7)])])]))
            try server.withStore(.nodes) { _ = try $0.create(n) }

            // Merge patch: null deletes, other keys stay, and a field this client knows nothing of survives.
            let merged = try await client.patch(
                .nodes, namespace: nil, name: "n1",
                .merge(.object(["metadata": .object(["annotations": .object(["drop": .null, "new": "3"])])])))
            XCTAssertEqual(merged.metadata.annotations, ["keep": "1", "new": "3"])
            XCTAssertEqual(merged.json["spec"]?["futureField"]?["nested"], .integer(7))

            // JSON patch with an escaped key.
            let jp = try await client.patch(
                .nodes, namespace: nil, name: "n1",
                .json([
                    .object([
                        "op": "add", "path": "/metadata/annotations/wgmesh.dev~1endpoint", "value": "1.2.3.4:51820",
                    ])
                ]))
            XCTAssertEqual(jp.metadata.annotations["wgmesh.dev/endpoint"], "1.2.3.4:51820")

            // A stale precondition is a 409 Conflict, for every patch type.
            for stale in [
                Patch.merge(.object(["metadata": .object(["annotations": .object(["x": "y"])])])),
                .strategicMerge(.object(["metadata": .object(["annotations": .object(["x": "y"])])])),
                .json([.object(["op": "add", "path": "/metadata/annotations/x", "value": "y"])]),
            ] {
                do {
                    _ = try await client.patch(
                        .nodes, namespace: nil, name: "n1",
                        stale.precondition(resourceVersion: merged.metadata.resourceVersion!))
                    XCTFail("stale \(stale.contentType) must conflict")
                } catch let error as KubeError {
                    XCTAssertTrue(error.isConflict, "\(error)")
                }
            }
            let unchanged = try await client.get(.nodes, namespace: nil, name: "n1")
            XCTAssertNil(unchanged.metadata.annotations["x"], "a refused patch changes nothing")

            // Status: conditions merge by type through the status subresource; the main resource ignores status.
            func condition(_ type: String, _ status: String) -> JSON {
                .object([
                    "type": .string(type), "status": .string(status), "reason": "R", "message": "m",
                    "lastTransitionTime": "2026-11-27T02:30:00Z",
                ])
            }
            _ = try await client.patch(
                .nodes, namespace: nil, name: "n1",
                .strategicMerge(.object(["status": .object(["conditions": .array([condition("Ready", "True")])])])),
                subresource: "status")
            let both = try await client.patch(
                .nodes, namespace: nil, name: "n1",
                .strategicMerge(
                    .object(["status": .object(["conditions": .array([condition("WireGuardMeshReady", "False")])])])),
                subresource: "status")
            XCTAssertEqual(Node(both).conditions.map(\.type), ["Ready", "WireGuardMeshReady"])
            XCTAssertEqual(Node(both).addresses.first?.address, "10.0.0.1", "addresses untouched")
            let flipped = try await client.patch(
                .nodes, namespace: nil, name: "n1",
                .strategicMerge(
                    .object(["status": .object(["conditions": .array([condition("WireGuardMeshReady", "True")])])])),
                subresource: "status")
            XCTAssertEqual(Node(flipped).conditions.map(\.status), ["True", "True"])
            let ignored = try await client.patch(
                .nodes, namespace: nil, name: "n1", .merge(.object(["status": .object(["conditions": .null])])))
            XCTAssertEqual(Node(ignored).conditions.count, 2, "the main resource cannot change status")

            // Bad annotation keys: 422 naming the key, nothing written.
            do {
                _ = try await client.patch(
                    .nodes, namespace: nil, name: "n1",
                    .merge(.object(["metadata": .object(["annotations": .object(["wgmesh.dev/bad key!": "v"])])])))
                XCTFail("expected 422")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, 422)
                XCTAssertTrue("\(error)".contains("wgmesh.dev/bad key!"))
            }
        }
    }

    func testConflictStormsAndServerErrorsAreRetried() async throws {
        try await withServer { server, client in
            try server.createNodes(["n"])
            server.inject(.init(.status(409), method: "PATCH", count: 4))
            server.inject(.init(.status(500), method: "GET", path: "/nodes/n", count: 2))
            server.resetRequestCounts()
            let done = try await client.patchRetrying(.nodes, name: "n") { _ in
                .merge(.object(["metadata": .object(["annotations": .object(["wgmesh.dev/step": "1"])])]))
            }
            XCTAssertEqual(done.metadata.annotations["wgmesh.dev/step"], "1")
            XCTAssertEqual(server.requestCounts["PATCH nodes"], 5, "four injected conflicts, then success")

            // Real conflicts: 16 writers increment one counter; none is lost.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        try await client.patchRetrying(.nodes, name: "n", attempts: 100) { current in
                            let n = Int(current.metadata.annotations["count"] ?? "0")! + 1
                            return .merge(
                                .object(["metadata": .object(["annotations": .object(["count": .string(String(n))])])]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let final = try await client.get(.nodes, namespace: nil, name: "n")
            XCTAssertEqual(final.metadata.annotations["count"], "16")

            // A change that is already in place sends nothing.
            server.resetRequestCounts()
            _ = try await client.patchRetrying(.nodes, name: "n") { _ in nil }
            XCTAssertNil(server.requestCounts["PATCH nodes"])

            // Attempts run out: the last error surfaces.
            server.inject(.init(.status(503), count: 100))
            do {
                _ = try await client.patchRetrying(.nodes, name: "n", attempts: 3) { _ in .merge(.object([:])) }
                XCTFail("expected the 503 to surface")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, 503)
            }
            server.clearFaults()
        }
    }
}
