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
        _ h: Harness, node: String = "n1", coalesce: Duration = .milliseconds(100), resync: Duration = .seconds(2)
    ) -> MeshAgent {
        MeshAgent(
            api: h.agentClient, kernel: h.kernel.kernel,
            configuration: .init(
                nodeName: node, stateDirectory: h.state + "/state", cniConfDirectory: h.state + "/cni",
                clusterCIDRs: clusterCIDRs,
                resyncPeriod: resync, coalescePeriod: coalesce), logger: h.logs.logger("agent"))
    }

    func controller(_ h: Harness, rotationGrace: TimeInterval = 10) throws -> Task<Void, Never> {
        let c = try MeshController(
            api: h.client,
            configuration: .init(
                clusterCIDRs: clusterCIDRs,
                policy: .init(
                    cidrSource: .wgmesh, rotation: .init(grace: rotationGrace), specWait: 0),
                identity: "test"), logger: Logger(label: "controller") { _ in SwiftLogNoOpLogHandler() })
        return Task { await c.run() }
    }

    /// Plays the other nodes' agents: publishes an enrollment key for each.
    func enrol(_ h: Harness, _ names: [String]) async throws {
        for name in names {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: name,
                .merge(
                    .object([
                        "metadata": .object([
                            "annotations": .object([
                                Annotation.enrollmentKey: .string(WireGuardKeyPair.generate().publicKey.base64)
                            ])
                        ])
                    ])))
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
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.endpointOverride: "198.51.100.2:51821"
                        ])
                    ])
                ])))
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
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.rotateRequest: "t1"
                        ])
                    ])
                ])))
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

        // Enrollment: a 0600 file whose public half is the annotation; the sealed key opened with it runs the interface.
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
                .merge(
                    .object([
                        "metadata": .object([
                            "annotations": .object(["example.com/churn": .string(String(i))])
                        ])
                    ])))
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

    /// --external-wireguard-go: until the other process's device answers, the agent makes nothing (no interface,
    /// no route), says why in /readyz and the log, and runs no pass; then it goes on as usual.
    func testAnInterfaceOfAnotherProcessIsWaitedForNotReadyAndNothingMade() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        h.kernel.locked {
            h.kernel.unavailableReason = "no wireguard-go answers on /var/run/wireguard/wgmesh0.sock yet"
        }
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("not ready, saying why") {
            agent.readiness?.hasPrefix("DeviceUnavailable: no wireguard-go answers") == true
        }
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(agent.passes, 0)
        XCTAssertTrue(h.kernel.locked { h.kernel.links.isEmpty }, "no interface made")
        XCTAssertTrue(try h.kernel.routes(family: nil).isEmpty, "no route")
        XCTAssertTrue(h.logs.lines.withLock { $0.contains { $0.contains("waiting for the WireGuard device") } })

        h.kernel.locked { h.kernel.unavailableReason = nil }
        await eventually("applied once the device answers") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
        }
        XCTAssertNotNil(h.kernel.locked { h.kernel.links["wgmesh0"] })
        XCTAssertTrue(h.logs.lines.withLock { $0.contains { $0.contains("the WireGuard device answers") } })
        try await stop(h, run, controller)
    }

    func testANodeEventIsOneKernelCallAndAFullPassRepairsDrift() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3"])
        let agent = agent(h, resync: .seconds(3600))
        let (wakeups, wake) = AsyncStream<Void>.makeStream()
        let run = Task { _ = try? await agent.run(wakeups: wakeups) }
        await eventually("applied, with both peers") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
                && h.kernel.locked { h.kernel.model.state.peers.count } == 2
        }
        // Both peers handshake: once a full pass has seen it, no pass looks again for peers still connecting.
        let handshake = Int64(Date().timeIntervalSince1970)
        h.kernel.locked {
            for i in h.kernel.model.state.peers.indices { h.kernel.model.state.peers[i].lastHandshake = (handshake, 0) }
        }
        await eventually("the condition says every peer is connected") {
            await self.condition(h)?.reason == "AllPeersConnected"
        }
        try await Task.sleep(for: .milliseconds(500))

        // One peer's endpoint moves: the new plan is diffed against the last one, nothing is read.
        let before = h.kernel.locked { h.kernel.calls.count }
        let n2Text = await h.annotation("n2", Annotation.publicKey)
        let n2Key = try WireGuardKey(base64: XCTUnwrap(n2Text))
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.endpointOverride: "198.51.100.2:51821"
                        ])
                    ])
                ])))
        await eventually("the kernel has the new endpoint") {
            h.kernel.locked { h.kernel.model.state.peers.first { $0.publicKey == n2Key }?.endpoint?.description }
                == "198.51.100.2:51821"
        }
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(
            h.kernel.locked { Array(h.kernel.calls[before...]) }, ["configure"], "one change, one call, no read")

        // Drift by hand is not seen by Node events; a full pass (the resync, or SIGHUP's wakeup) reads and repairs it.
        h.kernel.locked { h.kernel.model.state.peers.removeAll { $0.publicKey == n2Key } }
        wake.yield()
        await eventually("the full pass put the peer back") {
            h.kernel.locked { h.kernel.model.state.peers.contains { $0.publicKey == n2Key } }
        }
        let after = h.kernel.locked { h.kernel.calls }
        XCTAssertTrue(
            after[before...].contains("device") && after[before...].contains("routes"), "the full pass read the kernel")
        try await stop(h, run, controller)
    }

    func testASealedKeyThatDoesNotOpenChangesNothingAndIsReported() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("applied") { await h.annotation("n1", Annotation.appliedKeyGeneration) == "1" }
        controller.cancel()
        await controller.value
        let key = try h.kernel.device(named: "wgmesh0").privateKey
        let calls = h.kernel.configureCalls
        // Someone puts n2's sealed key on n1: it does not open with n1's enrollment key.
        let sealed = await h.annotation("n2", Annotation.sealedPrivateKey)
        let foreign = try XCTUnwrap(sealed)
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.sealedPrivateKey: .string(foreign)
                        ])
                    ])
                ])))
        await eventually("a Warning Event on n1") {
            (try? await h.client.listAll(.events, namespace: "default").items.contains {
                $0.json["reason"]?.string == "SealedKeyInvalid" && $0.json["regarding"]?["name"]?.string == "n1"
                    && $0.json["type"]?.string == "Warning"
            }) ?? false
        }
        try await Task.sleep(for: .seconds(2.5))  // a resync passes too
        XCTAssertEqual(try h.kernel.device(named: "wgmesh0").privateKey, key, "the interface keeps its key")
        XCTAssertEqual(h.kernel.configureCalls, calls, "nothing was sent to the interface")
        try await stop(h, run)
    }

    /// The Warning Events about `node` with `reason`.
    func events(_ h: Harness, reason: String, about node: String) async -> [KubeObject] {
        ((try? await h.client.listAll(.events, namespace: "default").items) ?? []).filter {
            $0.json["reason"]?.string == reason && $0.json["regarding"]?["name"]?.string == node
                && $0.json["type"]?.string == "Warning"
        }
    }

    func condition(_ h: Harness, _ node: String = "n1") async -> Node.Condition? {
        try? await Node(h.node(node)).conditions.first { $0.type == MeshCondition.type }
    }

    /// Issue 20, defect 4: another program's route to a peer's Pod CIDR (a stale `cni0` of an earlier install)
    /// made every pass fail with EEXIST: no peers, no CNI file. Now only that route stays out, everything else
    /// is applied, and every health signal names the route until it goes.
    func testAForeignRouteKeepsOnlyItsRouteOutAndEveryHealthSignalNamesIt() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3"])
        await eventually("the controller issued n2 and n3 their Pod CIDRs") {
            let n2 = await h.annotation("n2", Annotation.podCIDRs)
            let n3 = await h.annotation("n3", Annotation.podCIDRs)
            return n2 != nil && n3 != nil
        }
        let n2Text = await h.annotation("n2", Annotation.podCIDRs)
        let n3Text = await h.annotation("n3", Annotation.podCIDRs)
        let n2 = try IPPrefix.list(try XCTUnwrap(n2Text))
        // The stale bridge's kernel route to n2's IPv4 Pod CIDR, there before the agent starts.
        let v4 = try XCTUnwrap(n2.first { $0.family == .v4 })
        h.kernel.locked {
            h.kernel.foreignRoutes[Route(destination: v4, interfaceIndex: 0).key] = "\(v4) dev cni0 proto kernel"
        }
        let agent = agent(h, resync: .seconds(3600))
        let run = Task { _ = try? await agent.run() }
        await eventually("the pass fails, naming the route") { agent.readiness?.contains("RouteConflict") == true }
        XCTAssertTrue(agent.readiness?.contains("\(v4) dev cni0 proto kernel") == true, agent.readiness ?? "ready")
        XCTAssertFalse(agent.isReady)
        await eventually("the condition says so") { await self.condition(h)?.reason == "RouteConflict" }
        let condition = await self.condition(h)
        XCTAssertEqual(condition?.status, "False")
        XCTAssertTrue(condition?.message?.contains("cni0") == true, condition?.message ?? "")
        await eventually("a Warning Event on the node") {
            await !self.events(h, reason: "RouteConflict", about: "n1").isEmpty
        }
        XCTAssertTrue(agent.metrics.registry.emitToString().contains("wgmesh_reconcile_last_succeeded 0"))
        // Everything but that route: both peers, every other route, the CNI file.
        XCTAssertEqual(h.kernel.locked { h.kernel.model.state.peers.count }, 2)
        let routed = Set(try h.kernel.routes(family: nil).map(\.destination))
        XCTAssertFalse(routed.contains(v4))
        XCTAssertTrue(n2.filter { $0 != v4 }.allSatisfy(routed.contains), "n2's IPv6 Pod CIDR is routed")
        XCTAssertTrue(try IPPrefix.list(try XCTUnwrap(n3Text)).allSatisfy(routed.contains), "n3 is routed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: h.state + "/cni/10-wgmesh.conflist"))

        // The route goes: the next try (backed off, no resync needed) adds wgmesh's and every signal clears.
        h.kernel.locked { h.kernel.foreignRoutes = [:] }
        await eventually("ready again") { agent.isReady }
        XCTAssertTrue(Set(try h.kernel.routes(family: nil).map(\.destination)).contains(v4))
        await eventually("the condition no longer says RouteConflict") {
            await self.condition(h)?.reason != "RouteConflict"
        }
        XCTAssertTrue(agent.metrics.registry.emitToString().contains("wgmesh_reconcile_last_succeeded 1"))
        try await stop(h, run, controller)
    }

    /// Issue 20, defect 5: `/readyz` counted passes, failed ones included, and the condition kept the last
    /// good pass's True. A pass that fails turns both false, with the reason, until one succeeds.
    func testAFailingPassTurnsReadinessAndTheConditionFalseUntilOneSucceeds() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        let agent = agent(h, resync: .milliseconds(300))
        let run = Task { _ = try? await agent.run() }
        await eventually("ready, running its key, the condition written") {
            let applied = await h.annotation("n1", Annotation.appliedKeyGeneration)
            let written = await self.condition(h)
            return agent.isReady && applied == "1" && written?.reason == "PeersConnecting"
        }
        // The kernel refuses every WireGuard change; a peer's endpoint moves, so every pass has one to make.
        h.kernel.locked { h.kernel.failingConfigures = .max }
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.endpointOverride: "198.51.100.2:51821"
                        ])
                    ])
                ])))
        await eventually("not ready") { agent.readiness?.hasPrefix("ReconcileFailed") == true }
        await eventually("the condition is False with the reason") {
            await self.condition(h)?.reason == "ReconcileFailed"
        }
        let failed = await self.condition(h)
        XCTAssertEqual(failed?.status, "False")
        XCTAssertTrue(agent.metrics.registry.emitToString().contains("wgmesh_reconcile_last_succeeded 0"))
        h.kernel.locked { h.kernel.failingConfigures = 0 }
        await eventually("ready again") { agent.isReady }
        await eventually("the condition as a good pass says") { await self.condition(h)?.reason == "PeersConnecting" }
        try await stop(h, run, controller)
    }

    /// Issue 20, defect 3: the API server's permanent refusal (422 from an admission policy) was taken for
    /// "the Node may not be registered yet" and retried forever with one log line. Now it fails the pass
    /// as `WriteRefused`, with an Event, the metric and `/readyz` saying so, and it is still retried.
    func testARefusedWriteIsReportedNotTakenForWaiting() async throws {
        let h = try await harness(nodes: ["n1"])
        h.server.inject(
            .init(.status(422), method: "PATCH", path: "/nodes/n1?", userAgent: "wgmesh-agent", count: .max))
        let agent = agent(h, resync: .seconds(3600))
        let run = Task { _ = try? await agent.run() }
        await eventually("not ready, saying the write was refused") {
            agent.readiness?.hasPrefix("WriteRefused") == true
        }
        XCTAssertTrue(agent.readiness?.contains("admission policy") == true, agent.readiness ?? "")
        await eventually("a Warning Event on the node") {
            await !self.events(h, reason: "WriteRefused", about: "n1").isEmpty
        }
        XCTAssertTrue(agent.metrics.registry.emitToString().contains("wgmesh_api_writes_refused_total"))
        let published = await h.annotation("n1", Annotation.enrollmentKey)
        XCTAssertNil(published)
        h.server.clearFaults()
        await eventually("the retry publishes the enrollment key and the agent is ready") {
            await h.annotation("n1", Annotation.enrollmentKey) != nil && agent.isReady
        }
        try await stop(h, run)
    }

    /// Issue 20, defect 8: a malformed enrollment key made the whole Node unreadable, so every agent left it
    /// out and its own agent stopped; and a running agent never published a removed key again.
    func testAMalformedOrRemovedEnrollmentKeyIsWrittenAgainAndTheNodeStaysAPeer() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        let agent = agent(h, resync: .seconds(3600))
        let run = Task { _ = try? await agent.run() }
        await eventually("n1 runs its key") { await h.annotation("n1", Annotation.appliedKeyGeneration) == "1" }
        let own = await h.annotation("n1", Annotation.enrollmentKey)
        // n2's agent wrote garbage: n1 keeps n2 as a peer.
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.enrollmentKey: "not-a-key"
                        ])
                    ])
                ])))
        await agent.reconcile(try await h.client.listAll(.nodes, metadataOnly: true).items, full: true)
        XCTAssertTrue(agent.isReady, agent.readiness ?? "")
        XCTAssertEqual(h.kernel.locked { h.kernel.model.state.peers.count }, 1, "n2 is still a peer")
        // n1's own key, made malformed and then removed: written again at once, with no resync.
        for value: JSON in ["not-a-key", .null] {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: "n1",
                .merge(
                    .object([
                        "metadata": .object([
                            "annotations": .object([
                                Annotation.enrollmentKey: value
                            ])
                        ])
                    ])))
            await eventually("n1's agent publishes its key again after \(value)") {
                await h.annotation("n1", Annotation.enrollmentKey) == own
            }
        }
        try await stop(h, run, controller)
    }

    /// Issue 20, defects 6 and 10: a stale gateway address on the CNI bridge (an earlier install's Pod CIDR)
    /// is removed, anything else on it stays; a node with no agent yet is no Warning.
    func testAStaleBridgeAddressGoesAndAJoiningNodeIsNoWarning() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])  // n3 has no agent yet
        let bridge = h.kernel.addLink(named: "cni0", kind: "bridge")
        let stale = try IPPrefix("10.244.200.1/24")
        let foreign = try IPPrefix("192.168.77.1/24")
        h.kernel.locked { h.kernel.addressTable[bridge.index] = [stale, foreign] }
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("the CNI file is written") {
            FileManager.default.fileExists(atPath: h.state + "/cni/10-wgmesh.conflist")
        }
        XCTAssertEqual(
            h.kernel.locked { h.kernel.addressTable[bridge.index] }, [foreign], "only the cluster's stale gateway goes")
        await eventually("n1 runs its key (passes planned with n3 in them)") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
        }
        // Each report is logged before its Event is sent.
        let logs = h.logs.lines.withLock { $0.joined(separator: "\n") }
        XCTAssertFalse(logs.contains("NodeLeftOut"), "n3 is still joining, no one's problem")
        try await stop(h, run, controller)
    }

    func testCleanupRemovesExactlyWhatTheAgentMade() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            "example.com/keep": "yes"
                        ])
                    ])
                ])))
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1",
            .merge(
                .object([
                    "status": .object(["conditions": .array([.object(["type": "Ready", "status": "True"])])])
                ])), subresource: "status")
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("the condition is written") { (try? await Node(h.node("n1")).conditions.count) == 2 }
        run.cancel()
        await run.value
        controller.cancel()
        await controller.value

        _ = h.kernel.addLink(named: "cni0", kind: "bridge")  // the bridge plugin made it for the node's Pods
        let removed = try await agent.cleanup()
        XCTAssertTrue(removed.contains("interface wgmesh0"), "\(removed)")
        XCTAssertTrue(removed.contains("bridge cni0"), "\(removed)")
        XCTAssertNil(h.kernel.links["cni0"])
        XCTAssertNil(h.kernel.links["wgmesh0"])
        XCTAssertEqual(try h.kernel.routes(family: nil), [])
        XCTAssertNil(h.kernel.ruleset)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.state + "/cni/10-wgmesh.conflist"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.state + "/state/enrollment.key"))
        let node = try await h.node("n1")
        for key in Annotation.agentOwned { XCTAssertNil(node.metadata.annotations[key], key) }
        XCTAssertEqual(node.metadata.annotations["example.com/keep"], "yes", "nothing the agent did not make")
        XCTAssertNotNil(
            node.metadata.annotations[Annotation.publicKey],
            "the controller's annotations are the controller's (wgmesh uninstall)")
        XCTAssertEqual(Node(node).conditions.map(\.type), ["Ready"], "only the agent's condition goes")
        let again = try await agent.cleanup()
        XCTAssertEqual(again, [], "a second cleanup finds nothing")
        try await stop(h)
    }

    /// Issue 20, defect 7: a Pod still on the node is torn down through the CNI file; the cleanup removes
    /// nothing while host-local holds an address of wgmesh's network, and everything once none is held.
    func testCleanupWaitsForTheNodesPods() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h)
        try await enrol(h, ["n2"])
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("the CNI file is written") {
            FileManager.default.fileExists(atPath: h.state + "/cni/10-wgmesh.conflist")
        }
        run.cancel()
        await run.value
        controller.cancel()
        await controller.value
        let ipam = h.state + "/ipam"
        let network = ipam + "/" + CNIConfig.networkName
        try FileManager.default.createDirectory(atPath: network, withIntermediateDirectories: true)
        // host-local's files: one per address given out, and its bookkeeping.
        for file in ["10.244.1.5", "fd00:10:244:1::5", "last_reserved_ip.0", "lock"] {
            FileManager.default.createFile(atPath: network + "/" + file, contents: Data("c1\neth0".utf8))
        }
        do {
            _ = try await agent.cleanup(ipamDirectory: ipam)
            XCTFail("cleanup went ahead while Pods hold addresses")
        } catch let refused as CleanupRefused {
            XCTAssertEqual(refused.addresses, ["10.244.1.5", "fd00:10:244:1::5"])
            XCTAssertTrue(
                "\(refused)".contains("nothing was removed") && "\(refused)".contains("drain the node"), "\(refused)")
        }
        XCTAssertNotNil(h.kernel.links["wgmesh0"], "nothing was removed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: h.state + "/cni/10-wgmesh.conflist"))
        let enrolled = await h.annotation("n1", Annotation.enrollmentKey)
        XCTAssertNotNil(enrolled)
        for file in ["10.244.1.5", "fd00:10:244:1::5"] {
            try FileManager.default.removeItem(atPath: network + "/" + file)
        }
        let removed = try await agent.cleanup(ipamDirectory: ipam)
        XCTAssertTrue(
            removed.contains("interface wgmesh0")
                && removed.contains("CNI configuration \(h.state)/cni/10-wgmesh.conflist"), "\(removed)")
        try await stop(h)
    }

    /// What `wgmesh rotate-keys --wait` and `wgmesh audit` read: the agent's settings, the digest of the
    /// keys it runs (equal to what the commands compute from the Nodes, before and after a peer rotates),
    /// and the unencrypted-packet count.
    func testTheAgentReportsItsSettingsPeersAndUnencryptedPackets() async throws {
        let h = try await harness(nodes: ["n1", "n2"])
        let controller = try controller(h, rotationGrace: 0.2)
        try await enrol(h, ["n2"])
        let agent = agent(h, resync: .milliseconds(500))
        let run = Task { _ = try? await agent.run() }
        func observed() async throws -> [ObservedNode] {
            try await h.client.listAll(.nodes).items.map {
                ObservedNode(name: $0.metadata.name, annotations: $0.metadata.annotations)
            }
        }
        func peersMatch() async -> Bool {
            guard let nodes = try? await observed(), let n1 = nodes.first(where: { $0.name == "n1" }) else {
                return false
            }
            return n1.report.appliedPeers
                == AppliedPeers.expected(for: "n1", nodes: nodes.compactMap(\.meshNode), clusterCIDRs: clusterCIDRs)
        }
        await eventually("n1 runs n2's key") {
            await h.annotation("n1", Annotation.appliedPeers) != nil
                && (try? h.kernel.device(named: "wgmesh0").peers.count) == 1
        }
        await eventually("n1's applied-peers is what the commands expect") { await peersMatch() }
        let settings = try await h.node("n1").metadata.annotations
        XCTAssertEqual(settings[Annotation.clusterCIDRs], "10.244.0.0/16,fd00:10:244::/48")
        XCTAssertEqual(settings[Annotation.strict], "true")
        let before = settings[Annotation.appliedPeers]

        // n2 rotates, as `wgmesh rotate-keys --node n2` asks; its own agent is played here.
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.rotateRequest: "t1"
                        ])
                    ])
                ])))
        try await eventually("the controller switched n2 to generation 2") {
            let a = try await h.node("n2").metadata.annotations
            return a[Annotation.keyGeneration] == "2" && a[Annotation.nextPublicKey] == nil
        }
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(
                .object([
                    "metadata": .object([
                        "annotations": .object([
                            Annotation.appliedKeyGeneration: "2"
                        ])
                    ])
                ])))
        await eventually("n1's applied-peers moved to n2's new key") {
            let moved = await h.annotation("n1", Annotation.appliedPeers) != before
            return moved ? await peersMatch() : false
        }
        let progress = RotationProgress.evaluate(requests: ["n2": "t1"], nodes: try await observed())
        XCTAssertEqual(progress["n2"], .done(generation: 2, peers: 1))

        // Unencrypted packets: counted from the table, kept across a restart and a table written anew.
        func drops() async -> UnencryptedDrops? {
            await h.annotation("n1", Annotation.unencryptedDrops).flatMap(UnencryptedDrops.init)
        }
        let initial = await drops()
        XCTAssertEqual(initial, UnencryptedDrops(packets: 0, counter: 0, last: nil))
        h.kernel.locked { h.kernel.counted = (5, 500) }
        await eventually("5 packets published") { await drops()?.packets == 5 }
        let five = await drops()
        XCTAssertNotNil(five?.last, "with the time it saw them")
        run.cancel()
        await run.value
        let second = self.agent(h, resync: .milliseconds(500))
        let rerun = Task { _ = try? await second.run() }
        h.kernel.locked { h.kernel.counted = (7, 700) }
        await eventually("the restarted agent adds only the 2 new packets") { await drops()?.packets == 7 }
        h.kernel.locked { h.kernel.ruleset = nil }  // removed by hand: the agent writes it anew, its counter from 0
        await eventually("the table is back") { h.kernel.locked { h.kernel.ruleset != nil } }
        h.kernel.locked { h.kernel.counted = (3, 300) }
        await eventually("3 more after the rewrite") { await drops()?.packets == 10 }
        try await stop(h, rerun, controller)
    }

    func testTheEnrollmentKeyFileStates() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logs = LogCapture()
        let logger = logs.logger("agent")
        let store = EnrollmentKeyStore(directory: dir + "/state")
        let made = try store.loadOrCreate(logger: logger).privateKey
        XCTAssertEqual(try store.loadOrCreate(logger: logger).privateKey, made, "kept across restarts")
        try "garbage\n".write(toFile: store.path, atomically: true, encoding: .utf8)
        let remade = try store.loadOrCreate(logger: logger).privateKey
        XCTAssertNotEqual(remade, made, "a corrupt file means a new enrollment key")
        XCTAssertTrue(
            logs.lines.withLock { $0.contains { $0.contains("unusable") && $0.contains("new keypair") } },
            "and the log says so")
        XCTAssertEqual(try store.loadOrCreate(logger: logger).privateKey, remade)
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
