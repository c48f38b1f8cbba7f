import Foundation
import TestSupport
import XCTest
import WGMeshCore

final class FirewallRulesetTests: XCTestCase {
    let cluster = [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")]
    let local = [try! IPPrefix("10.244.3.0/24"), try! IPPrefix("fd00:10:244:3::/64")]

    func testDualStackStrictIsExactlyThisText() {
        let expected = """
            table inet wgmesh {}
            delete table inet wgmesh
            table inet wgmesh {
              counter unencrypted {
              }

              set cluster4 {
                type ipv4_addr
                flags interval
                elements = { 10.244.0.0/16 }
              }

              set local4 {
                type ipv4_addr
                flags interval
                elements = { 10.244.3.0/24 }
              }

              set cluster6 {
                type ipv6_addr
                flags interval
                elements = { fd00:10:244::/48 }
              }

              set local6 {
                type ipv6_addr
                flags interval
                elements = { fd00:10:244:3::/64 }
              }

              chain forward {
                type filter hook forward priority filter - 10; policy accept;
                ip saddr @cluster4 ip daddr @cluster4 ip daddr != @local4 oifname != "wgmesh0" counter name \
            unencrypted drop
                ip6 saddr @cluster6 ip6 daddr @cluster6 ip6 daddr != @local6 oifname != "wgmesh0" counter name \
            unencrypted drop
              }

              chain output {
                type filter hook output priority filter - 10; policy accept;
                ip saddr @cluster4 ip daddr @cluster4 ip daddr != @local4 oifname != "wgmesh0" counter name \
            unencrypted drop
                ip6 saddr @cluster6 ip6 daddr @cluster6 ip6 daddr != @local6 oifname != "wgmesh0" counter name \
            unencrypted drop
              }

              chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr @local4 ip daddr != @cluster4 masquerade
                ip6 saddr @local6 ip6 daddr != @cluster6 masquerade
              }
            }

            """
        XCTAssertEqual(
            FirewallRuleset.ruleset(interface: "wgmesh0", localPodCIDRs: local, clusterCIDRs: cluster, strict: true),
            expected)
        XCTAssertEqual(
            FirewallRuleset.ruleset(
                interface: "wgmesh0", localPodCIDRs: local.reversed(), clusterCIDRs: cluster.reversed(), strict: true),
            expected, "the order given does not matter")
    }

    func rules(_ text: String) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("ip ") || $0.hasPrefix("ip6 ") }
    }

    func testIPv4OnlyClusterHasNoIPv6Rules() throws {
        let text = FirewallRuleset.ruleset(
            interface: "wg0", localPodCIDRs: [local[0]], clusterCIDRs: [cluster[0]], strict: true)
        XCTAssertEqual(
            rules(text),
            [
                """
                ip saddr @cluster4 ip daddr @cluster4 ip daddr != @local4 oifname != \"wg0\" counter name \
                unencrypted drop
                """,
                """
                ip saddr @cluster4 ip daddr @cluster4 ip daddr != @local4 oifname != \"wg0\" counter name \
                unencrypted drop
                """,
                "ip saddr @local4 ip daddr != @cluster4 masquerade",
            ])
        // The IPv6 sets stay declared, empty: `elements = { }` would be a syntax error.
        XCTAssertTrue(text.contains("  set cluster6 {\n    type ipv6_addr\n    flags interval\n  }\n"))
        XCTAssertFalse(text.contains("elements = { }"))
    }

    func testIPv6OnlyClusterHasNoIPv4Rules() throws {
        let text = FirewallRuleset.ruleset(
            interface: "wg0", localPodCIDRs: [local[1]], clusterCIDRs: [cluster[1]], strict: true)
        XCTAssertEqual(rules(text).count, 3)
        XCTAssertTrue(rules(text).allSatisfy { $0.hasPrefix("ip6 ") })
    }

    func testNotStrictCountsAndAccepts() {
        let text = FirewallRuleset.ruleset(
            interface: "wgmesh0", localPodCIDRs: local, clusterCIDRs: cluster, strict: false)
        let counted = rules(text).filter { $0.contains("counter name unencrypted") }
        XCTAssertEqual(counted.count, 4)
        XCTAssertTrue(counted.allSatisfy { $0.hasSuffix(" counter name unencrypted accept") })
        XCTAssertFalse(text.contains("drop"))
    }

    func testNestedAndRepeatedPrefixesBecomeOneInterval() throws {
        let text = FirewallRuleset.ruleset(
            interface: "wgmesh0", localPodCIDRs: local,
            clusterCIDRs: [
                try IPPrefix("10.244.0.0/16"), try IPPrefix("10.244.8.0/22"), try IPPrefix("10.244.0.0/16"),
                try IPPrefix("10.96.0.0/12"),
            ],
            strict: true)
        XCTAssertTrue(text.contains("elements = { 10.96.0.0/12, 10.244.0.0/16 }\n"), text)
    }

    func testRemovalWorksWhetherOrNotTheTableExists() {
        XCTAssertEqual(FirewallRuleset.removal, "table inet wgmesh {}\ndelete table inet wgmesh\n")
    }

    func testCounterFromNftJSON() throws {
        let listed = """
            {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": \
            1}}, \
            {"counter": {"family": "inet", "name": "unencrypted", "table": "wgmesh", "handle": 1, "packets": 12, \
            "bytes": 1008}}]}
            """
        let counter = try XCTUnwrap(FirewallRuleset.counter(fromJSON: listed))
        XCTAssertEqual(counter.packets, 12)
        XCTAssertEqual(counter.bytes, 1008)

        let large = """
            {"nftables": [{"counter": {"family": "inet", "name": "other", "table": "wgmesh", "handle": 2, "packets": \
            1, "bytes": 2}}, \
            {"counter": {"family": "ip", "name": "unencrypted", "table": "wgmesh", "handle": 3, "packets": 3, "bytes": \
            4}}, \
            {"counter": {"family": "inet", "name": "unencrypted", "table": "wgmesh", "handle": 4, "packets": \
            18446744073709551615, "bytes": 9007199254740993}}]}
            """
        let big = try XCTUnwrap(FirewallRuleset.counter(fromJSON: large))
        XCTAssertEqual(big.packets, .max, "other counters are skipped; 64-bit counts are read exactly")
        XCTAssertEqual(big.bytes, 9_007_199_254_740_993)
    }

    func testCounterAbsentOrUnreadableIsNil() {
        let cases = [
            "", "garbage", "{", "[]", "{}", #"{"nftables": []}"#,
            #"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}"#,
            #"{"nftables": [{"counter": {"family": "inet", "name": "unencrypted", "table": "#
                + #""other", "packets": 1, "bytes": 2}}]}"#,
            #"{"nftables": [{"counter": {"family": "inet", "name": "unencrypted", "table": "#
                + #""wgmesh", "packets": -1, "bytes": 2}}]}"#,
            #"{"nftables": [{"counter": {"family": "inet", "name": "unencrypted", "table": "#
                + #""wgmesh", "packets": "12", "bytes": 2}}]}"#,
            "Error: No such file or directory\nlist counter inet wgmesh unencrypted\n",
        ]
        for text in cases { XCTAssertNil(FirewallRuleset.counter(fromJSON: text), text) }
    }

    /// Checks rulesets with the kernel through `nft -c` (nothing is applied); skips where nft cannot, and
    /// fails instead with WGMESH_REQUIRE_NFT=1 (scripts/test.sh sets it; scripts/setup.sh installs nftables).
    func testNftAcceptsEveryRuleset() throws {
        func missing(_ what: String) -> Error { unmetNeed(what, requiredBy: "WGMESH_REQUIRE_NFT") }
        guard
            let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first(where: FileManager.default.isExecutableFile)
        else {
            throw missing("nft is not installed (Debian package nftables); the rulesets were not checked by nftables")
        }
        let probe = try check(nft, FirewallRuleset.removal)
        guard probe.status == 0 else {
            throw missing(
                "nft -c cannot check against this host's kernel (it needs nftables and CAP_NET_ADMIN): \(probe.output)")
        }
        let inputs = [
            FirewallRuleset.ruleset(interface: "wgmesh0", localPodCIDRs: local, clusterCIDRs: cluster, strict: true),
            FirewallRuleset.ruleset(interface: "wgmesh0", localPodCIDRs: local, clusterCIDRs: cluster, strict: false),
            FirewallRuleset.ruleset(
                interface: "wg0", localPodCIDRs: [local[0]], clusterCIDRs: [cluster[0]], strict: true),
            FirewallRuleset.ruleset(
                interface: "wg0", localPodCIDRs: [local[1]], clusterCIDRs: [cluster[1]], strict: true),
            FirewallRuleset.ruleset(interface: "wg0", localPodCIDRs: [], clusterCIDRs: cluster, strict: true),
            FirewallRuleset.ruleset(interface: "wg0", localPodCIDRs: [], clusterCIDRs: [], strict: true),
            FirewallRuleset.ruleset(
                interface: "wg0", localPodCIDRs: local,
                clusterCIDRs: [
                    try IPPrefix("10.244.0.0/17"), try IPPrefix("10.244.128.0/17"), try IPPrefix("10.244.3.0/24"),
                ], strict: true),
        ]
        for input in inputs {
            let result = try check(nft, input)
            XCTAssertEqual(result.status, 0, "nft -c refused:\n\(result.output)\n\(input)")
        }
    }

    /// Runs `nft -c -f` on `input` and returns its exit status and output.
    func check(_ nft: String, _ input: String) throws -> (status: Int32, output: String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("wgmesh-\(UUID().uuidString).nft")
        try input.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        return try runProgram(nft, ["-c", "-f", file.path])
    }
}
