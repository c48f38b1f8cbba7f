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
            .annotations([Annotation.enrollmentKey: "not-a-key"]))
        await agent.reconcile(try await h.client.listAll(.nodes, metadataOnly: true).items, full: true)
        XCTAssertTrue(agent.isReady, agent.readiness ?? "")
        XCTAssertEqual(h.kernel.locked { h.kernel.model.state.peers.count }, 1, "n2 is still a peer")
        // n1's own key, made malformed and then removed: written again at once, with no resync.
        for value: String? in ["not-a-key", nil] {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: "n1", .annotations([Annotation.enrollmentKey: value]))
            await eventually("n1's agent publishes its key again after \(value.map(JSON.string) ?? .null)") {
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
            .annotations(["example.com/keep": "yes"]))
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1",
            .merge(
                .object([
                    "status": .object(["conditions": .array([.object(["type": "Ready", "status": "True"])])])
                ])), subresource: "status")
        let agent = agent(h)
        let run = Task { _ = try? await agent.run() }
        await eventually("the condition is written, with n1's key issued") {
            let node = try? await h.node("n1")
            return node.map { Node($0).conditions.count == 2 && $0.metadata.annotations[Annotation.publicKey] != nil }
                ?? false
        }
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
            .annotations([Annotation.rotateRequest: "t1"]))
        try await eventually("the controller switched n2 to generation 2") {
            let a = try await h.node("n2").metadata.annotations
            return a[Annotation.keyGeneration] == "2" && a[Annotation.nextPublicKey] == nil
        }
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .annotations([Annotation.appliedKeyGeneration: "2"]))
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

extension MeshAgentTests {
    /// Issue 23: a bad annotation is reported by one reporter, the controller, whatever the number of agents
    /// that see it: before, every agent sent its own Events about every other node's problems (5,000 × 25 at
    /// 5,000 nodes). The agent's own node's malformed annotation is the controller's Event too (the agent says
    /// it in its condition); a key published by two nodes is reported by the controller on both.
    func testABadAnnotationIsReportedByOneReporter() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3", "n4"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3", "n4"])
        let agent = agent(h, resync: .seconds(1))
        let run = Task { _ = try? await agent.run() }
        await eventually("n1 runs its key") { await h.annotation("n1", Annotation.appliedKeyGeneration) == "1" }
        for name in ["n1", "n2"] {
            _ = try await h.client.patch(
                .nodes, namespace: nil, name: name, .annotations([Annotation.endpointOverride: "not an endpoint"]))
        }
        // n4 publishes n3's key, as a copied annotation would.
        let n3Key = await h.annotation("n3", Annotation.publicKey)
        let copied = try XCTUnwrap(n3Key)
        _ = try await h.client.patch(.nodes, namespace: nil, name: "n4", .annotations([Annotation.publicKey: copied]))
        func events() async throws -> [(about: String, reason: String, by: String)] {
            try await h.client.listAll(.events, namespace: "default").items.map {
                (
                    $0.json["regarding"]?["name"]?.string ?? "", $0.json["reason"]?.string ?? "",
                    $0.json["reportingController"]?.string ?? ""
                )
            }
        }
        await eventually("the controller reports every problem") {
            let reported = Set(((try? await events()) ?? []).map { "\($0.about) \($0.reason)" })
            return reported.isSuperset(of: [
                "n1 InvalidAnnotation", "n2 InvalidAnnotation", "n3 PublicKeyConflict", "n4 PublicKeyConflict",
            ])
        }
        await eventually("n1's agent says so in its condition") {
            agent.readiness?.hasPrefix("InvalidAnnotation") == true
        }
        // Resyncs every second: the agent has had its chances to report.
        try await Task.sleep(for: .seconds(3))
        let problems = try await events().filter {
            ["InvalidAnnotation", "PublicKeyConflict", "NodeLeftOut"].contains($0.reason)
        }
        XCTAssertEqual(Set(problems.map(\.by)), [MeshController.reportingController], "\(problems)")
        try await stop(h, run, controller)
    }
}

extension MeshAgentTests {
    /// A pass that fails after it read a Node's change (here: this node's own annotation does not read) loses
    /// nothing: the next pass plans every Node read so far, not only those its own events named.
    func testAChangeReadByAFailedPassIsAppliedByTheNext() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        let controller = try controller(h)
        try await enrol(h, ["n2", "n3"])
        let agent = agent(h, resync: .seconds(3600))
        let run = Task { _ = try? await agent.run() }
        await eventually("n1 runs its key with both peers") {
            await h.annotation("n1", Annotation.appliedKeyGeneration) == "1"
                && h.kernel.locked { h.kernel.model.state.peers.count } == 2
        }
        let published = await h.annotation("n2", Annotation.publicKey)
        let n2Key = try WireGuardKey(base64: try XCTUnwrap(published))
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1", .annotations([Annotation.endpointOverride: "not an endpoint"]))
        await eventually("n1's pass fails") { agent.readiness?.hasPrefix("InvalidAnnotation") == true }
        let moved = try Endpoint("192.0.2.77:51820")
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2", .annotations([Annotation.endpointOverride: moved.description]))
        // The pass that reads n2's change fails too (n1's own annotation still does not read).
        try await Task.sleep(for: .seconds(1))
        XCTAssertNotNil(agent.readiness)
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n1", .annotations([Annotation.endpointOverride: nil]))
        await eventually("n2's new endpoint is in the kernel") {
            h.kernel.locked { h.kernel.model.state.peers.first { $0.publicKey == n2Key }?.endpoint } == moved
        }
        // Not by a full pass that found the incremental plan wrong (the connecting peers' look, 3 s on).
        let metrics = agent.metrics.registry.emitToString()
        XCTAssertTrue(metrics.contains("wgmesh_plan_mismatches_total 0"), metrics)
        try await stop(h, run, controller)
    }
}
