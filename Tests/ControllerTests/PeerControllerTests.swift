import Controller
import Foundation
import Kube
import KubeTestSupport
import TestSupport
import WGMeshCore
import XCTest

/// The controller's outside peers against the test API server serving the Peer CRD of manifests/: addresses
/// reserved and kept across restarts and failovers, freed only on delete; conflicts and expiry said in the
/// Peer's Ready condition and an Event.
final class PeerControllerTests: XCTestCase {
    // Outside the test cluster CIDRs (10.240.0.0/12, fd00:10:244::/48).
    let peerCIDRs = ["192.168.250.0/24", "fd00:10:250::/112"]

    func cluster(nodes: [String]) async throws -> TestCluster {
        let c = try await TestCluster()
        try c.server.installPeerCRD()
        try c.addNodes(nodes)
        return c
    }

    func createPeer(
        _ c: TestCluster, _ name: String, key: String = WireGuardKeyPair.generate().publicKey.base64,
        allowedIPs: [String] = [], expiresAt: Date? = nil
    ) async throws {
        var spec: [String: JSON] = ["publicKey": .string(key), "persistentKeepalive": .integer(25)]
        if !allowedIPs.isEmpty { spec["allowedIPs"] = .array(allowedIPs.map(JSON.string)) }
        if let expiresAt { spec["expiresAt"] = .string(RFC3339.format(expiresAt)) }
        _ = try await c.client.create(
            .peers, namespace: nil,
            .object([
                "apiVersion": "wgmesh.dev/v1alpha1", "kind": "Peer", "metadata": .object(["name": .string(name)]),
                "spec": .object(spec),
            ]))
    }

    func peer(_ c: TestCluster, _ name: String) async -> Peer? {
        (try? await c.client.get(.peers, namespace: nil, name: name)).map(Peer.init)
    }

    func ready(_ c: TestCluster, _ name: String) async -> Node.Condition? {
        await peer(c, name)?.conditions.first { $0.type == "Ready" }
    }

    func run(_ controller: MeshController) -> Task<Void, Never> { Task { await controller.run() } }

    func testAddressesAreKeptAcrossRestartsAndFailoverAndFreedOnlyOnDelete() async throws {
        let c = try await cluster(nodes: ["n1", "n2"])
        let first = run(try c.controller("one", peerCIDRs: peerCIDRs))
        await eventually("both nodes complete") { c.nodes().allSatisfy(TestCluster.isComplete) }
        try await createPeer(c, "a")
        try await createPeer(c, "b")
        await eventually("a and b ready") {
            let a = await ready(c, "a")?.status
            let b = await ready(c, "b")?.status
            return a == "True" && b == "True"
        }
        let found = await peer(c, "a")
        let a = try XCTUnwrap(found)
        XCTAssertEqual(a.addresses, ["192.168.250.1", "fd00:10:250::1"])
        let b = await peer(c, "b")
        XCTAssertEqual(b?.addresses, ["192.168.250.2", "fd00:10:250::2"])
        XCTAssertTrue(["n1", "n2"].contains(a.gateway ?? ""))
        XCTAssertEqual(c.events(reason: "PeerGatewayAssigned").count, 2)

        // A restart, with a Peer created while no controller ran: a and b keep theirs, c gets the next.
        first.cancel()
        await first.value
        try await createPeer(c, "c")
        let second = run(try c.controller("two", peerCIDRs: peerCIDRs))
        await eventually("c ready") { await ready(c, "c")?.status == "True" }
        let kept = await peer(c, "a")
        XCTAssertEqual(kept?.addresses, a.addresses)
        XCTAssertEqual(kept?.gateway, a.gateway, "the gateway stays")
        let third = await peer(c, "c")
        XCTAssertEqual(third?.addresses, ["192.168.250.3", "fd00:10:250::3"])

        // Deleted: a's addresses go to the next new Peer, d; never while a exists.
        try await c.client.delete(.peers, namespace: nil, name: "a")
        try await createPeer(c, "d")
        await eventually("d ready") { await ready(c, "d")?.status == "True" }
        let d = await peer(c, "d")
        XCTAssertEqual(d?.addresses, a.addresses)

        // Failover: the next replica restores every address, so d (newer than b and c, holding the lowest
        // address) keeps it: handed out by creation order instead, it would move, with b's and c's.
        var before: [String: [String]] = [:]
        for name in ["b", "c", "d"] { before[name] = await peer(c, name)?.addresses }
        second.cancel()
        await second.value
        try await createPeer(c, "e")
        let last = run(try c.controller("three", peerCIDRs: peerCIDRs))
        await eventually("e ready") { await ready(c, "e")?.status == "True" }
        var held: [String] = []
        for name in ["b", "c", "d", "e"] {
            let addresses = await peer(c, name)?.addresses ?? []
            if name != "e" { XCTAssertEqual(addresses, before[name], "\(name) keeps its addresses across a failover") }
            held += addresses
        }
        XCTAssertEqual(held.count, 8)
        XCTAssertEqual(Set(held).count, 8, "no address is held by two Peers: \(held)")
        last.cancel()
        await last.value
        try await c.stop()
    }

    func testAConflictIsRefusedInTheConditionAndAnEventAndAnExpiredPeerLosesItsGateway() async throws {
        let c = try await cluster(nodes: ["n1", "n2"])
        let controller = run(try c.controller("one", peerCIDRs: peerCIDRs))
        await eventually("both nodes complete") { c.nodes().allSatisfy(TestCluster.isComplete) }
        let nodeKey = try XCTUnwrap(c.node("n1")?.publicKey).base64
        try await createPeer(c, "thief", key: nodeKey)
        try await createPeer(c, "pods", allowedIPs: ["10.244.1.0/24"])
        try await createPeer(c, "short", expiresAt: Date().addingTimeInterval(3))
        await eventually("both conflicts said") {
            let thief = await ready(c, "thief")?.reason
            let pods = await ready(c, "pods")?.reason
            return thief == "Conflict" && pods == "Conflict"
        }
        let refused = await ready(c, "thief")
        let thief = try XCTUnwrap(refused)
        XCTAssertEqual(thief.status, "False")
        XCTAssertTrue(thief.message?.contains("is node n1's key") == true, thief.message ?? "")
        let thiefPeer = await peer(c, "thief")
        XCTAssertNil(thiefPeer?.gateway, "a refused Peer has no gateway: no node holds it")
        let pods = await ready(c, "pods")?.message ?? ""
        XCTAssertTrue(pods.contains("overlaps the cluster CIDR 10.240.0.0/12"), pods)
        await eventually("a Warning Event per refused Peer") { c.events(reason: "PeerConflict").count == 2 }
        XCTAssertEqual(c.events(reason: "PeerConflict").first?["regarding"]?["kind"]?.string, "Peer")

        await eventually("short is ready, then expired at its time") { await ready(c, "short")?.reason == "Expired" }
        let short = await peer(c, "short")
        XCTAssertNil(short?.gateway)
        XCTAssertEqual(short?.addresses.count, 2, "an expired Peer keeps its addresses until deleted")
        await eventually("an Event says so") { c.events(reason: "PeerExpired", node: "short").count == 1 }
        controller.cancel()
        await controller.value
        try await c.stop()
    }
}
