import XCTest
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

final class OutsidePeerTests: XCTestCase {
    let key = WireGuardKeyPair.generate().publicKey.base64
    let cluster = [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")]
    let range = [try! IPPrefix("10.250.0.0/16"), try! IPPrefix("fd00:10:250::/112")]
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func spec(
        _ name: String, key: String? = nil, allowedIPs: [String] = [], endpoint: String? = nil, expiresAt: String? = nil
    ) -> Result<OutsidePeer, PeerSpecError> {
        Result { () throws(PeerSpecError) in
            try OutsidePeer(
                name: name, publicKey: key ?? WireGuardKeyPair.generate().publicKey.base64, endpoint: endpoint,
                persistentKeepalive: 25, allowedIPs: allowedIPs, expiresAt: expiresAt)
        }
    }

    func input(_ name: String, _ spec: Result<OutsidePeer, PeerSpecError>, gateway: String? = nil) -> PeerIssuance.Input
    {
        var status = OutsidePeer.Status()
        status.gateway = gateway
        return .init(name: name, spec: spec, status: status)
    }

    func candidates(_ names: [String], labelled: Set<String> = []) -> [PeerIssuance.Candidate] {
        names.enumerated().map { i, n in .init(node: node(n, i + 1), labelled: labelled.contains(n)) }
    }

    func testASpecThatDoesNotReadNamesTheFieldTheValueAndTheFix() {
        func error(_ r: Result<OutsidePeer, PeerSpecError>) -> String {
            guard case .failure(let e) = r else { return "no error" }
            return e.description
        }
        XCTAssertTrue(error(spec("p", key: "abc")).contains("spec.publicKey \"abc\""), error(spec("p", key: "abc")))
        XCTAssertTrue(error(spec("p", allowedIPs: ["192.168.1.1/24"])).contains("write the network, 192.168.1.0/24"))
        let overlap = error(spec("p", allowedIPs: ["192.168.0.0/16", "192.168.4.0/24"]))
        XCTAssertTrue(overlap.contains("\"192.168.4.0/24\": overlaps 192.168.0.0/16"), overlap)
        XCTAssertTrue(error(spec("p", endpoint: "nohost")).contains("spec.endpoint"))
        XCTAssertTrue(error(spec("p", expiresAt: "tomorrow")).contains("spec.expiresAt \"tomorrow\""))
        XCTAssertNoThrow(try spec("p", allowedIPs: ["192.168.4.0/24", "fd00:77::/64"]).get())
    }

    func testAddressesOnePerFamilyNeverTheNetworkNeverTwiceFreedOnlyOnDelete() throws {
        var issuance = try PeerIssuance(peerCIDRs: range, clusterCIDRs: cluster)
        let nodes = candidates(["n1", "n2"])
        var out = issuance.decide([input("a", spec("a")), input("b", spec("b"))], candidates: nodes, now: t0)
        XCTAssertEqual(out["a"]?.addresses.map(\.description), ["10.250.0.1", "fd00:10:250::1"])
        XCTAssertEqual(out["b"]?.addresses.map(\.description), ["10.250.0.2", "fd00:10:250::2"])
        XCTAssertEqual(out["a"]?.ready, true)
        // Decided again: the same addresses.
        out = issuance.decide([input("a", spec("a")), input("b", spec("b"))], candidates: nodes, now: t0)
        XCTAssertEqual(out["b"]?.addresses.map(\.description), ["10.250.0.2", "fd00:10:250::2"])
        // A's deleted: its addresses go to the next new Peer, not before.
        issuance.release("a")
        out = issuance.decide([input("b", spec("b")), input("c", spec("c"))], candidates: nodes, now: t0)
        XCTAssertEqual(out["c"]?.addresses.map(\.description), ["10.250.0.1", "fd00:10:250::1"])
    }

    func testARestartRestoresFromTheStatusesAndAnAddressHeldTwiceGoesToTheOlderPeer() throws {
        // As a new term does: every status restored, oldest first, before anything new is handed out.
        var issuance = try PeerIssuance(peerCIDRs: range, clusterCIDRs: cluster)
        let a = [try IPAddress("10.250.0.7"), try IPAddress("fd00:10:250::7")]
        XCTAssertEqual(issuance.restore("old", addresses: a), [])
        // Copied by hand onto a newer Peer: refused, so it gets new ones.
        XCTAssertEqual(issuance.restore("copy", addresses: a), a)
        XCTAssertEqual(issuance.restore("outside", addresses: [try IPAddress("10.9.9.9")]).count, 1)
        let out = issuance.decide(
            [input("old", spec("old")), input("copy", spec("copy")), input("new", spec("new"))],
            candidates: candidates(["n1"]), now: t0)
        XCTAssertEqual(out["old"]?.addresses, a)
        XCTAssertEqual(out["copy"]?.addresses.map(\.description), ["10.250.0.1", "fd00:10:250::1"])
        XCTAssertEqual(out["new"]?.addresses.map(\.description), ["10.250.0.2", "fd00:10:250::2"])
    }

    func testConflictsAreRefusedWithAReasonAndTheOlderPeerKeepsWhatItHas() throws {
        var issuance = try PeerIssuance(peerCIDRs: range, clusterCIDRs: cluster)
        let nodes = candidates(["n1", "n2"])
        let nodeKey = nodes[0].node.publicKey!.base64
        let out = issuance.decide(
            [
                input("site", spec("site", key: key, allowedIPs: ["192.168.0.0/16"])),
                input("copy", spec("copy", key: key)),
                input("nodekey", spec("nodekey", key: nodeKey)),
                input("pods", spec("pods", allowedIPs: ["10.244.7.0/24"])),
                input("range", spec("range", allowedIPs: ["10.250.0.0/24"])),
                input("within", spec("within", allowedIPs: ["192.168.3.0/24"])),
                input("bad", spec("bad", key: "abc")),
            ], candidates: nodes, now: t0)
        XCTAssertEqual(out["site"]?.ready, true)
        for (name, words) in [
            ("copy", "also Peer site's"), ("nodekey", "is node n1's key"), ("pods", "overlaps the cluster CIDR"),
            ("range", "overlaps the peer range"), ("within", "overlaps 192.168.0.0/16 of Peer site"),
        ] {
            XCTAssertEqual(out[name]?.reason, .conflict, name)
            XCTAssertEqual(out[name]?.gateway, nil, name)
            XCTAssertTrue(out[name]?.message.contains(words) == true, "\(name): \(out[name]?.message ?? "")")
        }
        XCTAssertEqual(out["bad"]?.reason, .invalid)
        XCTAssertEqual(out["bad"]?.addresses.count, 2, "a refused Peer keeps its addresses until it is deleted")
    }

    func testAnExpiredPeerLosesItsGatewayAtExpiresAt() throws {
        var issuance = try PeerIssuance(peerCIDRs: range, clusterCIDRs: cluster)
        let at = RFC3339.format(t0.addingTimeInterval(60))
        let peers = [input("p", spec("p", expiresAt: at))]
        XCTAssertEqual(issuance.decide(peers, candidates: candidates(["n1"]), now: t0)["p"]?.ready, true)
        let expired = try XCTUnwrap(
            issuance.decide(peers, candidates: candidates(["n1"]), now: t0.addingTimeInterval(60))["p"])
        XCTAssertEqual(expired.reason, .expired)
        XCTAssertNil(expired.gateway)
        XCTAssertTrue(expired.message.contains("expired at \(at)"), expired.message)
    }

    func testTheGatewayIsALabelledNodeInTheMeshAndStaysWhileItCan() throws {
        var issuance = try PeerIssuance(peerCIDRs: range, clusterCIDRs: cluster)
        var nodes = candidates(["n1", "n2", "n3", "n4"], labelled: ["n2", "n3"])
        let peers = (0..<20).map { input("p\($0)", spec("p\($0)")) }
        let out = issuance.decide(peers, candidates: nodes, now: t0)
        let gateways = Set(out.values.compactMap(\.gateway))
        XCTAssertEqual(gateways, ["n2", "n3"], "both labelled nodes hold some of 20 peers, no other node does")
        // A peer keeps its gateway when another node is labelled.
        nodes[0].labelled = true
        let again = issuance.decide(
            out.map { input($0.key, spec($0.key), gateway: $0.value.gateway) }, candidates: nodes, now: t0)
        XCTAssertEqual(again.mapValues(\.gateway), out.mapValues(\.gateway))
        // A gateway that leaves the mesh (no key) is replaced.
        nodes[1].node.publicKey = nil
        let moved = issuance.decide(
            out.map { input($0.key, spec($0.key), gateway: $0.value.gateway) }, candidates: nodes, now: t0)
        XCTAssertFalse(moved.values.contains { $0.gateway == "n2" })
        XCTAssertEqual(moved.values.filter { $0.gateway == nil }.count, 0)
        // No node in the mesh: not ready, saying so.
        let none = issuance.decide([input("x", spec("x"))], candidates: [], now: t0)
        XCTAssertEqual(none["x"]?.reason, .noGateway)
    }

    func testAPeerRangeMustBeOnePerFamilyAndOutsideTheCluster() {
        XCTAssertThrowsError(try PeerIssuance(peerCIDRs: [try! IPPrefix("10.244.128.0/24")], clusterCIDRs: cluster)) {
            XCTAssertTrue("\($0)".contains("overlaps the cluster CIDR 10.244.0.0/16"), "\($0)")
        }
        XCTAssertThrowsError(
            try PeerIssuance(
                peerCIDRs: [try! IPPrefix("10.250.0.0/16"), try! IPPrefix("10.251.0.0/16")], clusterCIDRs: cluster))
    }

    func testEveryNodeRoutesAPeerThroughItsGatewayWhichHoldsIt() throws {
        var peer = try spec("laptop", allowedIPs: ["192.168.9.0/24"]).get()
        peer.status.addresses = [try IPAddress("10.250.0.1")]
        let settings = ClusterSettings(clusterCIDRs: cluster, peerCIDRs: [try IPPrefix("10.250.0.0/16")])
        var gateway = node("gw", 1)
        let other = node("n2", 2)
        // On n2: the gateway's peer carries the laptop's prefixes, routed into the tunnel.
        gateway.gatewayPrefixes = peer.prefixes
        let onOther = MeshPlan(localNode: "n2", settings: settings, nodes: [gateway, other], interfaceIndex: 3)
        let viaGateway = try XCTUnwrap(onOther.peers.first { $0.node == "gw" })
        XCTAssertEqual(
            viaGateway.allowedIPs.map(\.description), ["10.244.1.0/24", "10.250.0.1/32", "192.168.9.0/24"])
        XCTAssertTrue(onOther.routes.contains { $0.destination.description == "10.250.0.1/32" && $0.metric == 0 })
        XCTAssertTrue(onOther.routes.contains { $0.destination.description == "10.250.0.0/16" }, "strict route")
        // On the gateway: the laptop is a peer of its own, without endpoint, with its keepalive.
        let onGateway = MeshPlan(
            localNode: "gw", settings: settings, nodes: [node("gw", 1), other, MeshNode(outsidePeer: peer)],
            interfaceIndex: 3)
        let laptop = try XCTUnwrap(onGateway.peers.first { $0.node == "peer/laptop" })
        XCTAssertNil(laptop.endpoint)
        XCTAssertEqual(laptop.persistentKeepalive, 0, "no endpoint to keep alive: the laptop's own keepalives do")
        var site = try spec("site", endpoint: "198.51.100.7:51820").get()
        site.status.addresses = [try IPAddress("10.250.0.2")]
        XCTAssertEqual(MeshNode(outsidePeer: site).outsidePeerKeepalive, 25, "a peer with an endpoint: the gateway too")
        XCTAssertEqual(laptop.allowedIPs.map(\.description), ["10.250.0.1/32", "192.168.9.0/24"])
        XCTAssertEqual(onGateway.routedNodeKeys, [other.publicKey!], "applied-peers counts the Nodes only")
        XCTAssertEqual(onGateway.nodesOnly.peers.map(\.node), ["n2"])
        // Planned incrementally, the same.
        var planner = MeshPlanner(
            localNode: "gw", settings: settings, interfaceIndex: 3, nodes: [node("gw", 1), other])
        _ = planner.apply(["peer/laptop": MeshNode(outsidePeer: peer)])
        XCTAssertEqual(planner.plan, onGateway)
        XCTAssertEqual(planner.routedKeys, [other.publicKey!])
    }
}
