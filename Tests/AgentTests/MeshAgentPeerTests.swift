import Agent
import Foundation
import Kube
import KubeTestSupport
import TestSupport
import WGMeshCore
import XCTest

/// Outside peers end to end against the test API server (serving the Peer CRD of manifests/) and the real
/// controller, with the kernels in memory: the gateway holds the peer, every other node routes it to the
/// gateway, and removal ends both.
extension MeshAgentTests {
    func testAPeerIsHeldByItsGatewayAndRoutedThroughItByEveryOtherNode() async throws {
        let h = try await harness(nodes: ["n1", "n2", "n3"])
        try h.server.installPeerCRD()
        let peerCIDRs = [try IPPrefix("10.250.0.0/16"), try IPPrefix("fd00:10:250::/112")]
        // n2 is the one gateway.
        _ = try await h.client.patch(
            .nodes, namespace: nil, name: "n2",
            .merge(.object(["metadata": .object(["labels": .object([PeerIssuance.gatewayLabel: "true"])])])))
        let controller = try controller(h, peerCIDRs: peerCIDRs)
        let n2Kernel = FakeKernel()
        let n1 = agent(h, peerCIDRs: peerCIDRs)
        let n2 = agent(h, node: "n2", kernel: n2Kernel, peerCIDRs: peerCIDRs)
        try await enrol(h, ["n3"])
        let runs = [Task { _ = try? await n1.run() }, Task { _ = try? await n2.run() }]
        await eventually("n1 has its two peers") { (try? h.kernel.device(named: "wgmesh0").peers.count) == 2 }

        let laptop = WireGuardKeyPair.generate().publicKey
        _ = try await h.client.create(
            .peers, namespace: nil,
            .object([
                "apiVersion": "wgmesh.dev/v1alpha1", "kind": "Peer", "metadata": .object(["name": "laptop"]),
                "spec": .object([
                    "publicKey": .string(laptop.base64), "persistentKeepalive": .integer(25),
                    "allowedIPs": .array(["192.168.77.0/24"]),
                ]),
            ]))
        await eventually("the controller admits it, with n2 as its gateway") {
            let peer = try? await Peer(h.client.get(.peers, namespace: nil, name: "laptop"))
            return peer?.gateway == "n2" && peer?.addresses == ["10.250.0.1", "fd00:10:250::1"]
        }
        // n2 holds the laptop: no endpoint (it is behind NAT), its keepalive, its addresses and network.
        await eventually("n2 holds the laptop") {
            (try? n2Kernel.device(named: "wgmesh0").peers.contains { $0.publicKey == laptop }) == true
        }
        let held = try XCTUnwrap(try n2Kernel.device(named: "wgmesh0").peers.first { $0.publicKey == laptop })
        XCTAssertNil(held.endpoint)
        XCTAssertEqual(held.persistentKeepalive, 0, "the laptop keeps its NAT open; the gateway has nowhere to send")
        XCTAssertEqual(
            Set(held.allowedIPs.map(\.description)), ["10.250.0.1/32", "fd00:10:250::1/128", "192.168.77.0/24"])
        // n1 routes the laptop's prefixes to n2's key, over the tunnel; it does not hold the laptop.
        let n2Annotations = try await h.node("n2").metadata.annotations
        let n2Key = try XCTUnwrap(MeshNode(name: "n2", annotations: n2Annotations).publicKey)
        await eventually("n1 routes the laptop through n2") {
            let viaN2 = try? h.kernel.device(named: "wgmesh0").peers.first { $0.publicKey == n2Key }
            return viaN2?.allowedIPs.contains { $0.description == "10.250.0.1/32" } == true
        }
        XCTAssertFalse(try h.kernel.device(named: "wgmesh0").peers.contains { $0.publicKey == laptop })
        let routes = try h.kernel.routes(family: nil).map(\.destination.description)
        for prefix in ["10.250.0.1/32", "fd00:10:250::1/128", "192.168.77.0/24", "10.250.0.0/16", "fd00:10:250::/112"] {
            XCTAssertTrue(routes.contains(prefix), "n1 routes \(prefix) into the tunnel: \(routes)")
        }
        // Never masqueraded: the peer range and the network behind it are in the ruleset's mesh set.
        XCTAssertTrue(h.kernel.ruleset?.contains("10.250.0.0/16") == true)
        XCTAssertTrue(h.kernel.ruleset?.contains("192.168.77.0/24") == true)
        // The nodes' report stays about Nodes: n2's applied-peers is the digest of n1's and n3's keys.
        let nodes = try await h.client.listAll(.nodes, namespace: nil).items.map {
            try MeshNode(name: $0.metadata.name, annotations: $0.metadata.annotations)
        }
        await eventually("n2 publishes applied-peers of the Nodes alone") {
            await h.annotation("n2", Annotation.appliedPeers)
                == AppliedPeers.expected(for: "n2", nodes: nodes, clusterCIDRs: self.clusterCIDRs)
        }

        // Removed: n2 drops the laptop and n1 its routes, at once (a Peer event makes a full pass).
        try await h.client.delete(.peers, namespace: nil, name: "laptop")
        await eventually("n2 no longer holds the laptop") {
            (try? n2Kernel.device(named: "wgmesh0").peers.contains { $0.publicKey == laptop }) == false
        }
        await eventually("n1 no longer routes it") {
            (try? h.kernel.routes(family: nil).contains { $0.destination.description == "10.250.0.1/32" }) == false
        }
        XCTAssertTrue(
            try h.kernel.routes(family: nil).contains { $0.destination.description == "10.250.0.0/16" },
            "the strict route to the peer range stays: an address without a peer is dropped, not sent in the clear")
        try await stop(h, runs[0], runs[1], controller)
    }
}
