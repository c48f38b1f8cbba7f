import Foundation
import TestSupport
import WGMeshCore
import XCTest

final class AgentReportTests: XCTestCase {
    let t0 = RFC3339.parse("2026-11-27T10:00:00Z")!

    func testSettingsReadBackAndMalformedValuesAreNamedNotFatal() throws {
        let cidrs = [try IPPrefix("10.244.0.0/16"), try IPPrefix("fd00:10:244::/48")]
        let report = AgentReport(annotations: AgentReport.settings(clusterCIDRs: cidrs, strict: false))
        XCTAssertEqual(report.clusterCIDRs, cidrs)
        XCTAssertEqual(report.strict, false)
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(AgentReport(annotations: [:]), AgentReport(), "nothing reported: every field nil")
        XCTAssertEqual(AgentReport(annotations: [Annotation.strict: ""]).strict, nil, "empty is absent")

        for (key, value) in [
            (Annotation.clusterCIDRs, "10.244.0.1/16"), (Annotation.clusterCIDRs, "10.244.0.0/16,nonsense"),
            (Annotation.clusterCIDRs, "fd00::/129"), (Annotation.strict, "yes"), (Annotation.unencryptedDrops, "17"),
        ] {
            let bad = AgentReport(annotations: [key: value, Annotation.appliedPeers: "sha256:ab"])
            XCTAssertEqual(bad.problems.count, 1, "\(key)=\(value)")
            XCTAssertTrue(bad.problems[0].contains(key) && bad.problems[0].contains(value), bad.problems[0])
            XCTAssertEqual(bad.appliedPeers, "sha256:ab", "the other values still read")
        }
    }

    func testUnencryptedDropsRoundTripAndRefuseMalformedValues() {
        let full = UnencryptedDrops(packets: 17, counter: 5, last: t0)
        XCTAssertEqual(full.description, "packets=17,counter=5,last=2026-11-27T10:00:00Z")
        XCTAssertEqual(UnencryptedDrops(full.description), full)
        XCTAssertEqual(UnencryptedDrops("packets=0,counter=0"), UnencryptedDrops())
        XCTAssertEqual(
            UnencryptedDrops("counter=1,packets=2,future=x"), UnencryptedDrops(packets: 2, counter: 1),
            "any order; unknown fields ignored")
        XCTAssertEqual(UnencryptedDrops("packets=\(UInt64.max),counter=0")?.packets, .max)
        for bad in [
            "", "packets=1", "counter=1", "packets=-1,counter=0", "packets=1,counter=0,last=yesterday",
            "packets=1,packets=2,counter=0",
            "packets=1,counter", "packets=+1,counter=0", "packets=18446744073709551616,counter=0",
            "packets=1;counter=0",
        ] {
            XCTAssertNil(UnencryptedDrops(bad), bad)
        }
    }

    func testDropsAreCountedAcrossRestartsAndTablesWrittenAnew() {
        let t1 = t0.addingTimeInterval(60)
        let t2 = t0.addingTimeInterval(120)
        var d = UnencryptedDrops().observing(counter: 0, at: t0)
        XCTAssertEqual(d, UnencryptedDrops(), "nothing counted: no time")
        d = d.observing(counter: 5, at: t1)
        XCTAssertEqual(d, UnencryptedDrops(packets: 5, counter: 5, last: t1))
        XCTAssertEqual(d.observing(counter: 5, at: t2), d, "the same reading adds nothing, and keeps the time")
        // The table written anew: its counter restarts, so all of the reading is new.
        XCTAssertEqual(d.observing(counter: 0, at: t2), UnencryptedDrops(packets: 5, counter: 0, last: t1))
        XCTAssertEqual(d.observing(counter: 3, at: t2), UnencryptedDrops(packets: 8, counter: 3, last: t2))
        // A restarted agent reads the published value back and adds only what the table counted since.
        XCTAssertEqual(UnencryptedDrops(d.description)!.observing(counter: 9, at: t2).packets, 9)
        XCTAssertEqual(
            UnencryptedDrops(packets: .max - 1, counter: 0).observing(counter: 5, at: t2).packets, .max, "saturates")
    }

    func testAppliedPeersDigestIsOrderFreeAndCountsOnlyCurrentKeys() throws {
        let a = WireGuardKeyPair.generate().publicKey
        let b = WireGuardKeyPair.generate().publicKey
        XCTAssertEqual(AppliedPeers.digest([a, b]), AppliedPeers.digest([b, a]))
        XCTAssertNotEqual(AppliedPeers.digest([a]), AppliedPeers.digest([a, b]))
        XCTAssertEqual(
            AppliedPeers.digest([]), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA-256 of nothing")
        XCTAssertTrue(AppliedPeers.digest([a]).hasPrefix("sha256:"))

        var fixture = ClusterFixture(["n1", "n2", "n3"])
        let before = AppliedPeers.expected(
            for: "n1", nodes: fixture.nodes.compactMap(\.meshNode), clusterCIDRs: ClusterFixture.clusterCIDRs)
        // A staged next key does not change what n1 should run; the switch does.
        fixture.annotations["n2"]![Annotation.nextPublicKey] = WireGuardKeyPair.generate().publicKey.base64
        fixture.annotations["n2"]![Annotation.nextSealedPrivateKey] =
            fixture.annotations["n2"]![Annotation.sealedPrivateKey]
        XCTAssertEqual(
            AppliedPeers.expected(
                for: "n1", nodes: fixture.nodes.compactMap(\.meshNode), clusterCIDRs: ClusterFixture.clusterCIDRs),
            before)
        fixture.annotations["n2"]![Annotation.nextPublicKey] = nil
        fixture.annotations["n2"]![Annotation.nextSealedPrivateKey] = nil
        fixture.rotate("n2", answering: "t")
        XCTAssertNotEqual(
            AppliedPeers.expected(
                for: "n1", nodes: fixture.nodes.compactMap(\.meshNode), clusterCIDRs: ClusterFixture.clusterCIDRs),
            before)
        // The digest a node publishes is the one of the keys its interface routes to.
        let keys = fixture.nodes.filter { $0.name != "n1" }.compactMap { $0.meshNode?.publicKey }
        XCTAssertEqual(
            AppliedPeers.expected(
                for: "n1", nodes: fixture.nodes.compactMap(\.meshNode), clusterCIDRs: ClusterFixture.clusterCIDRs),
            AppliedPeers.digest(keys))
    }
}
