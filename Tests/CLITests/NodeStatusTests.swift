@testable import CLI
import Foundation
import TestSupport
import WGMeshCore
import XCTest

final class NodeStatusTests: XCTestCase {
    let now = ClusterFixture.now

    func testRowsSayWhatEachNodeRunsAndWhyANodeIsOut() throws {
        var fixture = ClusterFixture(["b", "a"])
        fixture.annotations["c"] = [Annotation.podCIDRs: "10.244.9.0/24", Annotation.keyGeneration: "x"]
        fixture.annotations["d"] = [:]
        fixture.conditions["b"] = .init(
            status: "False", reason: "PeersStale", message: "no handshake in the last 180 s with 1 of 1 peer: a; check")
        let rows = NodeStatus.rows(fixture.nodes, now: now)
        XCTAssertEqual(rows.map(\.name), ["a", "b", "c", "d"], "sorted")
        let a = rows[0]
        XCTAssertEqual(a.podCIDRs, ["10.244.1.0/24", "fd00:10:244:1::/64"])
        XCTAssertEqual(a.endpoint, "[2001:db8::2]:51820")
        XCTAssertEqual(a.keyGeneration, 1)
        XCTAssertEqual(a.appliedKeyGeneration, 1)
        XCTAssertEqual(a.keyAgeSeconds, 3600)
        XCTAssertEqual(a.ready, "True")
        XCTAssertEqual(a.peersReady, 1)
        XCTAssertEqual(a.peersTotal, 1)
        XCTAssertTrue(a.inMesh)
        XCTAssertEqual(a.strict, true)
        XCTAssertEqual(a.unencryptedPackets, 0)
        XCTAssertEqual(rows[1].ready, "False")
        XCTAssertEqual(rows[1].peersReady, 0)
        XCTAssertEqual(rows[2].inMesh, false)
        XCTAssertTrue(
            rows[2].leftOutBecause?.contains("wgmesh.dev/key-generation=\"x\" is invalid") ?? false, "\(rows[2])")
        XCTAssertEqual(rows[3].leftOutBecause, "no public key yet")
        XCTAssertEqual(rows[3].ready, "Unknown", "no condition")
        XCTAssertNil(rows[3].peersTotal)
        XCTAssertFalse(NodeStatusList(items: rows).allReady)
        XCTAssertTrue(NodeStatusList(items: [a]).allReady)
        XCTAssertTrue(NodeStatusList(items: []).allReady, "no node, none not ready")

        // A rotation shows as requested, then staged.
        fixture.annotations["a"]![Annotation.rotateRequest] = "t1"
        XCTAssertEqual(NodeStatus.rows(fixture.nodes, now: now)[0].rotation, "requested")
        fixture.annotations["a"]![Annotation.rotateAnswered] = "t1"
        fixture.annotations["a"]![Annotation.nextPublicKey] = WireGuardKeyPair.generate().publicKey.base64
        fixture.annotations["a"]![Annotation.nextSealedPrivateKey] =
            fixture.annotations["a"]![Annotation.sealedPrivateKey]
        XCTAssertEqual(NodeStatus.rows(fixture.nodes, now: now)[0].rotation, "staged")
    }

    func testTheTableIsAlignedLikeKubectlsAndTheMachineFormatsRoundTrip() throws {
        var fixture = ClusterFixture(["node-a", "b"])
        fixture.annotations["c"] = [:]
        let rows = NodeStatus.rows(fixture.nodes, now: now)
        let table = NodeStatus.table(rows, wide: false)
        let lines = table.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[0].hasPrefix("NAME     READY     PEERS       POD-CIDRS"), String(lines[0]))
        let column = lines[0].range(of: "ENDPOINT")!.lowerBound.utf16Offset(in: lines[0])
        for line in lines.dropFirst() where !line.hasPrefix("c ") {
            XCTAssertEqual(
                line.range(of: "[2001:db8::")!.lowerBound.utf16Offset(in: line), column, "columns aligned: \(line)")
        }
        XCTAssertTrue(lines[2].hasPrefix("c        Unknown   <unknown>   <none>"), String(lines[2]))
        XCTAssertTrue(lines[1].hasSuffix("1         1         60m"), String(lines[1]))
        let wide = NodeStatus.table(rows, wide: true)
        XCTAssertTrue(wide.hasPrefix("NAME") && wide.contains("STRICT") && wide.contains("no public key yet"), wide)

        let list = NodeStatusList(items: rows)
        let data = try JSONEncoder().encode(list)
        XCTAssertEqual(try JSONDecoder().decode(NodeStatusList.self, from: data), list)
        XCTAssertFalse(
            String(decoding: data, as: UTF8.self).contains(fixture.annotations["b"]![Annotation.sealedPrivateKey]!),
            "no sealed key")
    }

    func testAgesPrintAsKubectlPrintsThem() {
        let cases: [(Int64, String)] = [
            (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (599, "9m59s"),
            (600, "10m"),
            (10799, "179m"), (10800, "3h"), (11000, "3h3m"), (28799, "7h59m"), (28800, "8h"), (172799, "47h"),
            (172800, "2d"),
            (180000, "2d2h"), (691199, "7d23h"), (691200, "8d"), (63_071_999, "729d"), (63_072_000, "2y"),
            (63_158_400, "2y1d"),
            (252_288_000, "8y"),
        ]
        for (seconds, text) in cases { XCTAssertEqual(HumanDuration.format(seconds: seconds), text, "\(seconds) s") }
        XCTAssertEqual(HumanDuration.flag(seconds: 2_592_000), "720h")
        XCTAssertEqual(HumanDuration.flag(seconds: 90), "90s")
        XCTAssertEqual(HumanDuration.flag(seconds: 120), "2m")
    }
}
