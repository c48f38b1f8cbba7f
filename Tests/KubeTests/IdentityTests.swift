import Kube
import KubeTestSupport
import Synchronization
import XCTest

/// The test server knows who sends each request (bearer tokens mapped to users) and records every accepted
/// Node write as admission would see it, so that the scenarios' writes can be replayed through the policies.
final class IdentityTests: XCTestCase {
    func testNodeWritesAreRecordedWithTheirSendersAsAdmissionRequests() async throws {
        let records = Mutex<[JSON]>([])
        let options = TestAPIServer.Options(
            token: "s3cret", identities: ["agent-n1": .agent(node: "n1"), "controller": .controller],
            recordNodeWrite: { r in records.withLock { $0.append(r) } })
        try await withServer(options) { server, admin in
            func client(_ token: String) throws -> KubeClient {
                try KubeClient(
                    config: KubeConfig(server: server.url, credentials: .token(token), source: "test"),
                    userAgent: "wgmesh-test")
            }
            let agent = try client("agent-n1")
            let controller = try client("controller")
            let stranger = try client("guess")
            _ = try await admin.create(.nodes, namespace: nil, node("n1"))
            _ = try await agent.patch(
                .nodes, namespace: nil, name: "n1",
                .merge(
                    .object([
                        "metadata": .object([
                            "annotations": .object([
                                "wgmesh.dev/enrollment-key": "e1", "wgmesh.dev/strict": "true",
                            ])
                        ])
                    ])), subresource: nil)
            _ = try await agent.patch(
                .nodes, namespace: nil, name: "n1",
                .strategicMerge(
                    .object([
                        "status": .object([
                            "conditions": .array([
                                .object(["type": "WireGuardMeshReady", "status": "True"])
                            ])
                        ])
                    ])), subresource: "status")
            _ = try await controller.patch(
                .nodes, namespace: nil, name: "n1",
                .merge(
                    .object([
                        "metadata": .object([
                            "annotations": .object([
                                "wgmesh.dev/pod-cidrs": "10.244.1.0/24"
                            ])
                        ])
                    ])), subresource: nil)
            // Refused writes and other resources are not recorded; neither are reads.
            do {
                _ = try await controller.patch(
                    .nodes, namespace: nil, name: "n1",
                    Patch.merge(
                        .object([
                            "metadata": .object([
                                "annotations": .object([
                                    "wgmesh.dev/pod-cidrs": "10.244.2.0/24"
                                ])
                            ])
                        ])
                    ).precondition(resourceVersion: "1"), subresource: nil)
                XCTFail("a stale precondition was accepted")
            } catch let error as KubeError {
                XCTAssertTrue(error.isConflict, "\(error)")
            }
            _ = try await controller.create(
                .leases, namespace: "default", .object(["metadata": .object(["name": "l"]), "spec": .object([:])]))
            _ = try await agent.get(.nodes, namespace: nil, name: "n1")
            try await admin.delete(.nodes, namespace: nil, name: "n1")
            // An unknown token is refused when the server requires one.
            do {
                _ = try await stranger.list(.nodes, namespace: nil, options: ListOptions())
                XCTFail("an unknown token was accepted")
            } catch let error as KubeError {
                XCTAssertEqual(error.code, 401, "\(error)")
            }
            for c in [agent, controller, stranger] { try await c.shutdown() }
        }
        let r = records.withLock { $0 }
        XCTAssertEqual(r.map { $0["operation"]?.string ?? "" }, ["CREATE", "UPDATE", "UPDATE", "UPDATE", "DELETE"])
        XCTAssertEqual(
            r.map { $0["userInfo"]?["username"]?.string ?? "" },
            [
                "test-client", "system:serviceaccount:wgmesh-system:wgmesh-agent",
                "system:serviceaccount:wgmesh-system:wgmesh-agent",
                "system:serviceaccount:wgmesh-system:wgmesh-controller", "test-client",
            ])
        XCTAssertEqual(r.map { $0["subResource"]?.string ?? "?" }, ["", "", "status", "", ""])
        XCTAssertEqual(r.map { $0["name"]?.string ?? "" }, ["n1", "n1", "n1", "n1", "n1"])
        XCTAssertEqual(r[1]["userInfo"]?["extra"]?["authentication.kubernetes.io/node-name"], .array(["n1"]))
        XCTAssertNil(
            r[3]["userInfo"]?["extra"]?["authentication.kubernetes.io/node-name"],
            "the controller's Pod runs on no node of its token")
        XCTAssertEqual(r[0]["oldObject"], .null)
        XCTAssertNil(r[1]["oldObject"]?["metadata"]?["annotations"]?["wgmesh.dev/enrollment-key"])
        XCTAssertEqual(r[1]["object"]?["metadata"]?["annotations"]?["wgmesh.dev/enrollment-key"], "e1")
        XCTAssertEqual(r[2]["object"]?["status"]?["conditions"]?.array?.first?["type"], "WireGuardMeshReady")
        XCTAssertEqual(r[3]["oldObject"]?["metadata"]?["annotations"]?["wgmesh.dev/strict"], "true")
        XCTAssertEqual(r[3]["object"]?["metadata"]?["annotations"]?["wgmesh.dev/pod-cidrs"], "10.244.1.0/24")
        XCTAssertEqual(r[4]["object"], .null)
        XCTAssertEqual(r[4]["oldObject"]?["metadata"]?["annotations"]?["wgmesh.dev/pod-cidrs"], "10.244.1.0/24")
    }

    func testARequestWithoutCredentialsIsAnonymousOnAnOpenServer() async throws {
        let records = Mutex<[JSON]>([])
        try await withServer(
            .init(identities: ["admin": .admin], recordNodeWrite: { r in records.withLock { $0.append(r) } })
        ) { server, anonymous in
            _ = try await anonymous.create(.nodes, namespace: nil, node("n1"))
            let admin = try KubeClient(
                config: KubeConfig(server: server.url, credentials: .token("admin"), source: "test"), userAgent: "t")
            _ = try await admin.patch(
                .nodes, namespace: nil, name: "n1",
                .merge(.object(["metadata": .object(["labels": .object(["a": "b"])])])),
                subresource: nil)
            try await admin.shutdown()
        }
        XCTAssertEqual(
            records.withLock { $0.map { $0["userInfo"]?["username"]?.string ?? "" } },
            ["system:anonymous", "kubernetes-admin"])
    }
}
