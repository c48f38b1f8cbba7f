import CMnl
import XCTest
import WGMeshCore
@testable import Netlink

/// Host tests of the SET encoder: no kernel needed, the messages are decoded back and checked.
final class WireGuardMessagesTests: XCTestCase {
    struct Fragment {
        var deviceFlags: UInt32?
        var privateKey: WireGuardKey?
        var listenPort: UInt16?
        var peers: [WireGuardMessages.PeerEntry]
        var hasPeerFlagsAttribute: [Bool]
        var length: Int
    }

    func decode(_ m: MessageBuilder) throws -> Fragment {
        let bytes = m.bytes
        return try bytes.withUnsafeBytes { raw in
            let header = raw.loadUnaligned(as: nlmsghdr.self)
            XCTAssertEqual(Int(header.nlmsg_len), bytes.count)
            let msg = ReceivedMessage(
                type: header.nlmsg_type, flags: header.nlmsg_flags,
                body: UnsafeRawBufferPointer(rebasing: raw[MemoryLayout<nlmsghdr>.size...]))
            XCTAssertEqual(msg.header(as: genlmsghdr.self)?.cmd, WG.cmdSetDevice)
            var f = Fragment(peers: [], hasPeerFlagsAttribute: [], length: bytes.count)
            for a in msg.attributes(after: MemoryLayout<genlmsghdr>.size) {
                switch a.type {
                case WG.deviceFlags: f.deviceFlags = a.u32
                case WG.devicePrivateKey: f.privateKey = try WireGuardKey(bytes: a.payload)
                case WG.deviceListenPort: f.listenPort = a.u16
                case WG.deviceIfname: XCTAssertEqual(a.string, "wgmesh0")
                case WG.devicePeers:
                    for p in a.nested {
                        f.peers.append(try WireGuardMessages.decodePeer(p.nested))
                        f.hasPeerFlagsAttribute.append(p.nested.contains { $0.type == WG.peerFlags })
                    }
                default: XCTFail("unexpected device attribute \(a.type)")
                }
            }
            return f
        }
    }

    static func peers(_ n: Int) -> [PeerConfig] {
        (0..<n).map { i in
            PeerConfig(
                publicKey: testKey(i),
                endpoint: Endpoint(
                    address: IPAddress(family: .v4, value: UInt128(0xC633_6400 + UInt32(i % 250))), port: 51820),
                persistentKeepalive: 25,
                allowedIPs: [
                    try! IPPrefix("10.\(i / 256 % 256).\(i % 256).0/24"),
                    try! IPPrefix(
                        address: IPAddress(family: .v6, value: (UInt128(0xfd00_0010_0244) << 80) | UInt128(i) << 64),
                        length: 64),
                ],
                replaceAllowedIPs: true)
        }
    }

    func testTenThousandPeersSplitAcrossMessagesAndReassemble() throws {
        let config = DeviceConfig(
            privateKey: testKey(99_999), listenPort: 51820, replacePeers: true, peers: Self.peers(10_000))
        let messages = try WireGuardMessages.setDevice(family: 0x20, name: "wgmesh0", config: config)
        XCTAssertGreaterThan(messages.count, 1)
        let fragments = try messages.map(decode)
        // Device settings and replace-peers appear in the first message only.
        XCTAssertEqual(fragments[0].deviceFlags, WG.deviceFlagReplacePeers)
        XCTAssertEqual(fragments[0].privateKey, config.privateKey)
        XCTAssertEqual(fragments[0].listenPort, 51820)
        for f in fragments.dropFirst() {
            XCTAssertNil(f.deviceFlags)
            XCTAssertNil(f.privateKey)
            XCTAssertNil(f.listenPort)
        }
        for f in fragments { XCTAssertLessThanOrEqual(f.length, KernelWireGuard.defaultMessageCapacity) }
        let decoded = fragments.flatMap(\.peers)
        XCTAssertEqual(decoded.count, 10_000)  // 2 allowed IPs each never need a peer to be split
        for (d, p) in zip(decoded, config.peers) {
            XCTAssertEqual(d.publicKey, p.publicKey)
            XCTAssertEqual(d.allowedIPs, p.allowedIPs)
            XCTAssertEqual(d.endpoint, p.endpoint)
            XCTAssertEqual(d.keepalive, 25)
            XCTAssertEqual(d.flags, WG.peerFlagReplaceAllowedIPs)
        }
    }

    func testPeerWithManyAllowedIPsIsContinuedWithoutRepeatingItsFlags() throws {
        let many = (0..<5000).map { try! IPPrefix("10.\($0 / 256).\($0 % 256).1/32") }
        let peer = PeerConfig(
            publicKey: testKey(1), presharedKey: testKey(2), allowedIPs: many, replaceAllowedIPs: true)
        let messages = try WireGuardMessages.setDevice(
            family: 0x20, name: "wgmesh0",
            config: DeviceConfig(peers: [Self.peers(1)[0], peer, Self.peers(3)[2]]),
            capacity: 4096)
        let fragments = try messages.map(decode)
        XCTAssertGreaterThan(fragments.count, 5)
        let entries = fragments.flatMap { zip($0.peers, $0.hasPeerFlagsAttribute) }
        let forPeer = entries.filter { $0.0.publicKey == peer.publicKey }
        XCTAssertGreaterThan(forPeer.count, 1, "the big peer must be split")
        XCTAssertEqual(forPeer[0].0.flags, WG.peerFlagReplaceAllowedIPs)
        XCTAssertEqual(forPeer[0].0.presharedKey, peer.presharedKey)
        for (later, hasFlags) in forPeer.dropFirst() {
            XCTAssertFalse(hasFlags, "replace-allowed-ips must only be in the peer's first fragment")
            XCTAssertNil(later.presharedKey)
        }
        XCTAssertEqual(forPeer.flatMap(\.0.allowedIPs), many)
        XCTAssertEqual(entries.map(\.0.publicKey).filter { $0 != peer.publicKey }, [testKey(0), testKey(2)])
    }

    func testOnePeerChangeIsOneSmallMessage() throws {
        let change = PeerConfig(publicKey: testKey(7), endpoint: try Endpoint("[fd00::7]:51820"), updateOnly: true)
        let messages = try WireGuardMessages.setDevice(
            family: 0x20, name: "wgmesh0", config: DeviceConfig(peers: [change]))
        XCTAssertEqual(messages.count, 1)
        XCTAssertLessThan(messages[0].length, 128)
        let f = try decode(messages[0])
        XCTAssertEqual(f.peers.first?.endpoint, change.endpoint)
        XCTAssertEqual(f.peers.first?.flags, WG.peerFlagUpdateOnly)
    }

    func testRemovalCarriesNoAllowedIPs() throws {
        var removal = PeerConfig.removal(of: testKey(3))
        removal.allowedIPs = [try IPPrefix("10.0.0.0/8")]
        let f = try decode(
            try WireGuardMessages.setDevice(family: 0x20, name: "wgmesh0", config: DeviceConfig(peers: [removal]))[0])
        XCTAssertEqual(f.peers.first?.flags, WG.peerFlagRemoveMe)
        XCTAssertEqual(f.peers.first?.allowedIPs, [])
    }

    func testEndpointSockaddrRoundTrip() throws {
        for text in ["192.0.2.7:51820", "[2001:db8::1]:4500"] {
            let e = try Endpoint(text)
            let raw = WireGuardMessages.sockaddr(e)
            XCTAssertEqual(raw.count, e.address.family == .v4 ? 16 : 28)
            XCTAssertEqual(raw.withUnsafeBytes { WireGuardMessages.endpoint(fromSockaddr: $0) }, e)
        }
    }

    // Malformed input is rejected before anything is built or sent, naming the value.

    func testEmptyInterfaceNameIsRejected() {
        XCTAssertThrowsError(try WireGuardMessages.setDevice(family: 0x20, name: "", config: DeviceConfig())) { error in
            XCTAssertTrue("\(error)".contains("interface name is empty"), "\(error)")
        }
    }

    func testOverlongInterfaceNameIsRejected() {
        XCTAssertThrowsError(
            try WireGuardMessages.setDevice(family: 0x20, name: "wgmesh-far-too-long", config: DeviceConfig())
        ) { error in
            XCTAssertTrue("\(error)".contains("\"wgmesh-far-too-long\" is 19 bytes"), "\(error)")
        }
    }

    func testThirtyOneByteKeyIsRejected() {
        XCTAssertThrowsError(try WireGuardKey(bytes: [UInt8](repeating: 1, count: 31))) { error in
            XCTAssertEqual(error as? KeyError, .wrongLength(31))
            XCTAssertTrue("\(error)".contains("this one is 31"), "\(error)")
        }
    }

    func testPrefixLength33IsRejected() {
        XCTAssertThrowsError(try IPPrefix("10.244.0.0/33")) { error in
            XCTAssertTrue("\(error)".contains("\"10.244.0.0/33\""), "\(error)")
            XCTAssertTrue("\(error)".contains("0...32"), "\(error)")
        }
    }

    func testExtendedAckTextIsRead() throws {
        // An NLMSG_ERROR body as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK.
        var body = withUnsafeBytes(of: Int32(-22)) { Array($0) }
        var echoed = nlmsghdr()
        echoed.nlmsg_len = 200
        body += withUnsafeBytes(of: echoed) { Array($0) }
        let text = Array("Unknown device type".utf8) + [0]
        let attrLength = UInt16(4 + text.count)
        body +=
            withUnsafeBytes(of: attrLength) { Array($0) }
            + withUnsafeBytes(of: UInt16(NLMSGERR_ATTR_MSG.rawValue)) { Array($0) } + text
        let message = body.withUnsafeBytes {
            NetlinkSocket.extendedAck(flags: UInt16(NLM_F_ACK_TLVS | NLM_F_CAPPED), body: $0)
        }
        XCTAssertEqual(message, "Unknown device type")
        let error = NetlinkError(operation: "create wireguard link \"wg0\"", errno: 95, kernelMessage: message)
        XCTAssertEqual(
            "\(error)",
            "create wireguard link \"wg0\": EOPNOTSUPP (Operation not supported): kernel says \"Unknown device type\"")
    }
}
