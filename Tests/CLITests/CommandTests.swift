import CLI
import Foundation
import Kube
import KubeTestSupport
import WGMeshCore
import XCTest
import Yams

/// The people's commands against the test API server, the real controller and played agents.
final class CommandTests: XCTestCase {
    // MARK: status

    func testStatusPrintsATableExitsNonZeroWhileANodeIsNotReadyAndItsJSONAndYAMLRoundTrip() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2", "n3"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        let (table, ready) = try await NodeStatusReport.run(cluster.client, format: .table)
        XCTAssertTrue(ready)
        let lines = table.split(separator: "\n")
        XCTAssertEqual(lines.count, 4, table)
        XCTAssertTrue(lines[0].hasPrefix("NAME   READY   PEERS   POD-CIDRS"), table)
        XCTAssertTrue(lines[1].hasPrefix("n1     True    2/2     10.244."), table)

        // A node whose condition says not ready makes the exit status non-zero.
        _ = try await cluster.client.patch(
            .nodes, namespace: nil, name: "n2",
            .condition(
                .object([
                    "type": .string(MeshCondition.type), "status": "False", "reason": "PeersStale",
                    "message":
                        """
                    no handshake in the last 180 s with 1 of 2 peers: n3; check that their \
                    endpoints' UDP port is reachable
                    """,
                ])), subresource: "status")
        let now = Date()
        let (json, stillReady) = try await NodeStatusReport.run(cluster.client, format: .json, now: now)
        XCTAssertFalse(stillReady)
        let decoded = try JSONDecoder().decode(NodeStatusList.self, from: Data(json.utf8))
        let nodes = try await cluster.client.listAll(.nodes).items.map(ObservedNode.init)
        XCTAssertEqual(
            decoded, NodeStatusList(items: NodeStatus.rows(nodes, now: now)),
            "the JSON decodes into the rows it was made from")
        XCTAssertEqual(decoded.items.map(\.name), ["n1", "n2", "n3"])
        XCTAssertEqual(decoded.items[1].ready, "False")
        XCTAssertEqual(decoded.items[1].peersReady, 1)
        XCTAssertEqual(decoded.items[1].peersTotal, 2)
        XCTAssertEqual(decoded.items[0].keyGeneration, 1)
        XCTAssertEqual(decoded.items[0].appliedKeyGeneration, 1)
        XCTAssertEqual(decoded.kind, "NodeStatusList")
        let (yaml, _) = try await NodeStatusReport.run(cluster.client, format: .yaml, now: now)
        XCTAssertEqual(try YAMLDecoder().decode(NodeStatusList.self, from: yaml), decoded, "YAML too")

        let (blue, _) = try await NodeStatusReport.run(cluster.client, format: .wide, labelSelector: "pool=blue")
        XCTAssertEqual(blue.split(separator: "\n").map { String($0.prefix(2)) }, ["NA", "n1", "n3"], blue)
        XCTAssertTrue(blue.contains("UNENCRYPTED"), blue)
        XCTAssertThrowsError(try OutputFormat(flag: "jsn")) {
            XCTAssertTrue("\($0)".contains("-o jsn is not an output format"), "\($0)")
        }
        try await cluster.stop()
    }

    // MARK: rotate-keys

    func testRotateKeysRefusesBadInputNamingItAndChangesNothing() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2"])
        for (nodes, all, selector, message) in [
            ([String](), false, String?.none, "choose the nodes"), (["n1"], true, nil, "--node and --all"),
            ([], true, "pool=blue", "--all and --selector"), ([], false, " ", "--selector is empty"),
        ] {
            XCTAssertThrowsError(try RotateKeys.Selection(nodes: nodes, all: all, selector: selector)) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
        do {
            _ = try await RotateKeys.resolve(cluster.client, .nodes(["n1", "nope", "n9"]))
            XCTFail("an unknown node is refused")
        } catch {
            XCTAssertEqual(
                "\(error)", "no Node named n9, nope (the cluster has n1, n2): check the name with `kubectl get nodes`")
        }
        do {
            _ = try await RotateKeys.resolve(cluster.client, .selector("pool=red"))
            XCTFail("a selector that matches nothing is refused")
        } catch {
            XCTAssertTrue("\(error)".contains("--selector pool=red matches no Node"), "\(error)")
        }
        for name in ["n1", "n2"] {
            let annotations = try await cluster.annotations(name)
            XCTAssertNil(annotations[Annotation.rotateRequest], "nothing written on \(name)")
        }
        let all = try await RotateKeys.resolve(cluster.client, .all)
        XCTAssertEqual(all, ["n1", "n2"])
        let green = try await RotateKeys.resolve(cluster.client, .selector("pool in (green)"))
        XCTAssertEqual(green, ["n2"])
        let named = try await RotateKeys.resolve(cluster.client, .nodes(["n2", "n1", "n2"]))
        XCTAssertEqual(named, ["n1", "n2"])
        try await cluster.stop()
    }

    func testRotateKeysWaitsUntilTheNodeAndEveryPeerRunTheNewKey() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2", "n3"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        let printed = Printed()
        let requests = try await RotateKeys.request(
            cluster.client, nodes: ["n1", "n3"], token: "2026-11-27T10:00:00Z-1", print: printed.callAsFunction)
        XCTAssertEqual(requests, ["n1": "2026-11-27T10:00:00Z-1", "n3": "2026-11-27T10:00:00Z-1"])
        let unfinished = await RotateKeys.wait(
            cluster.client, requests: requests, timeout: .seconds(60), interval: .milliseconds(100),
            print: printed.callAsFunction)
        XCTAssertEqual(unfinished, [:])
        let lines = printed.all
        XCTAssertEqual(lines.count, 4, "\(lines)")
        XCTAssertEqual(lines[0], "n1: rotation requested (wgmesh.dev/rotate-request=2026-11-27T10:00:00Z-1)")
        XCTAssertEqual(Set(lines.suffix(2).map { String($0.prefix(4)) }), ["n1: ", "n3: "])
        for line in lines.suffix(2) {
            XCTAssertTrue(line.contains(": key generation 2 runs on the node and on its 2 peers (after "), line)
        }
        for name in ["n1", "n3"] {
            let a = try await cluster.annotations(name)
            XCTAssertEqual(a[Annotation.keyGeneration], "2")
            XCTAssertEqual(a[Annotation.appliedKeyGeneration], "2")
            XCTAssertEqual(a[Annotation.rotateAnswered], "2026-11-27T10:00:00Z-1")
            let object = try await cluster.client.get(.nodes, namespace: nil, name: name)
            XCTAssertEqual(object.manager(ofAnnotation: Annotation.rotateRequest), cliFieldManager)
        }
        try await cluster.stop()
    }

    func testRotateKeysTimesOutNamingTheNodeWhoseAgentNeverApplies() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2", "n3"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        cluster.stalled.withLock { $0 = ["n2"] }
        let printed = Printed()
        let requests = try await RotateKeys.request(
            cluster.client, nodes: ["n1", "n2"], token: RotateKeys.token(), print: printed.callAsFunction)
        // However slow this machine, the controller has switched both before the wait starts.
        try await eventually("the controller switched n1 and n2") {
            let n1 = try await cluster.annotations("n1")
            let n2 = try await cluster.annotations("n2")
            return n1[Annotation.keyGeneration] == "2" && n2[Annotation.keyGeneration] == "2"
                && n2[Annotation.nextPublicKey] == nil
        }
        let unfinished = await RotateKeys.wait(
            cluster.client, requests: requests, timeout: .seconds(2), interval: .milliseconds(100),
            print: printed.callAsFunction)
        XCTAssertEqual(unfinished, ["n2": .applying(generation: 2, applied: 1)])
        XCTAssertTrue(
            printed.all.contains { $0.hasPrefix("n1: key generation 2 runs on the node and on its 2 peers") },
            "\(printed.all)")
        let error = RotateKeys.unfinished(unfinished, timeout: "2s")
        XCTAssertEqual(
            error.description,
            """
            the rotation did not finish within 2s on 1 node: n2
              n2: its agent does not run key generation 2 yet (wgmesh.dev/applied-key-generation is 1)
            """)
        try await cluster.stop()
    }

    // MARK: audit

    func testAuditPassesAHealthyClusterAndFailsOnAStaleKeyANodeOutsideTheMeshAndAnUnencryptedPacket() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        let target = AuditReport.Cluster(server: cluster.server.url, context: "test")
        func audit(json: Bool = false) async throws -> (String, Bool) {
            try await Audit.run(
                cluster.client, cluster: target, json: json, maxKeyAge: 720 * 3600,
                windowStart: Date().addingTimeInterval(-86400))
        }
        var (text, passed) = try await audit()
        XCTAssertTrue(passed, text)
        XCTAssertTrue(text.contains("- Cluster: \(cluster.server.url) (context test)"), text)
        XCTAssertTrue(text.contains("- Cluster CIDRs: 10.244.0.0/16, fd00:10:244::/48"), text)
        XCTAssertTrue(text.contains("- Strict mode: on"), text)
        XCTAssertNoThrow(try AuditReport.verify(text).get())

        // A stale key.
        await cluster.stopAgents()
        try await cluster.annotate("n2", [Annotation.keyIssuedAt: "2020-01-01T00:00:00Z"])
        (text, passed) = try await audit()
        XCTAssertFalse(passed)
        XCTAssertTrue(
            text.contains("- FAIL: No key older than 720h\n  - n2: key generation 1 issued 2020-01-01T00:00:00Z"), text)

        // A node outside the mesh, and an unencrypted packet counted an hour ago.
        try await cluster.annotate("n2", [Annotation.keyIssuedAt: RFC3339.format(Date())])
        try cluster.server.withStore(.nodes) { _ = try $0.create(.object(["metadata": .object(["name": "n3"])])) }
        try await cluster.annotate(
            "n1",
            [
                Annotation.unencryptedDrops: UnencryptedDrops(
                    packets: 3, counter: 3, last: Date().addingTimeInterval(-3600)
                ).description
            ])
        (text, passed) = try await audit(json: true)
        XCTAssertFalse(passed)
        XCTAssertNoThrow(try AuditReport.verify(text).get())
        let failed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let checks = try XCTUnwrap((failed["report"] as? [String: Any])?["checks"] as? [[String: Any]])
        let failing = checks.filter { $0["passed"] as? Bool == false }.map { $0["name"] as? String ?? "" }
        XCTAssertEqual(failing.count, 3, "\(failing)")
        XCTAssertEqual(failing[0], "Every node encrypts its Pod traffic")
        XCTAssertTrue(failing[2].hasPrefix("No Pod packet dropped for leaving unencrypted since"))
        let details = checks.flatMap { $0["details"] as? [String] ?? [] }
        XCTAssertTrue(details.contains("n3: left out of the mesh: no public key yet"), "\(details)")
        XCTAssertTrue(details.contains { $0.hasPrefix("n1: 3 packets in all, the last at ") }, "\(details)")
        try await cluster.stop()
    }

    // MARK: uninstall

    func testUninstallRefusesWhileAgentsOrTheControllerRemainThenRemovesExactlyWgmeshsState() async throws {
        let cluster = try await CLICluster(nodes: ["n1", "n2"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        await cluster.stopAgents()
        try await cluster.annotate("n1", ["example.com/keep": "yes"])
        _ = try await cluster.client.patch(
            .nodes, namespace: nil, name: "n1",
            .condition(.object(["type": "Ready", "status": "True"])), subresource: "status")
        let printed = Printed()
        func uninstall(force: Bool = false) async throws {
            try await Uninstall.run(
                cluster.client, force: force, leaseNamespace: "wgmesh-system",
                leaseName: "wgmesh-controller", print: printed.callAsFunction)
        }
        let before = cluster.server.withStore(.nodes) { $0.resourceVersion }
        do {
            try await uninstall()
            XCTFail("refused while the agents have not cleaned up")
        } catch {
            XCTAssertTrue(
                "\(error)".contains(
                    "node n1 still has its agent's wgmesh.dev/enrollment-key and condition WireGuardMeshReady"),
                "\(error)")
            XCTAssertTrue("\(error)".contains("kubectl apply -k manifests/cleanup/"), "\(error)")
        }
        XCTAssertEqual(cluster.server.withStore(.nodes) { $0.resourceVersion }, before, "nothing changed")

        // The agents' --cleanup: their annotations and the condition go. The controller still leads.
        cluster.controller.cancel()
        await cluster.controller.value
        for name in ["n1", "n2"] {
            try await cluster.annotate(
                name, Dictionary(uniqueKeysWithValues: Annotation.agentOwned.map { ($0, String?.none) }))
            try await removeCondition(cluster, name)
        }
        let renewed = Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
        _ = try await cluster.client.create(
            .leases, namespace: "wgmesh-system",
            .object([
                "metadata": .object(["name": "wgmesh-controller", "namespace": "wgmesh-system"]),
                "spec": .object([
                    "holderIdentity": "controller-0_abc", "leaseDurationSeconds": .integer(15),
                    "renewTime": .string(renewed),
                ]),
            ]))
        do {
            try await uninstall()
            XCTFail("refused while the controller leads")
        } catch {
            XCTAssertTrue(
                "\(error)".contains(
                    "the controller leads (Lease wgmesh-system/wgmesh-controller held by controller-0_abc"), "\(error)")
        }
        // A released Lease (an empty holder), as the controller leaves it at shutdown.
        _ = try await cluster.client.patch(
            .leases, namespace: "wgmesh-system", name: "wgmesh-controller",
            .merge(
                .object([
                    "spec": .object(["holderIdentity": ""])
                ])), subresource: nil)
        try await uninstall()
        XCTAssertEqual(printed.all.count, 3, "\(printed.all)")
        XCTAssertTrue(
            printed.all[0].hasPrefix("n1: removed wgmesh.dev/endpoint, wgmesh.dev/key-generation"), printed.all[0])
        XCTAssertEqual(printed.all[2], "wgmesh removed from 2 nodes")
        for object in try await cluster.client.listAll(.nodes).items {
            XCTAssertEqual(
                object.metadata.annotations.keys.filter { $0.hasPrefix("wgmesh.dev/") }, [], object.metadata.name)
            XCTAssertFalse(Node(object).conditions.contains { $0.type == MeshCondition.type })
        }
        let n1 = try await cluster.client.get(.nodes, namespace: nil, name: "n1")
        XCTAssertEqual(n1.metadata.annotations["example.com/keep"], "yes", "only wgmesh's")
        XCTAssertEqual(Node(n1).conditions.map(\.type), ["Ready"], "only wgmesh's condition")
        try await uninstall()
        XCTAssertEqual(
            printed.all.last,
            "nothing to remove: no Node has a wgmesh.dev/ annotation or the WireGuardMeshReady condition")
        try await cluster.stop()
    }

    func testUninstallForceRemovesTheConditionToo() async throws {
        let cluster = try await CLICluster(nodes: ["n1"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        await cluster.stopAgents()
        let printed = Printed()
        try await Uninstall.run(
            cluster.client, force: true, leaseNamespace: "wgmesh-system", leaseName: "wgmesh-controller",
            print: printed.callAsFunction)
        XCTAssertTrue(
            printed.all[0].hasSuffix("wgmesh.dev/unencrypted-drops, condition WireGuardMeshReady"), printed.all[0])
        try await cluster.stop()
    }

    func removeCondition(_ cluster: CLICluster, _ name: String) async throws {
        let conditions =
            try await cluster.client.get(.nodes, namespace: nil, name: name).json["status"]?["conditions"]?.array ?? []
        guard let index = conditions.firstIndex(where: { $0["type"]?.string == MeshCondition.type }) else { return }
        _ = try await cluster.client.patch(
            .nodes, namespace: nil, name: name,
            .json([.object(["op": "remove", "path": .string("/status/conditions/\(index)")])]),
            subresource: "status")
    }
}
