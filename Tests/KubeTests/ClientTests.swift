import Foundation
import Kube
import KubeTestSupport
import XCTest

/// KubeClient against the test server: transport, authentication, paging, patches, writes, errors.
final class ClientTests: XCTestCase {
    func testGetAndPagedListOverTLSWithAToken() async throws {
        try await withServer(.init(tls: true, token: "s3cret")) { server, client in
            try server.createNodes((0..<7).map { "node-\($0)" })
            let one = try await client.get(.nodes, namespace: nil, name: "node-3")
            XCTAssertEqual(one.kind, "Node")
            XCTAssertEqual(one.metadata.name, "node-3")

            server.resetRequestCounts()
            let first = try await client.list(.nodes, namespace: nil, options: ListOptions(limit: 3))
            XCTAssertEqual(first.items.map(\.metadata.name), ["node-0", "node-1", "node-2"])
            XCTAssertEqual(first.remainingItemCount, 4)
            XCTAssertNotNil(first.continueToken)
            let all = try await client.listAll(.nodes, pageSize: 3)
            XCTAssertEqual(all.items.map(\.metadata.name), (0..<7).map { "node-\($0)" })
            XCTAssertNil(all.continueToken)
            XCTAssertEqual(all.resourceVersion, first.resourceVersion, "every page is as of the first page's version")
            XCTAssertEqual(server.requestCounts["LIST nodes"], 1 + 3)
        }
    }

    func testAListIsOneSnapshotEvenWhenObjectsChangeBetweenPages() async throws {
        try await withServer { server, client in
            try server.createNodes(["a", "b", "c", "d"])
            let first = try await client.list(.nodes, namespace: nil, options: ListOptions(limit: 2))
            try server.withStore(.nodes) { s in
                _ = try s.delete("c")
                _ = try s.create(node("e"))
            }
            let second = try await client.list(
                .nodes, namespace: nil, options: ListOptions(limit: 2, continueToken: first.continueToken))
            XCTAssertEqual(
                second.items.map(\.metadata.name), ["c", "d"], "the continue token's snapshot: c still there, e not yet"
            )
        }
    }

    func testAnExpiredContinueTokenRestartsTheList() async throws {
        try await withServer { server, client in
            try server.createNodes((0..<6).map { "n\($0)" })
            // The first page is served, then the store compacts past its version before the second.
            server.inject(.init(.status(410), method: "GET", path: "continue=", count: 1))
            let fresh = try await client.listAll(.nodes, pageSize: 2)
            XCTAssertEqual(fresh.items.count, 6)

            let first = try await client.list(.nodes, namespace: nil, options: ListOptions(limit: 2))
            try server.withStore(.nodes) { s in
                _ = try s.mergePatch("n0", .object(["metadata": .object(["labels": .object(["x": "y"])])]))
                s.compact(keepLast: 0)
            }
            do {
                _ = try await client.list(
                    .nodes, namespace: nil, options: ListOptions(limit: 2, continueToken: first.continueToken))
                XCTFail("a token older than the compaction must be refused")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, 410)
                XCTAssertEqual(error.status?.reason, "Expired")
            }
            server.resetRequestCounts()
            let again = try await client.listAll(.nodes, pageSize: 4)
            XCTAssertEqual(again.items.count, 6)
        }
    }

    func testErrorsCarryTheRequestAndTheServersStatus() async throws {
        try await withServer { _, client in
            do {
                _ = try await client.get(.nodes, namespace: nil, name: "nope")
                XCTFail("expected 404")
            } catch let error as KubeError {
                XCTAssertTrue(error.isNotFound)
                XCTAssertEqual("\(error)", "GET /api/v1/nodes/nope: 404 NotFound: nodes \"nope\" not found")
            }
        }
        // Nothing listens on this port: a transport error naming the request.
        let closed = try KubeClient(
            config: KubeConfig(server: "http://127.0.0.1:9", source: "test"), connectTimeout: .seconds(1))
        do {
            _ = try await closed.get(.nodes, namespace: nil, name: "x")
            XCTFail("expected a transport error")
        } catch {
            guard case .transport(let request, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(request, "GET /api/v1/nodes/x")
            XCTAssertTrue(error.isTransient)
        }
        try await closed.shutdown()
    }

    func testLeasesAndEvents() async throws {
        try await withServer { _, client in
            let spec: JSON = .object(["holderIdentity": "a", "leaseDurationSeconds": .integer(15)])
            let lease = try await client.create(
                .leases, namespace: "wgmesh-system",
                .object([
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": .object(["name": "wgmesh-controller"]), "spec": spec,
                ]))
            XCTAssertEqual(lease.metadata.namespace, "wgmesh-system")
            do {
                _ = try await client.create(.leases, namespace: "wgmesh-system", lease.json)
                XCTFail("expected AlreadyExists")
            } catch let error as KubeError {
                XCTAssertEqual(error.status?.reason, "AlreadyExists")
                XCTAssertEqual(error.status?.message, "leases.coordination.k8s.io \"wgmesh-controller\" already exists")
            }
            var renewed = lease.json
            renewed = APIStore.mergePatch(renewed, .object(["spec": .object(["holderIdentity": "b"])]))
            let updated = try await client.update(.leases, namespace: "wgmesh-system", renewed, subresource: nil)
            XCTAssertEqual(Lease(updated).holderIdentity, "b")
            do {
                _ = try await client.update(.leases, namespace: "wgmesh-system", renewed, subresource: nil)
                XCTFail("the same resourceVersion twice must conflict")
            } catch let error as KubeError {
                XCTAssertTrue(error.isConflict)
            }

            let event: JSON = .object([
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": .object(["generateName": "node-1-"]),
                "eventTime": "2026-11-27T02:30:00.000000Z", "reportingController": "wgmesh.dev/controller",
                "reportingInstance": "controller-a", "action": "Allocate", "reason": "PodCIDRAllocated",
                "type": "Normal",
                "note": "allocated 10.244.1.0/24",
                "regarding": .object(["kind": "Node", "name": "node-1", "apiVersion": "v1"]),
            ])
            let created = try await client.create(.events, namespace: "default", event)
            XCTAssertTrue(created.metadata.name.hasPrefix("node-1-"))
            XCTAssertEqual(created.metadata.name.count, "node-1-".count + 5)
            // As the real server said: a generateName ending in "." is not a valid prefix.
            do {
                _ = try await client.create(
                    .events, namespace: "default",
                    APIStore.mergePatch(event, .object(["metadata": .object(["generateName": "node-1."])])))
                XCTFail("expected 422")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, 422)
                XCTAssertEqual(error.status?.causes.first?.field, "metadata.generateName")
            }
        }
    }
}
