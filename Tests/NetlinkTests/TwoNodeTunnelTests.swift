import TestSupport
import XCTest
import WGMeshCore
@testable import Netlink

/// Two "nodes" (network namespaces joined by veth) ping each other's Pod address through two WireGuard
/// interfaces configured only by this code. Skipped on hosts without kernel WireGuard; run by scripts/vm-test.sh.
final class TwoNodeTunnelTests: XCTestCase {
    let namespaces = ["wgmt-node-a", "wgmt-node-b"]

    override func setUpWithError() throws {
        try KernelSupport.requireWireGuard()
        tearDownNamespaces()
        // The underlay: documentation addresses (RFC 5737) on a veth pair between two namespaces of our own.
        try sh(
            """
            ip netns add wgmt-node-a && ip netns add wgmt-node-b &&
            ip link add wgmt-veth-a netns wgmt-node-a type veth peer name wgmt-veth-b netns wgmt-node-b &&
            ip -n wgmt-node-a addr add 192.0.2.1/24 dev wgmt-veth-a && ip -n wgmt-node-a link set wgmt-veth-a up &&
            ip -n wgmt-node-b addr add 192.0.2.2/24 dev wgmt-veth-b && ip -n wgmt-node-b link set wgmt-veth-b up &&
            ip -n wgmt-node-a link set lo up && ip -n wgmt-node-b link set lo up
            """)
    }

    override func tearDown() { tearDownNamespaces() }

    func tearDownNamespaces() {
        for ns in namespaces { _ = try? sh("ip netns del \(ns)", allowFailure: true) }
    }

    struct Node {
        let namespace: String
        let keys = WireGuardKeyPair.generate()
        let underlay: IPAddress
        let podCIDR: IPPrefix
        var podAddress: IPPrefix {
            try! IPPrefix(address: IPAddress(family: .v4, value: podCIDR.network.value + 1), length: 32)
        }
    }

    func testPingThroughWireGuardConfiguredByThisCode() throws {
        let a = Node(
            namespace: "wgmt-node-a", underlay: try IPAddress("192.0.2.1"), podCIDR: try IPPrefix("10.244.1.0/24"))
        let b = Node(
            namespace: "wgmt-node-b", underlay: try IPAddress("192.0.2.2"), podCIDR: try IPPrefix("10.244.2.0/24"))
        for (me, peer) in [(a, b), (b, a)] {
            let path = "/run/netns/\(me.namespace)"
            let network = try KernelNetwork(namespacePath: path)
            let wireguard = try KernelWireGuard(namespacePath: path)
            let link = try network.createWireGuardLink(named: "wgmesh0", mtu: 1420)
            try wireguard.configure(
                "wgmesh0",
                DeviceConfig(
                    privateKey: me.keys.privateKey, listenPort: 51820, replacePeers: true,
                    peers: [
                        PeerConfig(
                            publicKey: peer.keys.publicKey, endpoint: Endpoint(address: peer.underlay, port: 51820),
                            persistentKeepalive: 0, allowedIPs: [peer.podCIDR], replaceAllowedIPs: true)
                    ]))
            try network.addAddress(me.podAddress, toLinkIndex: link.index, scope: TunnelAddressing.scope)
            try network.setLink(index: link.index, mtu: nil, up: true)
            try network.add(Route(destination: peer.podCIDR, interfaceIndex: link.index))
        }
        let out = try sh(
            "ip netns exec wgmt-node-a ping -c 3 -W 2 -I \(a.podAddress.address) \(b.podAddress.address) 2>&1")
        XCTAssertTrue(out.contains("3 received"), out)

        // The packets went through WireGuard: both sides saw a handshake and counted bytes.
        for (me, peer) in [(a, b), (b, a)] {
            let state = try KernelWireGuard(namespacePath: "/run/netns/\(me.namespace)").device(named: "wgmesh0")
            let p = try XCTUnwrap(state.peers.first { $0.publicKey == peer.keys.publicKey })
            XCTAssertNotNil(p.lastHandshake, "\(me.namespace) has no handshake with its peer")
            XCTAssertGreaterThan(p.receivedBytes, 0)
            XCTAssertGreaterThan(p.transmittedBytes, 0)
            XCTAssertEqual(p.endpoint, Endpoint(address: peer.underlay, port: 51820))
        }
    }
}
