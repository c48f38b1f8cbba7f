import XCTest
import WGMeshCore

final class AddressTests: XCTestCase {
    func testIPv4ParseAndPrint() throws {
        XCTAssertEqual(try IPAddress("10.244.3.1").description, "10.244.3.1")
        XCTAssertEqual(try IPAddress("255.255.255.255").value, UInt128(UInt32.max))
        for bad in ["10.244.3", "10.244.3.1.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "", "a.b.c.d", "1..2.3"] {
            XCTAssertThrowsError(try IPAddress(bad), bad)
        }
    }

    func testIPv6ParseAndCanonicalPrint() throws {
        let cases = [
            ("fd00:10:244:3::", "fd00:10:244:3::"),
            ("FD00:0010:0244:0003:0000:0000:0000:0001", "fd00:10:244:3::1"),
            ("::", "::"), ("::1", "::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // RFC 5952: first of equal runs
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group is not compressed
            ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ]
        for (input, canonical) in cases {
            XCTAssertEqual(try IPAddress(input).description, canonical, input)
            XCTAssertEqual(try IPAddress(canonical), try IPAddress(input))
        }
        for bad in [
            "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", ":1", "1:2:3:4:5:6:7", "g::1", "1:2:3:4:5:6:7::8:9",
            "1:", "1::2:", ":::", "::1:", "1:2:3:4:5:6:7:8::", "::1.2.3", "1.2.3.4::", "::ffff:1.2.3.4:5",
            "1:2:3:4:5:6:1.2.3.4:8", "1:2:3:4:5:6:7:1.2.3.4", "::01.2.3.4", "1:2:3:4:5:6:7:8 ", "fd00::1/64",
        ] {
            XCTAssertThrowsError(try IPAddress(bad), bad)
        }
    }

    /// Every way of writing an address that RFC 4291 allows parses to the same value: full groups with
    /// leading zeros, upper case, any one run of zero groups as `::` (not only the longest), an IPv4 tail.
    func testIPv6EveryRFC4291SpellingParsesToTheSameValue() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // Groups that are often zero, so that `::` has runs to choose from.
            let groups = (0..<8).map { _ in
                Bool.random(using: &rng) ? UInt16(0) : UInt16.random(in: 0...UInt16.max, using: &rng)
            }
            let value = groups.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
            var spellings = [
                groups.map { String($0, radix: 16) }.joined(separator: ":"),
                groups.map {
                    String(repeating: "0", count: 4 - String($0, radix: 16).count) + String($0, radix: 16).uppercased()
                }.joined(separator: ":"),
            ]
            let v4 = "\(groups[6] >> 8).\(groups[6] & 0xff).\(groups[7] >> 8).\(groups[7] & 0xff)"
            spellings.append(groups[..<6].map { String($0, radix: 16) }.joined(separator: ":") + ":" + v4)
            for start in 0..<8 where groups[start] == 0 {
                var end = start
                while end < 8, groups[end] == 0 {
                    end += 1
                    let head = groups[..<start].map { String($0, radix: 16) }.joined(separator: ":")
                    let tail = groups[end...].map { String($0, radix: 16) }.joined(separator: ":")
                    spellings.append(head + "::" + tail)
                    if end <= 6 {
                        spellings.append(
                            head + "::" + (groups[end..<6].map { String($0, radix: 16) } + [v4]).joined(separator: ":"))
                    }
                }
            }
            for text in spellings {
                XCTAssertEqual(try IPAddress(text), IPAddress(family: .v6, value: value), text)
            }
            XCTAssertEqual(try IPAddress(IPAddress(family: .v6, value: value).description).value, value)
        }
    }

    func testBytesRoundTrip() throws {
        for text in ["192.0.2.33", "2001:db8::ff00:42:8329"] {
            let a = try IPAddress(text)
            XCTAssertEqual(try IPAddress(bytes: a.bytes), a)
        }
        XCTAssertThrowsError(try IPAddress(bytes: [1, 2, 3]))
    }

    func testPrefixBasics() throws {
        let p = try IPPrefix("10.244.3.7/24")
        XCTAssertFalse(p.isCanonical)
        XCTAssertEqual(p.canonical.description, "10.244.3.0/24")
        XCTAssertEqual(p.last.description, "10.244.3.255")
        XCTAssertTrue(try IPPrefix("10.0.0.0/8").contains(p))
        XCTAssertFalse(p.contains(try IPPrefix("10.0.0.0/8")))
        XCTAssertTrue(try IPPrefix("10.0.0.0/8").overlaps(p))
        XCTAssertFalse(try IPPrefix("10.0.0.0/8").overlaps(try IPPrefix("fd00::/8")))
        XCTAssertEqual(try IPPrefix("0.0.0.0/0").last.description, "255.255.255.255")
        XCTAssertEqual(try IPPrefix("::/0").last.description, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        XCTAssertEqual(try IPPrefix("192.0.2.1").length, 32)
        let (a, b) = try XCTUnwrap(try IPPrefix("fd00:10:244::/48").split())
        XCTAssertEqual(a.description, "fd00:10:244::/49")
        XCTAssertEqual(b.description, "fd00:10:244:8000::/49")
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0/1a"] {
            XCTAssertThrowsError(try IPPrefix(bad), bad)
        }
    }

    func testPrefixLists() throws {
        XCTAssertEqual(try IPPrefix.list("10.244.0.0/16").map(\.description), ["10.244.0.0/16"])
        XCTAssertEqual(
            try IPPrefix.list(" 10.244.0.0/16 , fd00:10:244::/48").map(\.description),
            ["10.244.0.0/16", "fd00:10:244::/48"])
        // Each bad item is named in the error, as given.
        for (bad, named) in [
            ("10.244.0.0/16,,fd00::/48", "\"\""), ("10.244.0.0/16,", "\"\""), ("", "\"\""),
            ("10.244.0.0/16,fd00::/129", "fd00::/129"), ("10.244.0.0/16;fd00::/48", "10.244.0.0/16;fd00::/48"),
        ] {
            XCTAssertThrowsError(try IPPrefix.list(bad), bad) { error in
                XCTAssertTrue("\(error)".contains(named), "\(error) names \(named)")
            }
        }
    }

    func testSubnets() throws {
        let cluster = try IPPrefix("10.0.0.0/8")
        XCTAssertEqual(cluster.subnetCount(newLength: 24), 65_536)
        XCTAssertEqual(try cluster.subnet(newLength: 24, index: 65_535).description, "10.255.255.0/24")
        XCTAssertThrowsError(try cluster.subnet(newLength: 24, index: 65_536))
        XCTAssertEqual(cluster.subnetIndex(of: try IPPrefix("10.1.2.0/24")), 258)
        XCTAssertNil(cluster.subnetIndex(of: try IPPrefix("11.1.2.0/24")))
        let v6 = try IPPrefix("fd00:10:244::/48")
        XCTAssertEqual(try v6.subnet(newLength: 64, index: 3).description, "fd00:10:244:3::/64")
        XCTAssertNil(try IPPrefix("::/0").subnetCount(newLength: 64))
    }

    func testEndpoints() throws {
        XCTAssertEqual(try Endpoint("192.0.2.1:51820").description, "192.0.2.1:51820")
        XCTAssertEqual(try Endpoint("[fd00::1]:51820").description, "[fd00::1]:51820")
        for bad in [
            "fd00::1:51820", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000", "[192.0.2.1]:5", "host.example:51820",
            "[fd00::1]51820",
        ] {
            XCTAssertThrowsError(try Endpoint(bad), bad)
        }
    }

    func testKeys() throws {
        let pair = WireGuardKeyPair.generate()
        XCTAssertEqual(try WireGuardKey(base64: pair.publicKey.base64), pair.publicKey)
        XCTAssertEqual(try WireGuardKeyPair.publicKey(for: pair.privateKey), pair.publicKey)
        // RFC 7748 section 6.1 test vector (Alice).
        let alice = try WireGuardKey(bytes: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        XCTAssertEqual(
            try WireGuardKeyPair.publicKey(for: alice).bytes,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        for bad in [
            "", "abc", String(repeating: "A", count: 44), pair.publicKey.base64.dropLast(2) + "!=",
            String(repeating: "A", count: 43) + "B=",  // last char carries non-zero padding bits
            String(repeating: "A", count: 41) + "é=",  // 44 bytes, two of them outside base64
            String(repeating: "A", count: 42) + "-=", String(repeating: "A", count: 42) + "A ",
        ] {
            XCTAssertThrowsError(try WireGuardKey(base64: bad), bad)
        }
        for _ in 0..<1000 {  // every byte value in every position decodes back
            let bytes = (0..<32).map { _ in UInt8.random(in: 0...255) }
            XCTAssertEqual(try WireGuardKey(base64: try WireGuardKey(bytes: bytes).base64).bytes, bytes)
        }
        XCTAssertThrowsError(try WireGuardKey(base64: "AAAA" + String(repeating: "A", count: 40))) { error in
            XCTAssertFalse("\(error)".contains(String(repeating: "A", count: 40)), "a bad key is not echoed in full")
        }
    }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}
