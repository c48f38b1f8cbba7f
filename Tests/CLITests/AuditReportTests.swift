@testable import CLI
import Foundation
import TestSupport
import WGMeshCore
import XCTest

final class AuditReportTests: XCTestCase {
    let now = ClusterFixture.now
    let cluster = AuditReport.Cluster(server: "https://192.0.2.1:6443", context: "prod")
    let day: Int64 = 86400

    func report(_ f: ClusterFixture, maxKeyAge: Int64 = 30 * 86400, window: TimeInterval = 86400) -> AuditReport {
        AuditReport(
            nodes: f.nodes, cluster: cluster, now: now, maxKeyAge: maxKeyAge,
            windowStart: now.addingTimeInterval(-window))
    }

    func failing(_ r: AuditReport) -> [String] { r.checks.filter { !$0.passed }.map(\.name) }

    func testAHealthyClusterPassesEveryCheck() {
        let r = report(ClusterFixture(["a", "b", "c"]))
        XCTAssertTrue(r.passed, "\(r.checks)")
        XCTAssertEqual(r.checks.count, 5)
        XCTAssertEqual(r.clusterCIDRs, ["10.244.0.0/16", "fd00:10:244::/48"])
        XCTAssertEqual(r.strictMode, "on")
        XCTAssertEqual(r.generatedAt, "2026-11-27T10:00:00Z")
        XCTAssertEqual(r.nodes.map(\.name), ["a", "b", "c"])
        XCTAssertEqual(r.checks[4].details, ["0 packets since 2026-11-26T10:00:00Z"])
        let md = r.markdown
        XCTAssertTrue(md.contains("- Cluster: https://192.0.2.1:6443 (context prod)\n"), md)
        XCTAssertTrue(md.contains("- Result: PASS (all 5 checks passed)\n"), md)
        XCTAssertEqual(md.components(separatedBy: "\n- PASS: ").count - 1, 5, md)
        XCTAssertTrue(md.contains("| a | yes | 1 | 1 | 60m | True (AllPeersConnected) | on | 0 |\n"), md)
    }

    func testAStaleKeyFails() {
        var f = ClusterFixture(["a", "b"])
        f.annotations["b"]![Annotation.keyIssuedAt] = RFC3339.format(now.addingTimeInterval(-31 * 86400))
        let r = report(f)
        XCTAssertEqual(failing(r), ["No key older than 720h"])
        XCTAssertEqual(r.checks[1].details, ["b: key generation 1 issued 2026-10-27T10:00:00Z is 31d old"])
        XCTAssertFalse(r.passed)
        XCTAssertTrue(r.markdown.contains("- FAIL: No key older than 720h\n  - b: key generation 1"), r.markdown)
        XCTAssertTrue(report(f, maxKeyAge: 31 * day).passed, "exactly the limit still passes")
    }

    func testANodeOutsideTheMeshOrNotOnItsKeyOrNotReadyFails() {
        var f = ClusterFixture(["a", "b", "c", "d"])
        f.annotations["b"]![Annotation.endpoint] = nil  // no endpoint yet
        f.annotations["c"]![Annotation.appliedKeyGeneration] = nil
        f.conditions["d"] = .init(
            status: "False", reason: "PeersStale", message: "no handshake in the last 180 s with 1 of 3 peers: a; check"
        )
        f.annotations["e"] = [Annotation.podCIDRs: "10.244.0.0/33"]
        let r = report(f)
        XCTAssertEqual(
            failing(r),
            [
                "Every node encrypts its Pod traffic", "Strict mode on every node",
                "No Pod packet dropped for leaving unencrypted since 2026-11-26T10:00:00Z",
            ],
            "e has no agent: no strict mode, no count")
        XCTAssertEqual(
            r.checks[0].details.prefix(3),
            [
                "b: left out of the mesh: no endpoint yet",
                "c: runs key generation none, issued 1",
                """
                d: WireGuardMeshReady is False (PeersStale): no handshake in the last 180 s with 1 of 3 peers: a; \
                check
                """,
            ])
        XCTAssertTrue(
            r.checks[0].details[3].hasPrefix(
                "e: left out of the mesh: annotation wgmesh.dev/pod-cidrs=\"10.244.0.0/33\" is invalid: "),
            r.checks[0].details[3])
        XCTAssertEqual(r.checks[0].details.count, 4)
        XCTAssertEqual(r.nodes.first { $0.name == "b" }?.inMesh, false)
        XCTAssertTrue(r.markdown.contains("| b | no: no endpoint yet |"), r.markdown)
    }

    func testUnencryptedPacketsInTheWindowFailAndEarlierOnesAreStated() {
        var f = ClusterFixture(["a", "b", "c"])
        f.annotations["b"]![Annotation.unencryptedDrops] =
            UnencryptedDrops(packets: 17, counter: 17, last: now.addingTimeInterval(-3600)).description
        f.annotations["c"]![Annotation.unencryptedDrops] =
            UnencryptedDrops(packets: 4, counter: 4, last: now.addingTimeInterval(-3 * 86400)).description
        var r = report(f)
        XCTAssertEqual(failing(r), ["No Pod packet dropped for leaving unencrypted since 2026-11-26T10:00:00Z"])
        XCTAssertEqual(
            r.checks[4].details,
            [
                "b: 17 packets in all, the last at 2026-11-27T09:00:00Z",
                "c: 4 packets in all, the last at 2026-11-24T10:00:00Z (before 2026-11-26T10:00:00Z)",
            ])
        // The next audit's window starts after b's packets: it passes, and still states them.
        r = report(f, window: 1800)
        XCTAssertTrue(r.passed)
        XCTAssertEqual(r.checks[4].details.first, "0 packets since 2026-11-27T09:30:00Z")
        XCTAssertTrue(
            r.checks[4].details.contains(
                "b: 17 packets in all, the last at 2026-11-27T09:00:00Z (before 2026-11-27T09:30:00Z)"))
        // A count the agent does not report, or that does not read, cannot be attested.
        f.annotations["a"]![Annotation.unencryptedDrops] = nil
        f.annotations["c"]![Annotation.unencryptedDrops] = "lots"
        r = report(f, window: 1800)
        XCTAssertEqual(failing(r), ["No Pod packet dropped for leaving unencrypted since 2026-11-27T09:30:00Z"])
        XCTAssertEqual(
            r.checks[4].details.prefix(2),
            [
                """
                a: reports no count (wgmesh.dev/unencrypted-drops): no agent runs there, or one older than this \
                report
                """,
                "c: wgmesh.dev/unencrypted-drops=\"lots\" is not packets=N,counter=N[,last=TIME]",
            ])
    }

    func testDuplicatesStrictModeAndAnEmptyClusterFail() {
        var f = ClusterFixture(["a", "b", "c"])
        f.annotations["c"]![Annotation.publicKey] = f.annotations["a"]![Annotation.publicKey]
        f.annotations["b"]![Annotation.strict] = "false"
        var r = report(f)
        XCTAssertTrue(failing(r).contains("No public key or Pod CIDR claimed twice"))
        XCTAssertTrue(
            r.checks[2].details[0].hasPrefix("a: public key ")
                && r.checks[2].details[0].hasSuffix("is also claimed by c"), "\(r.checks[2].details)")
        XCTAssertEqual(r.checks[3].details, ["b: strict mode is off: Pod traffic with no peer would leave unencrypted"])
        XCTAssertEqual(r.strictMode, "not on for 1 of 3 nodes: b")

        f = ClusterFixture(["a", "b"])
        f.annotations["b"]![Annotation.clusterCIDRs] = "10.244.0.0/16"
        r = report(f)
        XCTAssertEqual(
            r.checks[3].details,
            ["the agents route different cluster CIDRs: 10.244.0.0/16 (b); 10.244.0.0/16,fd00:10:244::/48 (a)"])

        r = report(ClusterFixture([]))
        XCTAssertFalse(r.passed, "no Node: nothing to attest")
        XCTAssertEqual(r.clusterCIDRs, [])
    }

    func testTheReportIsSignedHoldsNoSecretAndATamperedCopyIsFound() throws {
        var f = ClusterFixture(["a", "b"])
        f.annotations["b"]![Annotation.endpoint] = nil
        let r = report(f)
        let md = r.markdown
        let json = r.json
        for secret in f.annotations.values.flatMap({
            [$0[Annotation.sealedPrivateKey]!, $0[Annotation.enrollmentKey]!]
        }) {
            XCTAssertFalse(md.contains(secret) || json.contains(secret), "no sealed key, no enrollment key")
        }
        let lastLine = md.split(separator: "\n").last!
        XCTAssertTrue(lastLine.hasPrefix("SHA-256 of the lines above: "), String(lastLine))
        XCTAssertEqual(
            String(lastLine.suffix(64)), sha256Hex(String(md.dropLast(lastLine.count + 1))),
            "the hash of everything before the last line")
        XCTAssertNoThrow(try AuditReport.verify(md).get())
        XCTAssertNoThrow(try AuditReport.verify(json).get())
        XCTAssertEqual(
            try JSONDecoder().decode(AuditReport.self, from: Data(r.canonicalJSON.utf8)), r,
            "the JSON form decodes back into the same report")

        guard case .failure(.mismatch) = AuditReport.verify(md.replacing("| b | no:", with: "| b | yes:")) else {
            return XCTFail("a changed Markdown body")
        }
        guard
            case .failure(.mismatch) = AuditReport.verify(
                json.replacing("\"passed\" : false", with: "\"passed\" : true"))
        else {
            return XCTFail("a changed JSON body")
        }
        guard case .failure(.unreadable) = AuditReport.verify("# not a report\n") else {
            return XCTFail("no hash line")
        }
        guard case .failure(.unreadable) = AuditReport.verify("{\"x\": 1}") else { return XCTFail("not a report") }
        XCTAssertTrue(json.contains("\"passed\" : false"), "the tamper above changed something")
    }
}
