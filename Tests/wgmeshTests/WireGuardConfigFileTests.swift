import WGMeshCore
@testable import wgmesh
import XCTest

final class WireGuardConfigFileTests: XCTestCase {
    func testParsesWhatWgSetconfReads() throws {
        let priv = WireGuardKeyPair.generate().privateKey
        let peer = WireGuardKeyPair.generate().publicKey
        let psk = WireGuardKeyPair.generate().privateKey
        let config = try WireGuardConfigFile.parse(
            """
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
        XCTAssertEqual(
            config,
            DeviceConfig(
                privateKey: priv, listenPort: 51820, firewallMark: 0x5157, replacePeers: true,
                peers: [
                    PeerConfig(
                        publicKey: peer, presharedKey: psk, endpoint: try Endpoint("[2001:db8::1]:51820"),
                        persistentKeepalive: 0,
                        allowedIPs: [
                            try IPPrefix("10.244.1.0/24"), try IPPrefix("fd00:10:244:1::/64"),
                            try IPPrefix("10.244.2.0/24"),
                        ],
                        replaceAllowedIPs: true)
                ]))
    }

    /// What wg(8) also accepts: CRLF line ends, any letter case in sections and keys, blank items in
    /// AllowedIPs, fwmark in hex or decimal, a keepalive number, and no newline after the last line.
    func testAcceptsTheFileAsWgDoes() throws {
        let priv = WireGuardKeyPair.generate().privateKey
        let a = WireGuardKeyPair.generate().publicKey
        let b = WireGuardKeyPair.generate().publicKey
        let text =
            """
            [INTERFACE]\r\nprivatekey=\(priv)\r\nFWMARK = 1234\r\n\r\n# a comment \
            line\r\n[peer]\r\n\tPublicKey\t=\t\(a)\r\n
            """
                + """
                ALLOWEDIPS = , 10.0.0.0/24,,fd00::/64 ,\r\npersistentKeepalive = 25\r\n[Peer]\nPublicKey = \
                \(b)\nEndpoint = 192.0.2.1:51820
                """
        XCTAssertEqual(
            try WireGuardConfigFile.parse(text),
            DeviceConfig(
                privateKey: priv, firewallMark: 1234, replacePeers: true,
                peers: [
                    PeerConfig(
                        publicKey: a, persistentKeepalive: 25,
                        allowedIPs: [try IPPrefix("10.0.0.0/24"), try IPPrefix("fd00::/64")], replaceAllowedIPs: true),
                    PeerConfig(publicKey: b, endpoint: try Endpoint("192.0.2.1:51820"), replaceAllowedIPs: true),
                ]))
        XCTAssertEqual(try WireGuardConfigFile.parse("[Interface]\nFwMark = off").firewallMark, 0)
        XCTAssertEqual(try WireGuardConfigFile.parse(""), DeviceConfig(replacePeers: true))
    }

    func testErrorsNameTheLine() {
        let cases = [
            ("[Interface]\nListenPort = 70000", "line 2: bad value for listenport"),
            ("[Peer]\nAllowedIPs = 10.0.0.0/8", "line 2: a [Peer] must start with its PublicKey"),
            ("[Wat]", "line 1: unknown section [Wat]"),
            ("[Interface]\nMTU = 1420", "line 2: mtu is not a key of [interface]"),
            ("[Interface]\nPrivateKey", "line 2: \"PrivateKey\" is not Key = Value"),
            ("[Peer]\nPublicKey = short", "line 2: bad value for publickey"),
            ("[Interface]\nFwMark = 0xzz", "line 2: bad value for fwmark: 0xzz"),
            ("\nListenPort = 1", "line 2: listenport is not a key of (none)"),
            ("[Interface]\nPublicKey = x", "line 2: publickey is not a key of [interface]"),
            (
                "[Peer]\nPublicKey = \(WireGuardKeyPair.generate().publicKey)\nAllowedIPs = 10.0.0.0/33",
                "line 3: bad value for allowedips: \"10.0.0.0/33\" has a prefix length"
            ),
            (
                "[Peer]\nPublicKey = \(WireGuardKeyPair.generate().publicKey)\nEndpoint = [fd00::1]:0",
                "line 3: bad value for endpoint: \"[fd00::1]:0\" has no valid port"
            ),
            (
                """
                [Peer]\nPublicKey = \(WireGuardKeyPair.generate().publicKey)\r\nPublicKey = \
                \(WireGuardKeyPair.generate().publicKey)
                """,
                "line 3: bad value for PublicKey (second one in one [Peer])"
            ),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try WireGuardConfigFile.parse(text)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
