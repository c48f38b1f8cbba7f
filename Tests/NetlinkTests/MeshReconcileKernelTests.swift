import XCTest
import WGMeshCore
@testable import Netlink

/// The core's plan and diff, applied to a real kernel through this module: one reconcile converges,
/// and the next diff is empty. Skipped on hosts without kernel WireGuard; run by scripts/vm-test.sh.
final class MeshReconcileKernelTests: XCTestCase {
    func testDiffAppliedToTheKernelConvergesAndOneChangeIsOneOperation() throws {
        try KernelSupport.requireWireGuard()
        let network = try KernelNetwork()
        let wireguard = try KernelWireGuard()
        let scratch = try ScratchLink("wgmt-mesh", network: network)
        try network.setLink(index: scratch.link.index, mtu: nil, up: true)
        let settings = ClusterSettings(
            clusterCIDRs: [try IPPrefix("10.244.0.0/16"), try IPPrefix("fd00:10:244::/48")], persistentKeepalive: 25)

        var nodes = [MeshNode(name: "local")]
        nodes[0].podCIDRs = [try IPPrefix("10.244.0.0/24")]
        for i in 1...40 {
            var n = MeshNode(name: "node-\(i)")
            n.publicKey = WireGuardKeyPair.generate().publicKey
            n.podCIDRs = [try IPPrefix("10.244.\(i).0/24"), try IPPrefix("fd00:10:244:\(String(i, radix: 16))::/64")]
            n.endpoint =
                i % 2 == 0
                ? try Endpoint("192.0.2.\(i):51820") : try Endpoint("[2001:db8::\(String(i, radix: 16))]:51820")
            if i % 10 == 0 { n.nextPublicKey = WireGuardKeyPair.generate().publicKey }  // mid-rotation
            nodes.append(n)
        }
        // What a previous run or a person left: stray peers, a preshared key, a stale route of ours.
        try wireguard.configure(
            scratch.link.name,
            DeviceConfig(
                listenPort: 40000,
                peers: [
                    PeerConfig(
                        publicKey: WireGuardKeyPair.generate().publicKey, allowedIPs: [try IPPrefix("10.244.99.0/24")]),
                    PeerConfig(
                        publicKey: nodes[3].publicKey!, presharedKey: testKey(9),
                        allowedIPs: [try IPPrefix("10.244.77.0/24")]),
                ]))
        try network.add(Route(destination: try IPPrefix("10.244.99.0/24"), interfaceIndex: scratch.link.index))

        func reconcile(_ nodes: [MeshNode]) throws -> MeshDiff {
            let plan = MeshPlan(
                localNode: "local", settings: settings, nodes: nodes, interfaceIndex: scratch.link.index)
            XCTAssertEqual(plan.excluded, [])
            let ours = { (r: Route) in r.interfaceIndex == scratch.link.index }
            let diff = MeshDiff(
                plan: plan, actual: try wireguard.device(named: scratch.link.name),
                actualRoutes: try network.routes(family: nil).filter(ours))
            try diff.apply(interface: scratch.link.name, wireGuard: wireguard, routes: network)
            let after = MeshDiff(
                plan: plan, actual: try wireguard.device(named: scratch.link.name),
                actualRoutes: try network.routes(family: nil).filter(ours))
            XCTAssertTrue(after.isEmpty, "not converged: \(after)")
            return diff
        }

        let first = try reconcile(nodes)
        XCTAssertEqual(first.device.peers.filter(\.remove).count, 1, "the stray peer went")
        XCTAssertEqual(first.routesToDelete.map(\.destination), [try IPPrefix("10.244.99.0/24")])
        let state = try wireguard.device(named: scratch.link.name)
        XCTAssertEqual(state.peers.count, 44, "40 nodes and 4 pre-staged next keys")
        XCTAssertEqual(state.listenPort, 51820)
        XCTAssertNil(state.peers.first { $0.publicKey == nodes[3].publicKey }?.presharedKey)

        nodes[17].endpoint = try Endpoint("198.51.100.17:51821")
        let second = try reconcile(nodes)
        XCTAssertEqual(
            second.device.peers,
            [PeerConfig(publicKey: nodes[17].publicKey!, endpoint: nodes[17].endpoint, updateOnly: true)])
        XCTAssertTrue(second.routesToAdd.isEmpty && second.routesToReplace.isEmpty && second.routesToDelete.isEmpty)
    }
}
