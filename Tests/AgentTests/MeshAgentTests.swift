import Agent
import Controller
import Foundation
import Kube
import KubeTestSupport
import Logging
import Synchronization
import TestSupport
import WGMeshCore
import XCTest

/// The agent against the test API server and the real controller, with the kernel in memory: what it
/// writes to the API, what it asks of the kernel, and what it refuses. The kernel itself is exercised
/// by scripts/e2e-agent.sh in the VM.
final class MeshAgentTests: XCTestCase {
    let clusterCIDRs = [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")]

    struct Harness {
        let server: TestAPIServer
        let client: KubeClient
        let agentClient: KubeClient
        let kernel = FakeKernel()
        let state = temporaryDirectory()
        let logs = LogCapture()

        func node(_ name: String) async throws -> KubeObject {
            try await client.get(.nodes, namespace: nil, name: name)
        }
        func annotation(_ name: String, _ key: String) async -> String? {
            try? await node(name).metadata.annotations[key]
        }
    }

    func harness(nodes: [String]) async throws -> Harness {
        let server = try await TestAPIServer.start(.init(bookmarkInterval: .milliseconds(500)))
        let h = Harness(
            server: server, client: try KubeClient(config: server.kubeConfig()),
            agentClient: try KubeClient(
                config: server.kubeConfig(), userAgent: "wgmesh-agent/test", fieldManager: MeshAgent.fieldManager))
        try server.withStore(.nodes) { store in
            for (i, name) in nodes.enumerated() {
                _ = try store.create(
                    .object([
                        "apiVersion": "v1", "kind": "Node", "metadata": .object(["name": .string(name)]),
                        "status": .object([
                            "addresses": .array([
                                .object(["type": "InternalIP", "address": .string("192.0.2.\(i + 1)")])
                            ])
                        ]),
                    ]))
            }
        }
        return h
    }

    func agent(
        _ h: Harness, node: String = "n1", coalesce: Duration = .milliseconds(100), resync: Duration = .seconds(2),
        kernel: FakeKernel? = nil, peerCIDRs: [IPPrefix] = []
    ) -> MeshAgent {
        // Another node's agent (a kernel of its own) keeps its files apart.
        let own = kernel == nil ? "" : "-" + node
        return MeshAgent(
            api: h.agentClient, kernel: (kernel ?? h.kernel).kernel,
            configuration: .init(
                nodeName: node, stateDirectory: h.state + "/state" + own, cniConfDirectory: h.state + "/cni" + own,
                clusterCIDRs: clusterCIDRs,
                resyncPeriod: resync, coalescePeriod: coalesce, peerCIDRs: peerCIDRs), logger: h.logs.logger("agent"))
    }

    func controller(_ h: Harness, rotationGrace: TimeInterval = 10, peerCIDRs: [IPPrefix] = []) throws -> Task<
        Void, Never
    > {
        let c = try MeshController(
            api: h.client,
            configuration: .init(
                clusterCIDRs: clusterCIDRs,
                policy: .init(
                    cidrSource: .wgmesh, rotation: .init(grace: rotationGrace), specWait: 0),
                identity: "test", peerCIDRs: peerCIDRs),
            logger: Logger(label: "controller") { _ in SwiftLogNoOpLogHandler() })
        return Task { await c.run() }
    }

    /// Plays the other nodes' agents: publishes an enrollment key for each.
    func enrol(_ h: Harness, _ names: [String]) async throws {
        for name in names {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: name,
                .annotations([Annotation.enrollmentKey: WireGuardKeyPair.generate().publicKey.base64]))
        }
    }

    func stop(_ h: Harness, _ tasks: Task<Void, Never>...) async throws {
        for t in tasks {
            t.cancel()
            await t.value
        }
        try await h.client.shutdown()
        try await h.agentClient.shutdown()
        try await h.server.stop()
        try? FileManager.default.removeItem(atPath: h.state)
    }

    /// Node events start passes only when a plan can change, so the agent asks for the passes no event
    /// brings: right after a key switch (whose forced handshakes left keepalives off the plan), and
    /// after a failure, backed off, with no resync needed.
    func testAKeySwitchAndAFailureAreFollowedByAPassWithoutAnEvent() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        let agent = MeshAgent(
            api: h.agentClient, kernel: h.kernel.kernel,
            configuration: .init(
                nodeName: "n1", stateDirectory: h.state + "/state", cniConfDirectory: h.state + "/cni",
                clusterCIDRs: clusterCIDRs,
                persistentKeepalive: 0, resyncPeriod: .seconds(3600)), logger: h.logs.logger("agent"))
        let run = Task { _ = try? await agent.run() }
        await eventually("n1 switched to its key and runs n2 with keepalives off, as planned") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
                && h.kernel.locked {
                    h.kernel.model.state.peers.count == 1
                        && h.kernel.model.state.peers.allSatisfy { $0.persistentKeepalive == 0 }
                }
        }

        h.kernel.locked { h.kernel.failingConfigures = 1 }
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .annotations([Annotation.endpointOverride: "198.51.100.2:51821"]))
        await eventually("the refused change is retried with no other event") {
            h.kernel.locked {
                h.kernel.failingConfigures == 0
                    && h.kernel.model.state.peers.first?.endpoint?.description == "198.51.100.2:51821"
            }
        }
        try await stop(h, run, controller)
    }

    /// A Node event starts a pass only when it can change a plan: not an agent's report, not status.
    func testOnlyEventsThatCanChangeAPlanStartAPass() throws {
        func node(rv: String, uid: String = "u1", _ annotations: [String: String]) throws -> KubeObject {
            try KubeObject(
                json: .object([
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": .object([
                        "name": "n2", "uid": .string(uid), "resourceVersion": .string(rv),
                        "annotations": .object(annotations.mapValues(JSON.string)),
                    ]),
                ]))
        }
        let base = [Annotation.publicKey: "k1", Annotation.podCIDRs: "10.244.2.0/24"]
        let old = try node(rv: "1", base)
        func passes(_ new: KubeObject, on agentNode: String = "n1") -> Bool {
            MeshAgent.mayChangePlan(.updated(old: old, new: new), node: agentNode)
        }
        XCTAssertFalse(passes(try node(rv: "2", base)), "status or another owner's field: same annotations")
        XCTAssertFalse(
            passes(
                try node(
                    rv: "2",
                    base.merging([
                        Annotation.appliedPeers: "sha256:aa", Annotation.unencryptedDrops: "packets=1,counter=1",
                    ]) { a, _ in a })),
            "an agent's report")
        XCTAssertTrue(passes(try node(rv: "2", base.merging([Annotation.publicKey: "k2"]) { _, b in b })), "a new key")
        XCTAssertTrue(
            passes(try node(rv: "2", base.merging([Annotation.endpointOverride: "192.0.2.9:51820"]) { a, _ in a })),
            "an override")
        XCTAssertTrue(passes(try node(rv: "2", uid: "u2", base)), "deleted and created again under the same name")
        XCTAssertTrue(
            passes(
                try node(rv: "2", base.merging([Annotation.enrollmentKey: "removed-or-changed"]) { a, _ in a }),
                on: "n2"),
            "its own Node's report, changed by someone else, to the agent on that node (it writes it again)")
        XCTAssertFalse(
            passes(try node(rv: "2", base.merging([Annotation.enrollmentKey: "removed-or-changed"]) { a, _ in a })),
            "another node's report, to every other agent")
        XCTAssertTrue(MeshAgent.mayChangePlan(.added(old), node: "n1"))
        XCTAssertTrue(MeshAgent.mayChangePlan(.deleted(old), node: "n1"))
    }

    /// Every agent watches every Node, so `applied-peers` must not be written on every join (each write
    /// is a pass on every node): a join waits for the resync period, a peer moved to a new key does not.
    func testAppliedPeersIsWrittenAtOnceForAKeyMoveButNotForAJoin() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h, rotationGrace: 0.2)
        try await enrol(h, ["n2"])
        let agent = agent(h, resync: .seconds(3600))
        let run = Task { _ = try? await agent.run() }
        await eventually("n1 routes to n2") {
            await h.annotation("n1", Annotation.appliedPeers) != nil
                && (try? h.kernel.device(named: "wgmesh0").peers.count) == 1
        }
        let one = await h.annotation("n1", Annotation.appliedPeers)

        try await enrol(h, ["n3"])
        await eventually("n1 routes to n3 too") {
            (try? h.kernel.device(named: "wgmesh0").peers.filter { !$0.allowedIPs.isEmpty }.count) == 2
        }
        try await Task.sleep(for: .milliseconds(500))  // several coalesce periods: a write would have come
        let afterJoin = await h.annotation("n1", Annotation.appliedPeers)
        XCTAssertEqual(afterJoin, one, "a join is published with the next resync, not at once")

        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .annotations([Annotation.rotateRequest: "t1"]))
        await eventually("n1's applied-peers names n2's new key (and n3) at once") {
            guard let n2 = try? await h.node("n2"), n2.metadata.annotations[Annotation.keyGeneration] == "2",
                let key = n2.metadata.annotations[Annotation.publicKey].flatMap({ try? WireGuardKey(base64: $0) }),
                let n3 = try? await h.node("n3"),
                let key3 = n3.metadata.annotations[Annotation.publicKey].flatMap({ try? WireGuardKey(base64: $0) })
            else { return false }
            return await h.annotation("n1", Annotation.appliedPeers) == AppliedPeers.digest([key, key3])
        }
        try await stop(h, run, controller)
    }

    func testTheAgentEnrolsConfiguresTheKernelAndReportsWhatItRuns() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3"])
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("two peers in the kernel") { (try? h.kernel.device(named: "wgmesh0").peers.count) == 2 }
        await eventually("the applied key generation is published") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
        }

        // Enrollment: a 0600 file whose public half is the annotation; the sealed key opened with it runs the
        // interface.
        let file = h.state + "/state/enrollment.key"
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int)
        XCTAssertEqual(mode, 0o600)
        let stored = try WireGuardKeyPair(
            privateKey: WireGuardKey(
                base64: String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let published = await h.annotation("n1", Annotation.enrollmentKey)
        XCTAssertEqual(published, stored.publicKey.base64)
        let device = try h.kernel.device(named: "wgmesh0")
        let issued = await h.annotation("n1", Annotation.publicKey)
        XCTAssertEqual(device.publicKey?.base64, issued, "the interface runs the issued key")

        // Interface, routes, firewall and CNI.
        let n1 = try MeshNode(name: "n1", annotations: try await h.node("n1").metadata.annotations)
        let link = try XCTUnwrap(h.kernel.links["wgmesh0"])
        XCTAssertTrue(link.isUp)
        XCTAssertEqual(link.mtu, 1420, "eth0's 1500 less 80")
        XCTAssertEqual(
            try h.kernel.addresses(ofLinkIndex: link.index), TunnelAddressing.addresses(podCIDRs: n1.podCIDRs))
        let routes = try h.kernel.routes(family: nil).map(\.destination.description)
        for cidr in clusterCIDRs { XCTAssertTrue(routes.contains(cidr.description), "strict route \(cidr)") }
        XCTAssertEqual(routes.count, 2 + 4, "the cluster CIDRs and both other nodes' two CIDRs")
        XCTAssertEqual(
            h.kernel.ruleset,
            FirewallRuleset.ruleset(
                interface: "wgmesh0", localPodCIDRs: n1.podCIDRs, clusterCIDRs: clusterCIDRs, strict: true))
        let cni = try String(contentsOfFile: h.state + "/cni/10-wgmesh.conflist", encoding: .utf8)
        XCTAssertEqual(cni, CNIConfig.conflist(podCIDRs: n1.podCIDRs, mtu: 1420))

        // The condition, through the status subresource, not ready until the peers handshake.
        await eventually("the condition is written") {
            (try? await Node(h.node("n1")).conditions.first { $0.type == MeshCondition.type }) != nil
        }
        let condition = try await Node(h.node("n1")).conditions.first { $0.type == MeshCondition.type }
        XCTAssertEqual(condition?.status, "False")
        XCTAssertEqual(
            condition?.reason, "PeersConnecting", "a peer configured a moment ago has had no time for a handshake yet")
        let logs = h.logs.lines.withLock { $0.joined(separator: "\n") }
        XCTAssertFalse(logs.contains(stored.privateKey.base64), "the enrollment private key never reaches a log line")
        XCTAssertFalse(logs.contains(try XCTUnwrap(device.privateKey).base64), "nor the node's private key")
        try await stop(h, run, controller)
    }

    func testARestartAdoptsTheInterfaceAndABurstOfChangesCoalesces() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3"])
        let first = agent(h)
        var run = Task { _ = try? await first.run() }
        await eventually("applied") { await h.annotation("n1", Annotation.appliedKeyGeneration) == "1" }
        run.cancel()
        await run.value
        let configured = h.kernel.configureCalls
        let key = try h.kernel.device(named: "wgmesh0").privateKey

        let second = agent(h)
        run = Task { _ = try? await second.run() }
        await eventually("the restarted agent has run a pass") { second.passes > 0 }
        XCTAssertEqual(
            h.kernel.configureCalls, configured, "a restart changes nothing in a kernel that is already right")
        XCTAssertEqual(try h.kernel.device(named: "wgmesh0").privateKey, key, "no key reset")

        let before = second.passes
        let started = ContinuousClock.now
        for i in 0..<1000 {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: i % 2 == 0 ? "n2" : "n3",
                .annotations(["example.com/churn": String(i)]))
        }
        try await Task.sleep(for: .milliseconds(500))
        let elapsed = ContinuousClock.now - started
        let passes = second.passes - before
        // At most one pass per coalescing period while the burst lasts, and never one per event.
        XCTAssertLessThanOrEqual(
            passes, Int(elapsed / .milliseconds(100)) + 3, "\(passes) passes for 1000 events in \(elapsed)")
        XCTAssertLessThan(passes, 100, "1000 events, \(passes) passes")
        try await stop(h, run, controller)
    }
}

/// Fails the test unless `condition` holds within `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(30), file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    if try await !poll(timeout: timeout, interval: .milliseconds(50), condition) {
        XCTFail("timed out waiting until \(what)", file: file, line: line)
    }
}
