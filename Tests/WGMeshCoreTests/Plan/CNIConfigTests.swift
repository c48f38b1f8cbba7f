import Foundation
import XCTest
import WGMeshCore

final class CNIConfigTests: XCTestCase {
    let v4 = try! IPPrefix("10.244.3.0/24")
    let v6 = try! IPPrefix("fd00:10:244:3::/64")

    func parse(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func ipam(_ document: [String: Any]) throws -> [String: Any] {
        let plugins = try XCTUnwrap(document["plugins"] as? [[String: Any]])
        return try XCTUnwrap(plugins.first?["ipam"] as? [String: Any])
    }

    func testDualStackIsExactlyThisText() {
        let expected = """
            {
              "cniVersion": "1.0.0",
              "name": "wgmesh",
              "plugins": [
                {
                  "type": "bridge",
                  "bridge": "cni0",
                  "isGateway": true,
                  "ipMasq": false,
                  "hairpinMode": true,
                  "mtu": 1420,
                  "ipam": {
                    "type": "host-local",
                    "ranges": [
                      [
                        {
                          "subnet": "10.244.3.0/24"
                        }
                      ],
                      [
                        {
                          "subnet": "fd00:10:244:3::/64"
                        }
                      ]
                    ],
                    "routes": [
                      {
                        "dst": "0.0.0.0/0"
                      },
                      {
                        "dst": "::/0"
                      }
                    ]
                  }
                },
                {
                  "type": "portmap",
                  "capabilities": {
                    "portMappings": true
                  }
                }
              ]
            }

            """
        XCTAssertEqual(CNIConfig.conflist(podCIDRs: [v4, v6], mtu: 1420), expected)
        XCTAssertEqual(
            CNIConfig.conflist(podCIDRs: [v6, v4], mtu: 1420), expected, "IPv4 first whatever the order given")
        XCTAssertEqual(CNIConfig.fileName, "10-wgmesh.conflist")
    }

    func testDualStackParsesWithTheCNIStructure() throws {
        let document = try parse(
            CNIConfig.conflist(podCIDRs: [v4, v6], mtu: 1380, bridge: "br-pods", networkName: "mesh"))
        XCTAssertEqual(document["cniVersion"] as? String, "1.0.0")
        XCTAssertEqual(document["name"] as? String, "mesh")
        let plugins = try XCTUnwrap(document["plugins"] as? [[String: Any]])
        XCTAssertEqual(plugins.map { $0["type"] as? String }, ["bridge", "portmap"])
        let bridge = plugins[0]
        XCTAssertEqual(bridge["bridge"] as? String, "br-pods")
        XCTAssertEqual(bridge["isGateway"] as? Bool, true)
        XCTAssertEqual(bridge["ipMasq"] as? Bool, false)
        XCTAssertEqual(bridge["hairpinMode"] as? Bool, true)
        XCTAssertEqual(bridge["mtu"] as? Int, 1380)
        let ipam = try ipam(document)
        XCTAssertEqual(ipam["type"] as? String, "host-local")
        XCTAssertEqual(
            ipam["ranges"] as? [[[String: String]]],
            [[["subnet": "10.244.3.0/24"]], [["subnet": "fd00:10:244:3::/64"]]])
        XCTAssertEqual(ipam["routes"] as? [[String: String]], [["dst": "0.0.0.0/0"], ["dst": "::/0"]])
        XCTAssertEqual((plugins[1]["capabilities"] as? [String: Bool]), ["portMappings": true])
    }

    func testSingleStackHasOneRangeSetAndOneDefaultRoute() throws {
        let ipv4 = try ipam(parse(CNIConfig.conflist(podCIDRs: [v4], mtu: 1420)))
        XCTAssertEqual(ipv4["ranges"] as? [[[String: String]]], [[["subnet": "10.244.3.0/24"]]])
        XCTAssertEqual(ipv4["routes"] as? [[String: String]], [["dst": "0.0.0.0/0"]])
        let ipv6 = try ipam(parse(CNIConfig.conflist(podCIDRs: [v6], mtu: 1420)))
        XCTAssertEqual(ipv6["ranges"] as? [[[String: String]]], [[["subnet": "fd00:10:244:3::/64"]]])
        XCTAssertEqual(ipv6["routes"] as? [[String: String]], [["dst": "::/0"]])
    }

    func testOutputIsByteIdenticalAcrossCalls() throws {
        let first = CNIConfig.conflist(podCIDRs: [v4, v6], mtu: 1420)
        for _ in 0..<20 { XCTAssertEqual(CNIConfig.conflist(podCIDRs: [v4, v6], mtu: 1420), first) }
        XCTAssertTrue(first.hasSuffix("}\n"))
        XCTAssertNotEqual(CNIConfig.conflist(podCIDRs: [v4, v6], mtu: 1400), first, "a new MTU is a rewrite")
    }

    func testNamesAreEscapedAsJSONStrings() throws {
        let name = "we\"ird\\name\u{1}"
        let document = try parse(CNIConfig.conflist(podCIDRs: [v4], mtu: 1420, networkName: name))
        XCTAssertEqual(document["name"] as? String, name)
    }

    func testEmptyPodCIDRsIsTheCallersErrorAndSaysSo() throws {
        // The agent writes no conflist before the node has a Pod CIDR; the doc comment states that contract.
        let source = try String(
            contentsOf: URL(fileURLWithPath: #filePath)
                .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Sources/WGMeshCore/Plan/CNIConfig.swift"),
            encoding: .utf8)
        XCTAssertTrue(
            source.contains("/// Caller contract: `podCIDRs` is never empty"),
            "the caller contract is documented on conflist")
        // Should a caller break it anyway, the file stays valid JSON and host-local refuses Pods loudly.
        let ipam = try ipam(parse(CNIConfig.conflist(podCIDRs: [], mtu: 1420)))
        XCTAssertEqual(ipam["ranges"] as? [[[String: String]]], [])
    }
}
