import Controller
import Foundation
import Kube
import KubeTestSupport
import WGMeshCore
import XCTest

/// One Pod CIDR is never handed to two nodes: across restarts with another configuration, corrupted
/// annotations, overlaps written while the controller runs, and a second allocator in the cluster.
final class PodCIDRIntegrityTests: XCTestCase {
    func run(_ controller: MeshController) -> Task<Void, Never> { Task { await controller.run() } }

    func stop(_ task: Task<Void, Never>) async {
        task.cancel()
        await task.value
    }

    func notes(_ cluster: TestCluster, _ reason: String, node: String? = nil) -> [String] {
        cluster.events(reason: reason, node: node).compactMap { $0["note"]?.string }
    }

    func testARestartWithFewerClusterCIDRsKeepsEveryPublishedCIDR() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["a", "b"])
        let first = run(try cluster.controller("x"))
        await eventually("a and b are dual-stack") { cluster.nodes().allSatisfy { $0.podCIDRs.count == 2 } }
        await stop(first)
        let before = ["a": cluster.podCIDRs("a"), "b": cluster.podCIDRs("b")]

        // The IPv6 range is dropped from the configuration.
        let second = run(try cluster.controller("y", clusterCIDRs: ["10.240.0.0/12"]))
        try cluster.addNodes(["c"])
        await eventually("c has a CIDR") { cluster.node("c")?.podCIDRs.isEmpty == false }
        let taken = Set(["a", "b"].compactMap { cluster.node($0)?.podCIDRs.first { $0.family == .v4 } })
        let c = try XCTUnwrap(cluster.node("c")?.podCIDRs.first)
        XCTAssertEqual(taken.count, 2)
        XCTAssertFalse(taken.contains(c), "c got \(c), which a or b already has")
        XCTAssertEqual(cluster.podCIDRs("a"), before["a"]!, "a's published CIDRs stay as they were")
        XCTAssertEqual(cluster.podCIDRs("b"), before["b"]!)
        await eventually("the CIDRs outside the pools are reported") {
            self.notes(cluster, "PodCIDRUnmanaged", node: "a").contains {
                $0.contains("fd00:10:244") && $0.contains("stays reserved")
            }
                && !self.notes(cluster, "PodCIDRUnmanaged", node: "b").isEmpty
        }
        XCTAssertTrue(
            cluster.logs.lines.withLock {
                $0.contains { $0.hasPrefix("warning PodCIDRUnmanaged") && $0.contains("node=a") }
            }, "and logged")
        await stop(second)
        try await cluster.stop()
    }

    func testACorruptedPodCIDRsAnnotationKeepsItsCIDRAcrossATerm() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["a", "b"])
        let first = run(try cluster.controller("x"))
        await eventually("a and b have CIDRs") { cluster.nodes().allSatisfy { !$0.podCIDRs.isEmpty } }
        await stop(first)
        let original = try XCTUnwrap(cluster.podCIDRs("a"))
        try await cluster.annotate("a", [Annotation.podCIDRs: original + ",oops"])

        let second = run(try cluster.controller("y"))
        try cluster.addNodes(["c"])
        await eventually("c has a CIDR") { cluster.node("c")?.podCIDRs.isEmpty == false }
        let aCIDRs = try MeshNode(name: "a", annotations: [Annotation.podCIDRs: original]).podCIDRs
        XCTAssertTrue(
            Set(try XCTUnwrap(cluster.node("c")).podCIDRs).isDisjoint(with: aCIDRs),
            "a's CIDR stays taken while its annotation still names it")
        await eventually("a's unreadable annotation is reported") {
            self.notes(cluster, "InvalidAnnotation", node: "a").contains {
                $0.contains("oops") && $0.contains("stays reserved")
            }
        }
        XCTAssertEqual(cluster.podCIDRs("a"), original + ",oops", "reported, not overwritten")
        await stop(second)
        try await cluster.stop()
    }

    func testAnOverlapWrittenWhileRunningIsReportedOnBothNodesAndTheControllersAllocationWins() async throws {
        let cluster = try await TestCluster()
        // Named so that, without managedFields, the copy would sort first and win a restart.
        try cluster.addNodes(["z-owner", "a-copy"])
        let first = run(try cluster.controller("x"))
        await eventually("both have CIDRs") { cluster.nodes().allSatisfy { $0.podCIDRs.count == 2 } }
        let owned = try XCTUnwrap(cluster.podCIDRs("z-owner"))
        let copyOwn = try XCTUnwrap(cluster.node("a-copy")?.podCIDRs)
        // Someone copies z-owner's annotation onto a-copy with kubectl.
        try await cluster.annotate("a-copy", [Annotation.podCIDRs: owned])
        await eventually("the overlap is reported on both nodes") {
            !self.notes(cluster, "PodCIDRConflict", node: "z-owner").isEmpty
                && !self.notes(cluster, "PodCIDRConflict", node: "a-copy").isEmpty
        }
        for note in notes(cluster, "PodCIDRConflict") {
            XCTAssertTrue(note.contains("a-copy") && note.contains("z-owner"), "names both nodes: \(note)")
            XCTAssertTrue(owned.split(separator: ",").contains { note.contains(String($0)) }, "names the CIDR: \(note)")
            XCTAssertTrue(note.contains("wgmesh allocated it to node z-owner"), "names the rightful owner: \(note)")
        }
        XCTAssertTrue(cluster.events(reason: "PodCIDRConflict").allSatisfy { $0["type"]?.string == "Warning" })
        try cluster.addNodes(["new"])
        await eventually("new has a CIDR") { cluster.node("new")?.podCIDRs.isEmpty == false }
        let fresh = try XCTUnwrap(cluster.node("new")?.podCIDRs)
        let ownedCIDRs = try MeshNode(name: "z", annotations: [Annotation.podCIDRs: owned]).podCIDRs
        XCTAssertTrue(
            Set(fresh).isDisjoint(with: ownedCIDRs + copyOwn), "neither the copied CIDR nor a-copy's own is handed out")
        await stop(first)

        // A new term: the controller's own write (managedFields) still wins, and standing Warnings are not repeated.
        let before = cluster.events(reason: "PodCIDRConflict").count
        let second = run(try cluster.controller("y"))
        try cluster.addNodes(["later"])
        await eventually("later has a CIDR") { cluster.node("later")?.podCIDRs.isEmpty == false }
        try await Task.sleep(for: .seconds(1))
        XCTAssertEqual(
            cluster.events(reason: "PodCIDRConflict").count, before, "no Warning that still stands is sent again")
        XCTAssertFalse(notes(cluster, "PodCIDRConflict").contains { $0.contains("allocated it to node a-copy") })
        // a-copy's own first CIDR is published nowhere any more, so a new term cannot know it.
        XCTAssertTrue(Set(try XCTUnwrap(cluster.node("later")?.podCIDRs)).isDisjoint(with: ownedCIDRs + fresh))
        await stop(second)
        try await cluster.stop()
    }

    /// Issue 23: one node's malformed values make at most 25 Events in all, across a leader change too: a new
    /// term's spam filter counts the Events the API holds, whichever replica sent them.
    func testOneNodesProblemsMakeAtMost25EventsAcrossLeaderChanges() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["n10"])
        func write(_ values: ClosedRange<Int>) async throws {
            for i in values {
                try await cluster.annotate("n10", [Annotation.endpointOverride: "not an endpoint \(i)"])
                await eventually("value \(i) reported, or the filter full") {
                    let notes = self.notes(cluster, "InvalidAnnotation", node: "n10")
                    return notes.count >= 25 || notes.contains { $0.contains("not an endpoint \(i)\"") }
                }
            }
        }
        let first = run(try cluster.controller("x"))
        try await write(1...30)
        await stop(first)
        XCTAssertEqual(cluster.events(reason: "InvalidAnnotation", node: "n10").count, 25)
        let second = run(try cluster.controller("y"))
        try await write(31...40)
        try await Task.sleep(for: .seconds(1))
        XCTAssertEqual(
            cluster.events(reason: "InvalidAnnotation", node: "n10").count, 25, "the second term sent none")
        await stop(second)
        try await cluster.stop()
    }

    func testAutoWaitsForKubeControllerManagerInsteadOfRacingIt() async throws {
        let cluster = try await TestCluster()
        // The cluster assigns IPv4 itself (kube-controller-manager --allocate-node-cidrs on wgmesh's range).
        try cluster.server.withStore(.nodes) { store in
            _ = try store.create(
                TestCluster.node(
                    "kcm-1", enrollmentKey: nil, addresses: [("InternalIP", "10.0.0.1")], podCIDRs: ["10.240.0.0/24"]))
        }
        let task = run(try cluster.controller("x", specWait: 2))
        try cluster.addNodes(["late", "never"])
        await eventually("kcm-1 publishes its spec CIDR") {
            cluster.podCIDRs("kcm-1")?.hasPrefix("10.240.0.0/24") == true
        }
        try await Task.sleep(for: .milliseconds(800))
        XCTAssertNil(
            cluster.node("late")?.podCIDRs.first { $0.family == .v4 },
            "no IPv4 CIDR from wgmesh while the cluster assigns IPv4")
        try await cluster.setSpecPodCIDRs("late", ["10.240.7.0/24"])
        await eventually("late publishes the cluster's CIDR") {
            cluster.node("late")?.podCIDRs.first { $0.family == .v4 }?.description == "10.240.7.0/24"
        }
        await eventually("IPv6, which the cluster does not assign, comes from wgmesh after the wait") {
            cluster.nodes().allSatisfy { $0.podCIDRs.contains { $0.family == .v6 } }
        }
        await eventually("a node the cluster never serves is reported") {
            !self.notes(cluster, "PodCIDRPending", node: "never").isEmpty
        }
        let note = try XCTUnwrap(notes(cluster, "PodCIDRPending", node: "never").first)
        XCTAssertTrue(note.contains("IPv4") && note.contains("2 s") && note.contains("kube-controller-manager"), note)
        XCTAssertNil(cluster.node("never")?.podCIDRs.first { $0.family == .v4 }, "still no IPv4 CIDR from wgmesh")
        await stop(task)
        try await cluster.stop()
    }

    func testASpecCIDRThatArrivesLaterDoesNotChangeAPublishedCIDR() async throws {
        let cluster = try await TestCluster()
        try cluster.addNodes(["n"])
        let task = run(try cluster.controller("x"))
        await eventually("n has a dual-stack CIDR") { cluster.node("n")?.podCIDRs.count == 2 }
        let published = try XCTUnwrap(cluster.podCIDRs("n"))
        try await cluster.setSpecPodCIDRs("n", ["10.99.0.0/24"])
        await eventually("the disagreement is a Warning") { !self.notes(cluster, "PodCIDRMismatch", node: "n").isEmpty }
        XCTAssertEqual(cluster.events(reason: "PodCIDRMismatch", node: "n").first?["type"]?.string, "Warning")
        XCTAssertTrue(notes(cluster, "PodCIDRMismatch", node: "n")[0].contains("drain"), "says what to do")
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(cluster.podCIDRs("n"), published, "the node's Pods keep their range, IPv6 included")
        await stop(task)
        try await cluster.stop()
    }

    func testAGarbageEnrollmentKeyWarningIsNotRepeatedByANewTerm() async throws {
        let cluster = try await TestCluster()
        try cluster.server.withStore(.nodes) { store in
            _ = try store.create(TestCluster.node("g", enrollmentKey: "junk", addresses: [("InternalIP", "10.0.0.9")]))
        }
        for identity in ["x", "y", "z"] {
            let task = run(try cluster.controller(identity))
            await eventually("the Warning stands") {
                cluster.events(reason: "EnrollmentKeyInvalid", node: "g").count == 1
            }
            try await Task.sleep(for: .milliseconds(700))
            await stop(task)
        }
        XCTAssertEqual(cluster.events(reason: "EnrollmentKeyInvalid", node: "g").count, 1, "three terms, one Event")
        try await cluster.stop()
    }

    func testARotationRequestOnANodeWithoutAKeySaysWhy() async throws {
        let cluster = try await TestCluster()
        try cluster.server.withStore(.nodes) { store in
            _ = try store.create(TestCluster.node("u", enrollmentKey: nil, addresses: [("InternalIP", "10.0.0.9")]))
        }
        let task = run(try cluster.controller("x"))
        try await cluster.annotate("u", [Annotation.rotateRequest: "2026-11-27T10:00:00Z-1"])
        await eventually("the request that cannot be acted on is explained") {
            !self.notes(cluster, "RotationDeferred", node: "u").isEmpty
        }
        XCTAssertTrue(notes(cluster, "RotationDeferred", node: "u")[0].contains(Annotation.enrollmentKey))
        // Once the agent enrols, its first keypair answers the request.
        cluster.enrollment["u"] = WireGuardKeyPair.generate()
        try await cluster.annotate("u", [Annotation.enrollmentKey: cluster.enrollment["u"]!.publicKey.base64])
        await eventually("the first keypair answers it") {
            cluster.node("u")?.rotateAnswered == "2026-11-27T10:00:00Z-1"
        }
        XCTAssertEqual(cluster.node("u")?.keyGeneration, 1)
        await stop(task)
        try await cluster.stop()
    }
}
