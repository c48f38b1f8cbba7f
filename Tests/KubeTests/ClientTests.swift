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

    func testMutualTLSWithAClientCertificate() async throws {
        try await withServer(.init(tls: true, token: "only-for-token-clients"), clientCertificate: true) {
            server, client in
            try server.createNodes(["n"])
            let list = try await client.listAll(.nodes)
            XCTAssertEqual(list.items.count, 1)
        }
        // Without certificate or token the server says 401.
        let server = try await TestAPIServer.start(.init(tls: true, token: "t"))
        var config = server.kubeConfig()
        config.credentials = .none
        let anonymous = try KubeClient(config: config)
        do {
            _ = try await anonymous.get(.nodes, namespace: nil, name: "x")
            XCTFail("anonymous request must fail")
        } catch {
            XCTAssertEqual(error.code, 401)
        }
        // A client that does not trust the server's CA fails the TLS handshake.
        config.certificateAuthorityPEM = nil
        config.credentials = .token("t")
        // (async-http-client retries a failed connection until the connect timeout.)
        let untrusting = try KubeClient(config: config, connectTimeout: .seconds(1))
        do {
            _ = try await untrusting.get(.nodes, namespace: nil, name: "x")
            XCTFail("an untrusted server certificate must be refused")
        } catch {
            guard case .transport = error else { return XCTFail("\(error)") }
        }
        try await anonymous.shutdown()
        try await untrusting.shutdown()
        try await server.stop()
    }

    func testTLSServerNameIsSentAndVerifiedInsteadOfTheAddress() async throws {
        // The certificate names kubernetes.default.svc and carries no address, as many clusters' do.
        let server = try await TestAPIServer.start(.init(tls: true, nameOnlyCertificate: true, token: "t"))
        try server.createNodes(["n"])
        func get(_ name: String?) async -> KubeError? {
            var config = server.kubeConfig()
            config.tlsServerName = name
            guard let client = try? KubeClient(config: config, connectTimeout: .seconds(1)) else { return nil }
            defer { Task { try? await client.shutdown() } }
            do {
                _ = try await client.get(.nodes, namespace: nil, name: "n")
                return nil
            } catch {
                return error
            }
        }
        let named = await get("kubernetes.default.svc")
        XCTAssertNil(named, "connected to 127.0.0.1 and verified the certificate for the name")
        for name in [nil, "not-in-the-certificate.example"] {
            let refused = await get(name)
            guard case .transport? = refused else {
                return XCTFail("\(name ?? "the address"): expected a TLS failure, got \(String(describing: refused))")
            }
        }
        try await server.stop()
    }

    func testBadTLSMaterialIsRefusedNamingTheField() throws {
        var config = KubeConfig(
            server: "https://127.0.0.1:1", certificateAuthorityPEM: Array("not a pem".utf8), source: "/tmp/kc")
        XCTAssertThrowsError(try KubeClient(config: config)) { error in
            XCTAssertTrue("\(error)".contains("/tmp/kc: certificate-authority is not a PEM"), "\(error)")
        }
        config.certificateAuthorityPEM = nil
        config.credentials = .clientCertificate(
            certificatePEM: Array(TestCertificates.clientCertificate.utf8), keyPEM: Array("garbage".utf8))
        XCTAssertThrowsError(try KubeClient(config: config)) { error in
            XCTAssertTrue("\(error)".contains("client-key is not a PEM private key"), "\(error)")
        }
    }

    func testARotatedTokenFileIsReadAgainAfterA401() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("wgmesh-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let tokenPath = folder.appendingPathComponent("token").path
        try "first\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
        let server = try await TestAPIServer.start(.init(tls: true, token: "first"))
        var config = server.kubeConfig()
        config.credentials = .tokenFile(try TokenFile(path: tokenPath))
        let client = try KubeClient(config: config)
        try server.createNodes(["n"])
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        // The kubelet rotates the projected token; the server accepts only the new one.
        try "second\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
        server.setToken("second")
        let n = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n", "a 401 made the client read the token file again")
        try await client.shutdown()
        try await server.stop()
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
