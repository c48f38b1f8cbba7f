import TestSupport
import XCTest
import WGMeshCore
@testable import Netlink

/// Kernel WireGuard over generic netlink. Skipped on hosts without it; run by scripts/vm-test.sh.
final class KernelWireGuardTests: XCTestCase {
    var network: KernelNetwork!
    var wireguard: KernelWireGuard!

    override func setUpWithError() throws {
        try KernelSupport.requireWireGuard()
        network = try KernelNetwork()
        wireguard = try KernelWireGuard()
    }

    func testDeviceIsConfiguredAndReadBackEqual() throws {
        let scratch = try ScratchLink("wgmt-rt", network: network)
        let device = WireGuardKeyPair.generate()
        let peers = [
            PeerConfig(
                publicKey: WireGuardKeyPair.generate().publicKey, presharedKey: testKey(1),
                endpoint: try Endpoint("192.0.2.10:51820"), persistentKeepalive: 25,
                allowedIPs: [try IPPrefix("10.244.1.0/24"), try IPPrefix("fd00:10:244:1::/64")]),
            PeerConfig(
                publicKey: WireGuardKeyPair.generate().publicKey,
                endpoint: try Endpoint("[2001:db8::20]:4500"), persistentKeepalive: 0,
                allowedIPs: [try IPPrefix("10.244.2.0/24")]),
            PeerConfig(publicKey: WireGuardKeyPair.generate().publicKey, allowedIPs: []),
        ]
        try wireguard.configure(
            scratch.link.name,
            DeviceConfig(
                privateKey: device.privateKey, listenPort: 51999,
                firewallMark: 0x5157, replacePeers: true, peers: peers))
        let state = try wireguard.device(named: scratch.link.name)
        XCTAssertEqual(state.name, scratch.link.name)
        XCTAssertEqual(state.interfaceIndex, scratch.link.index)
        XCTAssertEqual(state.privateKey, device.privateKey)
        XCTAssertEqual(state.publicKey, device.publicKey)
        XCTAssertEqual(state.listenPort, 51999)
        XCTAssertEqual(state.firewallMark, 0x5157)
        XCTAssertEqual(Set(state.peers.map(\.publicKey)), Set(peers.map(\.publicKey)))
        for want in peers {
            let got = try XCTUnwrap(state.peers.first { $0.publicKey == want.publicKey })
            XCTAssertEqual(got.presharedKey, want.presharedKey)
            XCTAssertEqual(got.endpoint, want.endpoint)
            XCTAssertEqual(got.persistentKeepalive, want.persistentKeepalive ?? 0)
            XCTAssertEqual(Set(got.allowedIPs), Set(want.allowedIPs))
            XCTAssertEqual(got.protocolVersion, 1)
            XCTAssertNil(got.lastHandshake)
        }
    }

    func testTenThousandPeersAreSetAndReadBackInFull() throws {
        // Deleting a link with 10,000 peers takes the kernel minutes under emulation (one RCU grace
        // period per peer), so this link lives in a namespace of its own whose deletion is asynchronous.
        try sh("ip netns del wgmt-10k 2>/dev/null; ip netns add wgmt-10k")
        defer { _ = try? sh("ip netns del wgmt-10k", allowFailure: true) }
        let network = try KernelNetwork(namespacePath: "/run/netns/wgmt-10k")
        let wireguard = try KernelWireGuard(namespacePath: "/run/netns/wgmt-10k")
        let link = try network.createWireGuardLink(named: "wgmt-10k", mtu: nil)
        let peers = (0..<10_000).map { i in
            PeerConfig(
                publicKey: testKey(i),
                endpoint: Endpoint(
                    address: IPAddress(family: .v4, value: UInt128(0xC000_0200 | UInt32(i % 200 + 1))),
                    port: UInt16(20000 + i % 1000)),
                allowedIPs: [
                    try! IPPrefix("10.\(i / 256 % 256).\(i % 256).0/24"),
                    try! IPPrefix(
                        address: IPAddress(family: .v6, value: UInt128(0xfd00_0010_0244) << 80 | UInt128(i) << 64),
                        length: 64),
                ])
        }
        try wireguard.configure(link.name, DeviceConfig(privateKey: testKey(-1), replacePeers: true, peers: peers))
        let sent = wireguard.setMessagesSent
        XCTAssertGreaterThan(sent, 1, "10,000 peers cannot fit one message")
        let state = try wireguard.device(named: link.name)
        XCTAssertEqual(state.peers.count, 10_000)
        let byKey = Dictionary(uniqueKeysWithValues: state.peers.map { ($0.publicKey, $0) })
        for p in peers {
            let got = try XCTUnwrap(byKey[p.publicKey])
            XCTAssertEqual(got.endpoint, p.endpoint)
            XCTAssertEqual(Set(got.allowedIPs), Set(p.allowedIPs))
        }
        print("10,000 peers went in \(sent) SET messages")
    }

    func testOnePeerWithThousandsOfAllowedIPsCrossesMessages() throws {
        let scratch = try ScratchLink("wgmt-big", network: network)
        let ips = (0..<6000).map { try! IPPrefix("10.\($0 / 256).\($0 % 256).0/24") }
        try wireguard.configure(
            scratch.link.name, DeviceConfig(peers: [PeerConfig(publicKey: testKey(5), allowedIPs: ips)]))
        // Replace them in one call: replace-allowed-ips must act once, not in every fragment.
        let fewer = Array(ips.prefix(4000))
        try wireguard.configure(
            scratch.link.name,
            DeviceConfig(peers: [PeerConfig(publicKey: testKey(5), allowedIPs: fewer, replaceAllowedIPs: true)]))
        let state = try wireguard.device(named: scratch.link.name)
        XCTAssertEqual(state.peers.count, 1, "the kernel's split answer is coalesced into one peer")
        XCTAssertEqual(Set(state.peers[0].allowedIPs), Set(fewer))
    }

    func testPeerRemovalAndUpdateOnly() throws {
        let scratch = try ScratchLink("wgmt-upd", network: network)
        let a = testKey(1)
        let b = testKey(2)
        let absent = testKey(3)
        try wireguard.configure(
            scratch.link.name,
            DeviceConfig(peers: [
                PeerConfig(
                    publicKey: a, endpoint: try Endpoint("192.0.2.1:1000"), allowedIPs: [try IPPrefix("10.1.0.0/24")]),
                PeerConfig(publicKey: b, allowedIPs: [try IPPrefix("10.2.0.0/24")]),
            ]))
        try wireguard.configure(
            scratch.link.name,
            DeviceConfig(peers: [
                PeerConfig(publicKey: a, endpoint: try Endpoint("[2001:db8::1]:2000"), updateOnly: true),
                PeerConfig(publicKey: absent, allowedIPs: [try IPPrefix("10.3.0.0/24")], updateOnly: true),
                .removal(of: b),
            ]))
        let state = try wireguard.device(named: scratch.link.name)
        XCTAssertEqual(state.peers.map(\.publicKey), [a], "b removed, update-only did not create the absent peer")
        XCTAssertEqual(state.peers[0].endpoint, try Endpoint("[2001:db8::1]:2000"))
        XCTAssertEqual(state.peers[0].allowedIPs, [try IPPrefix("10.1.0.0/24")], "update-only left allowed IPs alone")
    }

    func testErrorsNameTheOperationAndErrno() throws {
        XCTAssertThrowsError(try wireguard.device(named: "wgmt-nothere")) { error in
            let e = error as? NetlinkError
            XCTAssertEqual(e?.errno, ENODEV)
            XCTAssertTrue("\(error)".contains("get wireguard device \"wgmt-nothere\""), "\(error)")
        }
        XCTAssertThrowsError(try wireguard.configure("wgmt-nothere", DeviceConfig(peers: [.removal(of: testKey(1))]))) {
            error in
            XCTAssertTrue("\(error)".contains("remove peer \(testKey(1)) on wgmt-nothere"), "\(error)")
            XCTAssertEqual((error as? NetlinkError)?.errno, ENODEV)
        }
    }
}
