import XCTest
import WGMeshCore

func node(_ name: String, _ index: Int, key: WireGuardKey? = nil, cidrs: [String]? = nil, endpoint: String? = nil)
    -> MeshNode
{
    var n = MeshNode(name: name)
    n.publicKey = key ?? WireGuardKeyPair.generate().publicKey
    n.podCIDRs = (cidrs ?? ["10.244.\(index).0/24"]).map { try! IPPrefix($0) }
    n.endpoint = try! Endpoint(endpoint ?? "192.0.2.\(index % 250 + 1):51820")
    n.keyGeneration = 1
    return n
}

final class MeshPlanTests: XCTestCase {
    let settings = ClusterSettings(
        clusterCIDRs: [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")], persistentKeepalive: 25)

    func testPeersRoutesAndStrictMode() throws {
        let nodes = [node("a", 1), node("b", 2, cidrs: ["10.244.2.0/24", "fd00:10:244:2::/64"]), node("c", 3)]
        let plan = MeshPlan(localNode: "a", settings: settings, nodes: nodes, interfaceIndex: 7)
        XCTAssertEqual(Set(plan.peers.map(\.node)), ["b", "c"])
        let b = try XCTUnwrap(plan.peers.first { $0.node == "b" })
        XCTAssertEqual(b.allowedIPs, [try IPPrefix("10.244.2.0/24"), try IPPrefix("fd00:10:244:2::/64")])
        XCTAssertEqual(b.persistentKeepalive, 25)
        XCTAssertEqual(
            Set(plan.routes.map(\.destination.description)),
            ["10.244.2.0/24", "fd00:10:244:2::/64", "10.244.3.0/24", "10.244.0.0/16", "fd00:10:244::/48"])
        XCTAssertTrue(plan.routes.allSatisfy { $0.interfaceIndex == 7 })
        XCTAssertEqual(plan.excluded, [])

        var loose = settings
        loose.strict = false
        XCTAssertEqual(MeshPlan(localNode: "a", settings: loose, nodes: nodes, interfaceIndex: 7).routes.count, 3)
    }

    func testIncompleteAndConflictingNodesAreLeftOutWithAReason() throws {
        let shared = WireGuardKeyPair.generate().publicKey
        var noKey = node("nokey", 4)
        noKey.publicKey = nil
        var noEndpoint = node("noendpoint", 5)
        noEndpoint.endpoint = nil
        var overridden = node("override", 6)
        overridden.endpoint = nil
        overridden.endpointOverride = try Endpoint("[2001:db8::6]:51820")
        let nodes = [
            node("local", 1), node("twin1", 2, key: shared), node("twin2", 3, key: shared),
            node("wide", 10, cidrs: ["10.244.8.0/22"]), node("narrow", 11, cidrs: ["10.244.9.0/24"]),
            node("stranger", 12, cidrs: ["10.9.0.0/24"]), node("squatter", 13, cidrs: ["10.244.1.0/24"]),
            noKey, noEndpoint, overridden, node("fine", 14),
        ]
        let plan = MeshPlan(localNode: "local", settings: settings, nodes: nodes, interfaceIndex: 1)
        XCTAssertEqual(Set(plan.peers.map(\.node)), ["override", "fine"])
        XCTAssertEqual(plan.peers.first { $0.node == "override" }?.endpoint, try Endpoint("[2001:db8::6]:51820"))
        let reasons = Dictionary(uniqueKeysWithValues: plan.excluded.map { ($0.node, $0.reason) })
        XCTAssertEqual(
            Set(reasons.keys), ["twin1", "twin2", "wide", "narrow", "stranger", "squatter", "nokey", "noendpoint"])
        XCTAssertTrue(reasons["twin1"]!.contains("also claimed by twin2"))
        XCTAssertTrue(reasons["wide"]!.contains("overlaps 10.244.9.0/24 of node narrow"))
        XCTAssertTrue(reasons["squatter"]!.contains("of node local"))
        XCTAssertTrue(reasons["stranger"]!.contains("outside the cluster CIDRs"))
        XCTAssertFalse(
            plan.routes.contains { $0.destination == (try? IPPrefix("10.244.1.0/24")) },
            "never a route for our own CIDR")
    }

    func testNextKeyIsPreStagedWithoutAllowedIPs() throws {
        var b = node("b", 2)
        b.nextPublicKey = WireGuardKeyPair.generate().publicKey
        let plan = MeshPlan(localNode: "a", settings: settings, nodes: [node("a", 1), b], interfaceIndex: 1)
        XCTAssertEqual(plan.peers.count, 2)
        XCTAssertEqual(plan.peers.first { $0.publicKey == b.nextPublicKey }?.allowedIPs, [])
        XCTAssertEqual(plan.peers.first { $0.publicKey == b.publicKey }?.allowedIPs, b.podCIDRs)
    }

    /// What makes an agent write `applied-peers` at once: a node routed to another key. A join, a node
    /// leaving or a next key pre-staged waits for the resync period.
    func testOnlyARoutedKeyThatChangesMovesKeys() throws {
        let (a, b) = (node("a", 1), node("b", 2))
        func moves(_ from: [MeshNode], _ to: [MeshNode]) -> Bool {
            var planner = MeshPlanner(localNode: "a", settings: settings, interfaceIndex: 1, nodes: from)
            var changes: [String: MeshNode?] = [:]
            for gone in from where !to.contains(where: { $0.name == gone.name }) { changes[gone.name] = .some(nil) }
            for n in to { changes[n.name] = .some(n) }
            return planner.apply(changes).movesKeys
        }
        XCTAssertFalse(moves([a, b], [a, b, node("c", 3)]), "a join")
        XCTAssertFalse(moves([a, b], [a]), "a node gone")
        var staged = b
        staged.nextPublicKey = WireGuardKeyPair.generate().publicKey
        XCTAssertFalse(moves([a, b], [a, staged]), "a next key pre-staged")
        var switched = staged
        switched.publicKey = staged.nextPublicKey
        switched.nextPublicKey = nil
        XCTAssertTrue(moves([a, staged], [a, switched]), "b routed to its new key")
        XCTAssertFalse(moves([a, b], [a, b]))
    }
}
