import Controller
import Foundation
import Kube
import KubeTestSupport
import WGMeshCore
import XCTest

final class MeshControllerTests: XCTestCase {
    func run(_ controller: MeshController) -> Task<Void, Never> { Task { await controller.run() } }

    func testFiveHundredNodesGetDistinctCIDRsAndKeysAndNoPrivateKeyLeaks() async throws {
        let cluster = try await TestCluster()
        let names = (0..<500).map { String(format: "node-%03d", $0) }
        try cluster.addNodes(names)
        let task = run(try cluster.controller("a"))
        await eventually("all 500 nodes are annotated") { cluster.nodes().filter(TestCluster.isComplete).count == 500 }
        let nodes = cluster.nodes()
        let v4 = nodes.compactMap { $0.podCIDRs.first { $0.family == .v4 } }
        let v6 = nodes.compactMap { $0.podCIDRs.first { $0.family == .v6 } }
        XCTAssertEqual(Set(v4).count, 500, "distinct IPv4 Pod CIDRs")
        XCTAssertEqual(Set(v6).count, 500, "distinct IPv6 Pod CIDRs")
        XCTAssertTrue(v4.allSatisfy { $0.length == 24 } && v6.allSatisfy { $0.length == 64 })
        XCTAssertEqual(Set(nodes.compactMap(\.publicKey)).count, 500, "distinct keys")
        XCTAssertTrue(
            nodes.allSatisfy { $0.keyGeneration == 1 && $0.sealedTo == cluster.enrollment[$0.name]!.publicKey })
        let first = try XCTUnwrap(cluster.node("node-000"))
        XCTAssertEqual(first.endpoint?.description, "10.0.0.1:51820", "the InternalIP, port 51820")
        let secrets = cluster.openAll()
        XCTAssertEqual(secrets.count, 500)
        await eventually("every allocation and key issue has its Event") {
            cluster.events(reason: "PodCIDRAllocated").count >= 500 && cluster.events(reason: "KeyIssued").count >= 500
        }
        XCTAssertEqual(cluster.events(reason: "PodCIDRAllocated").count, 500)
        XCTAssertEqual(cluster.events(reason: "KeyIssued").count, 500)
        cluster.assertNoSecretLeaks(secrets)
        // The scan itself finds a key written where it must not be.
        cluster.logs.logger("careless").info("leaked key=\(secrets[7])")
        XCTAssertEqual(cluster.leaks(secrets), ["a log line"])
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    func testAKilledControllerAndASecondReplicaTakingOverThroughFaultsKeepEveryCIDR() async throws {
        let cluster = try await TestCluster()
        let names = (0..<300).map { "n\($0)" }
        try cluster.addNodes(names)
        func replica(_ id: String, release: Bool) throws -> Task<Void, Error> {
            let controller = try cluster.controller(id)
            let elector = LeaderElector(
                api: cluster.client,
                configuration: .init(
                    namespace: "wgmesh-system", name: "wgmesh-controller", identity: id,
                    leaseDuration: .milliseconds(1500),
                    renewDeadline: .milliseconds(1000), retryPeriod: .milliseconds(200), releaseOnCancel: release),
                logger: cluster.logs.logger(id))
            return Task { try await elector.run { await controller.run() } }
        }
        // Faults all along: conflict storms, server errors, dropped watches.
        cluster.server.inject(.init(.status(409), method: "PATCH", count: 40))
        cluster.server.inject(.init(.status(500), method: "PATCH", count: 20))
        cluster.server.inject(.init(.dropWatch(afterEvents: 40), watch: true, count: 10))

        let a = try replica("a", release: false)
        await eventually("a has done some of the work") { cluster.nodes().filter(TestCluster.isComplete).count >= 60 }
        a.cancel()  // killed: no release, its lease must expire
        _ = try? await a.value
        let before = Dictionary(
            uniqueKeysWithValues: cluster.nodes().filter { !$0.podCIDRs.isEmpty }.map { ($0.name, $0) })
        XCTAssertLessThan(before.count, 300, "a was killed mid-way")

        let b = try replica("b", release: true)
        let standby = try replica("c", release: true)
        await eventually("the second replica finished") { cluster.nodes().filter(TestCluster.isComplete).count == 300 }
        let after = Dictionary(uniqueKeysWithValues: cluster.nodes().map { ($0.name, $0) })
        for (name, old) in before {
            XCTAssertEqual(after[name]?.podCIDRs, old.podCIDRs, "\(name) kept its CIDRs")
            if let key = old.publicKey { XCTAssertEqual(after[name]?.publicKey, key, "\(name) kept its key") }
        }
        let all = after.values.flatMap(\.podCIDRs)
        XCTAssertEqual(Set(all).count, all.count, "no CIDR handed out twice")
        XCTAssertEqual(all.count, 600)
        let secrets = cluster.openAll()

        // A clean restart of everything changes nothing.
        b.cancel()
        standby.cancel()
        _ = try? await b.value
        _ = try? await standby.value
        let settled = cluster.nodes()
        let restarted = try cluster.controller("d")
        let d = run(restarted)
        try await Task.sleep(for: .seconds(2))
        XCTAssertEqual(cluster.nodes(), settled, "a restart rebuilds its state and writes nothing")
        XCTAssertEqual(restarted.statistics.patches, 0)
        d.cancel()
        await d.value
        cluster.assertNoSecretLeaks(secrets)
        try await cluster.stop()
    }

    func testADeletedNodeFreesItsCIDRAndExhaustionIsReported() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["a", "b"])
        // Room for exactly two nodes.
        let task = run(try cluster.controller("x", clusterCIDRs: ["10.250.0.0/23"]))
        await eventually("a and b have CIDRs") { cluster.nodes().filter(TestCluster.isComplete).count == 2 }
        let freed = try XCTUnwrap(cluster.node("a")?.podCIDRs)
        try cluster.addNodes(["c"])
        await eventually("c is refused with an Event") {
            !cluster.events(reason: "PodCIDRExhausted", node: "c").isEmpty
        }
        XCTAssertEqual(cluster.node("c")?.podCIDRs, [], "no CIDR while none is free")
        XCTAssertNotNil(cluster.node("c")?.publicKey, "the key does not wait for the CIDR")
        try cluster.server.withStore(.nodes) { _ = try $0.delete("a") }
        await eventually("c got the freed CIDR") { cluster.node("c")?.podCIDRs == freed }
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    func testAGarbageEnrollmentKeyGetsAnEventAndNoKeypair() async throws {
        let cluster = try await TestCluster()
        try cluster.server.withStore(.nodes) { store in
            _ = try store.create(
                TestCluster.node("garbage", enrollmentKey: "not-a-key", addresses: [("InternalIP", "10.0.0.9")]))
            // Valid base64 of 32 bytes, but not a usable X25519 key (the all-zero point).
            _ = try store.create(
                TestCluster.node(
                    "zero", enrollmentKey: WireGuardKey.zero.base64, addresses: [("InternalIP", "10.0.0.10")]))
        }
        let task = run(try cluster.controller("x"))
        await eventually("both are refused with an Event") {
            !cluster.events(reason: "EnrollmentKeyInvalid", node: "garbage").isEmpty
                && !cluster.events(reason: "EnrollmentKeyInvalid", node: "zero").isEmpty
        }
        await eventually("both still get CIDRs and endpoints") {
            cluster.nodes().allSatisfy { !$0.podCIDRs.isEmpty && $0.endpoint != nil }
        }
        for name in ["garbage", "zero"] {
            let note = cluster.events(reason: "EnrollmentKeyInvalid", node: name)[0]["note"]?.string ?? ""
            XCTAssertTrue(note.contains(name), note)
            XCTAssertEqual(cluster.events(reason: "EnrollmentKeyInvalid", node: name)[0]["type"], "Warning")
        }
        // The raw node, not MeshNode: the garbage key makes it unparseable on purpose.
        let raw = try await cluster.client.listAll(.nodes).items
        XCTAssertTrue(
            raw.allSatisfy {
                $0.metadata.annotations[Annotation.publicKey] == nil
                    && $0.metadata.annotations[Annotation.sealedPrivateKey] == nil
            })
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    func testRotationGoesThroughBothPhasesWithTheGracePeriod() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["r"])
        let task = run(try cluster.controller("x", policy: .init(rotation: .init(grace: 1.5))))
        await eventually("r has a key") { cluster.node("r").map(TestCluster.isComplete) ?? false }
        let original = try XCTUnwrap(cluster.node("r"))
        var staged: MeshNode?
        let watcher = Task { () -> MeshNode? in
            // Observe the staged phase as an agent would, through a watch.
            while !Task.isCancelled {
                if let n = cluster.node("r"), n.nextPublicKey != nil { return n }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }
        // The requester's clock is 45 s ahead: the request is still answered once.
        let requested = RFC3339.format(Date().addingTimeInterval(45)) + "-c0ffee"
        try await cluster.annotate("r", [Annotation.rotateRequest: requested])
        staged = await watcher.value
        let stagedNode = try XCTUnwrap(staged)
        XCTAssertEqual(
            stagedNode.publicKey, original.publicKey, "phase 1: the current key stays while the next one is staged")
        await eventually("phase 2: the switch") { cluster.node("r")?.keyGeneration == 2 }
        let rotated = try XCTUnwrap(cluster.node("r"))
        XCTAssertEqual(rotated.publicKey, stagedNode.nextPublicKey, "the staged key became the key")
        XCTAssertNil(rotated.nextPublicKey)
        XCTAssertNil(rotated.nextSealedPrivateKey)
        XCTAssertEqual(rotated.rotateAnswered, requested, "the request is answered")
        let secrets = cluster.openAll()
        // The grace period separates the phases, as the controller's own Event times show (Events go
        // out after the writes they describe).
        await eventually("both rotation Events are recorded") {
            !cluster.events(reason: "KeyRotationStaged", node: "r").isEmpty
                && !cluster.events(reason: "KeyRotated", node: "r").isEmpty
        }
        let stagedAt = try XCTUnwrap(cluster.events(reason: "KeyRotationStaged", node: "r").first?["eventTime"]?.string)
        let switchedAt = try XCTUnwrap(cluster.events(reason: "KeyRotated", node: "r").first?["eventTime"]?.string)
        let gap = try XCTUnwrap(RFC3339.parse(switchedAt)).timeIntervalSince(try XCTUnwrap(RFC3339.parse(stagedAt)))
        XCTAssertGreaterThanOrEqual(gap, 1.5, "no switch before the grace period ended")
        try await Task.sleep(for: .seconds(5))
        XCTAssertEqual(cluster.node("r")?.keyGeneration, 2, "one request, one rotation, over three grace periods")
        XCTAssertEqual(cluster.events(reason: "KeyRotationStaged", node: "r").count, 1)
        cluster.assertNoSecretLeaks(secrets)
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    func testMaxKeyAgeTriggersRotationAndRotationsAreSpread() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["p", "q", "s"])
        let task = run(try cluster.controller("x", policy: .init(rotation: .init(grace: 0.5, maxKeyAge: 2))))
        await eventually("all three rotated by age", timeout: .seconds(60)) {
            cluster.nodes().allSatisfy { ($0.keyGeneration ?? 0) >= 2 }
        }
        XCTAssertTrue(cluster.nodes().allSatisfy { $0.publicKey != nil })
        await eventually("the rotation Events are recorded") { cluster.events(reason: "KeyRotated").count >= 3 }
        let staged = cluster.events(reason: "KeyRotationStaged")
        XCTAssertGreaterThanOrEqual(staged.count, 3)
        XCTAssertTrue(staged.allSatisfy { ($0["note"]?.string ?? "").contains("older than 2 s") })
        _ = cluster.openAll()
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    func testANewEnrollmentKeyIsIssuedANewKeypair() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["e"])
        let task = run(try cluster.controller("x"))
        await eventually("e has a key") { cluster.node("e")?.keyGeneration == 1 }
        let first = try XCTUnwrap(cluster.node("e")?.publicKey)
        // The node lost its enrollment key and publishes a new one.
        cluster.enrollment["e"] = WireGuardKeyPair.generate()
        _ = try await cluster.client.patch(
            .nodes, namespace: nil, name: "e",
            .annotations([.init(Annotation.enrollmentKey): cluster.enrollment["e"]!.publicKey.base64]))
        await eventually("e got a new keypair") { cluster.node("e")?.keyGeneration == 2 }
        XCTAssertNotEqual(cluster.node("e")?.publicKey, first)
        XCTAssertEqual(cluster.openAll().count, 1, "it opens with the new enrollment key")
        task.cancel()
        await task.value
        try await cluster.stop()
    }

    /// Issue 17: a changed enrollment key is a security event, whatever the policy.
    func testAChangedEnrollmentKeyIsHeldOrReissuedWithAWarning() async throws {
        for policy in ControllerPolicy.EnrollmentChange.allCases {
            let cluster = try await TestCluster()
            try cluster.addNodes(["e"])
            let task = run(try cluster.controller("x", policy: .init(enrollmentChange: policy)))
            await eventually("e has a key") { cluster.node("e")?.keyGeneration == 1 }
            let first = try XCTUnwrap(cluster.node("e"))
            let old = cluster.enrollment["e"]!.publicKey
            let new = WireGuardKeyPair.generate()
            try await cluster.annotate("e", [Annotation.enrollmentKey: new.publicKey.base64])
            await eventually("\(policy): a Warning") {
                !cluster.events(reason: "EnrollmentKeyChanged", node: "e").isEmpty
            }
            let event = cluster.events(reason: "EnrollmentKeyChanged", node: "e")[0]
            XCTAssertEqual(event["type"], "Warning")
            let note = event["note"]?.string ?? ""
            XCTAssertTrue(
                note.contains("node e") && note.contains(old.fingerprint) && note.contains(new.publicKey.fingerprint),
                note)
            XCTAssertTrue(
                cluster.logs.lines.withLock {
                    $0.contains { $0.contains("EnrollmentKeyChanged") && $0.contains(new.publicKey.fingerprint) }
                },
                "\(policy): a log line")
            switch policy {
            case .reissue:
                await eventually("reissue: a new keypair") { cluster.node("e")?.keyGeneration == 2 }
                XCTAssertEqual(cluster.node("e")?.sealedTo, new.publicKey)
            case .hold:
                try await Task.sleep(for: .milliseconds(500))
                let kept = try XCTUnwrap(cluster.node("e"))
                XCTAssertEqual(
                    [kept.publicKey, kept.sealedTo], [first.publicKey, old],
                    "hold: the keys stay sealed to the old enrollment key")
                XCTAssertEqual(kept.keyGeneration, 1)
                try await cluster.annotate("e", [Annotation.acceptEnrollment: new.publicKey.fingerprint])
                await eventually("hold: accepted, a new keypair") { cluster.node("e")?.keyGeneration == 2 }
                XCTAssertEqual(cluster.node("e")?.sealedTo, new.publicKey)
                XCTAssertNil(cluster.node("e")?.acceptEnrollment, "the acceptance is used up")
            }
            cluster.enrollment["e"] = new
            XCTAssertEqual(cluster.openAll().count, 1, "\(policy): it opens with the new enrollment key")
            task.cancel()
            await task.value
            try await cluster.stop()
        }
    }

    func testEndpointsFollowAddressesAndSpecPodCIDRsAreUsed() async throws {
        let cluster = try await TestCluster()
        try cluster.server.withStore(.nodes) { store in
            _ = try store.create(
                TestCluster.node(
                    "v6", enrollmentKey: nil, addresses: [("ExternalIP", "2001:db8::5"), ("InternalIP", "fd00::5")]))
            _ = try store.create(
                TestCluster.node(
                    "ext", enrollmentKey: nil, addresses: [("ExternalIP", "192.0.2.7"), ("Hostname", "ext")]))
            _ = try store.create(
                TestCluster.node(
                    "spec", enrollmentKey: nil, addresses: [("InternalIP", "10.0.0.3")],
                    podCIDRs: ["10.99.3.0/24", "fd00:99:3::/64"]))
        }
        let task = run(try cluster.controller("x"))
        await eventually("endpoints published") { cluster.nodes().allSatisfy { $0.endpoint != nil } }
        XCTAssertEqual(
            cluster.node("v6")?.endpoint?.description, "[fd00::5]:51820", "InternalIP preferred, IPv6 in brackets")
        XCTAssertEqual(
            cluster.node("ext")?.endpoint?.description, "192.0.2.7:51820", "ExternalIP when there is no InternalIP")
        await eventually("spec.podCIDRs used") {
            cluster.node("spec")?.podCIDRs.map(\.description) == ["10.99.3.0/24", "fd00:99:3::/64"]
        }
        XCTAssertNil(cluster.node("spec")?.publicKey, "no enrollment key yet, no keypair")
        _ = try await cluster.client.patch(
            .nodes, namespace: nil, name: "ext",
            .merge(
                .object([
                    "status": .object([
                        "addresses": .array([
                            .object(["type": "ExternalIP", "address": "192.0.2.8"])
                        ])
                    ])
                ])), subresource: "status")
        await eventually("a changed address is published again") {
            cluster.node("ext")?.endpoint?.description == "192.0.2.8:51820"
        }
        task.cancel()
        await task.value
        try await cluster.stop()
    }
}
