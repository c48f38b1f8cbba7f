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

extension MeshAgentTests {

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
            .annotations([Annotation.endpointOverride: "198.51.100.2:51821"]))
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
            .annotations([Annotation.sealedPrivateKey: foreign]))
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
            .annotations([Annotation.endpointOverride: "198.51.100.2:51821"]))
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
}
