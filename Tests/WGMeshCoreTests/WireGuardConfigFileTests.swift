import XCTest
import WGMeshCore

final class WireGuardConfigFileTests: XCTestCase {
    func testParsesWhatWgSetconfReads() throws {
        let priv = WireGuardKeyPair.generate().privateKey, peer = WireGuardKeyPair.generate().publicKey, psk = WireGuardKeyPair.generate().privateKey
        let config = try WireGuardConfigFile.parse("""
            [Interface]
            PrivateKey = \(priv)
            ListenPort = 51820
            FwMark = 0x5157   # a comment

            [Peer]
            PublicKey = \(peer)
            PresharedKey = \(psk)
            Endpoint = [2001:db8::1]:51820
            AllowedIPs = 10.244.1.0/24, fd00:10:244:1::/64
            AllowedIPs = 10.244.2.0/24
            PersistentKeepalive = off
            """)
        XCTAssertEqual(config, DeviceConfig(privateKey: priv, listenPort: 51820, firewallMark: 0x5157, replacePeers: true, peers: [
            PeerConfig(publicKey: peer, presharedKey: psk, endpoint: try Endpoint("[2001:db8::1]:51820"), persistentKeepalive: 0,
                       allowedIPs: [try IPPrefix("10.244.1.0/24"), try IPPrefix("fd00:10:244:1::/64"), try IPPrefix("10.244.2.0/24")],
                       replaceAllowedIPs: true),
        ]))
    }

    func testErrorsNameTheLine() {
        let cases = [
            ("[Interface]\nListenPort = 70000", "line 2: bad value for listenport"),
            ("[Peer]\nAllowedIPs = 10.0.0.0/8", "line 2: a [Peer] must start with its PublicKey"),
            ("[Wat]", "line 1: unknown section [Wat]"),
            ("[Interface]\nMTU = 1420", "line 2: mtu is not a key of [interface]"),
            ("[Interface]\nPrivateKey", "line 2: \"PrivateKey\" is not Key = Value"),
            ("[Peer]\nPublicKey = short", "line 2: bad value for publickey"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try WireGuardConfigFile.parse(text)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
