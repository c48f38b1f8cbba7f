import Foundation
import Kube
import KubeTestSupport
import XCTest

final class ClientMessagesTests: XCTestCase {
    func testTransportFailuresAndDurationsReadAsAnOperatorExpects() async throws {
        let server = try await TestAPIServer.start()
        let config = server.kubeConfig()
        try await server.stop()
        let client = try KubeClient(config: config)
        do {
            _ = try await client.get(.nodes, namespace: nil, name: "a")
            XCTFail("nothing listens there")
        } catch {
            let text = "\(error)"
            XCTAssertTrue(text.contains("connection refused"), text)
            XCTAssertTrue(text.contains(config.server), "names the server: \(text)")
            XCTAssertFalse(text.contains("error set") || text.contains("connection reset"), text)
        }
        let cancelled = Task { () -> KubeError? in
            try? await Task.sleep(for: .seconds(10))
            do throws(KubeError) { _ = try await client.get(.nodes, namespace: nil, name: "a") } catch { return error }
            return nil
        }
        cancelled.cancel()
        let error = await cancelled.value
        XCTAssertEqual(
            error?.isCancelled, true,
            "a cancelled request is a cancellation, not a failure: \(String(describing: error))")
        try await client.shutdown()
        XCTAssertEqual("\(Seconds(0.8473910076178423))", "0.85s")
        XCTAssertEqual("\(Seconds(.milliseconds(12_400)))", "12s")
    }

    func testTheServerRecordsWhichFieldManagerWroteEachAnnotation() async throws {
        try await withServer { server, client in
            try server.createNodes(["n"])
            let controller = try KubeClient(config: server.kubeConfig(), userAgent: "wgmesh-controller/replica-1")
            let kubectl = try KubeClient(config: server.kubeConfig(), fieldManager: "kubectl-annotate")
            func annotate(_ c: KubeClient, _ key: String, _ value: String) async throws -> KubeObject {
                try await c.patch(
                    .nodes, namespace: nil, name: "n",
                    .merge(.object(["metadata": .object(["annotations": .object([key: .string(value)])])])))
            }
            var n = try await annotate(controller, "wgmesh.dev/pod-cidrs", "10.244.0.0/24")
            XCTAssertEqual(
                n.manager(ofAnnotation: "wgmesh.dev/pod-cidrs"), "wgmesh-controller", "the User-Agent up to its first /"
            )
            n = try await annotate(kubectl, "wgmesh.dev/endpoint", "192.0.2.1:51820")
            XCTAssertEqual(
                n.manager(ofAnnotation: "wgmesh.dev/pod-cidrs"), "wgmesh-controller",
                "an untouched field keeps its manager")
            XCTAssertEqual(
                n.manager(ofAnnotation: "wgmesh.dev/endpoint"), "kubectl-annotate", "the fieldManager parameter")
            n = try await annotate(kubectl, "wgmesh.dev/pod-cidrs", "10.244.9.0/24")
            XCTAssertEqual(
                n.manager(ofAnnotation: "wgmesh.dev/pod-cidrs"), "kubectl-annotate",
                "a changed field moves to its writer")
            let entries = n.json["metadata"]?["managedFields"]?.array ?? []
            XCTAssertEqual(
                entries.compactMap { $0["manager"]?.string }, ["kubectl-annotate"],
                "an entry left with no field is dropped")
            XCTAssertEqual(entries.first?["operation"]?.string, "Update")
            try await controller.shutdown()
            try await kubectl.shutdown()
        }
    }
}
