import Agent
import WGMeshCore
import XCTest

final class CNIPluginInstallTests: XCTestCase {
    let image = CNIPluginVersion(1, 1, 1)
    let imageHash = String(repeating: "a", count: 64)
    let otherHash = String(repeating: "b", count: 64)
    let thirdHash = String(repeating: "c", count: 64)

    func testVersionsParseFromReleaseTagsAndDebianVersions() {
        XCTAssertEqual(CNIPluginVersion("1.1.1"), CNIPluginVersion(1, 1, 1))
        XCTAssertEqual(CNIPluginVersion("v1.4.0"), CNIPluginVersion(1, 4, 0))
        XCTAssertEqual(CNIPluginVersion("1.1.1+ds1-3+b5"), CNIPluginVersion(1, 1, 1))
        XCTAssertEqual(CNIPluginVersion("1:0.9.10-2"), CNIPluginVersion(0, 9, 10))
        XCTAssertEqual(CNIPluginVersion("v1.5.0-rc1"), CNIPluginVersion(1, 5, 0))
        XCTAssertEqual(CNIPluginVersion("10.20.30"), CNIPluginVersion(10, 20, 30))
        for bad in [
            "", "v", "1", "1.2", "1.2.", "1..2", "a.b.c", "1.2.3.4", "1.2.3x", "vv1.2.3", "x:1.2.3", "1.2.99999999999",
            "unknown",
        ] {
            XCTAssertNil(CNIPluginVersion(bad), bad)
        }
    }

    func testVersionsOrderByNumberNotText() {
        XCTAssertLessThan(CNIPluginVersion(1, 2, 9), CNIPluginVersion(1, 10, 0))
        XCTAssertLessThan(CNIPluginVersion(0, 9, 1), CNIPluginVersion(1, 0, 0))
        XCTAssertLessThan(CNIPluginVersion(1, 1, 1), CNIPluginVersion(1, 1, 2))
        XCTAssertFalse(CNIPluginVersion(1, 1, 1) < CNIPluginVersion(1, 1, 1))
        XCTAssertEqual(CNIPluginVersion(1, 10, 0).description, "1.10.0")
    }

    func testReportedVersionIsTheFirstLinesPluginVersionOnly() {
        XCTAssertEqual(
            CNIPluginVersion.reported(
                by: "CNI bridge plugin v1.4.1\nCNI protocol versions supported: 0.1.0, 0.2.0, 1.0.0\n"),
            CNIPluginVersion(1, 4, 1))
        XCTAssertEqual(CNIPluginVersion.reported(by: "CNI host-local plugin v0.8.6\n"), CNIPluginVersion(0, 8, 6))
        // Debian's builds: the spec versions on the second line must not be taken for the plugin's.
        XCTAssertNil(
            CNIPluginVersion.reported(
                by:
                    """
                    CNI bridge plugin version unknown\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, \
                    0.3.1, 0.4.0, 1.0.0\n
                    """
            ))
        XCTAssertNil(CNIPluginVersion.reported(by: ""))
        XCTAssertNil(CNIPluginVersion.reported(by: "CNI protocol versions supported: 0.1.0, 1.0.0\n"))
        XCTAssertNil(CNIPluginVersion.reported(by: "bridge v1.4.1\n"))
        XCTAssertNil(CNIPluginVersion.reported(by: "CNI bridge plugin 1.4.1\n"), "upstream always prints the v")
        XCTAssertNil(CNIPluginVersion.reported(by: "/bin/sh: 1: exec: not found\nCNI bridge plugin v1.4.1\n"))
    }

    func decide(destination: String?, record: CNIPluginRecord?, reported: CNIPluginVersion?, probed: inout Bool)
        -> CNIPluginAction
    {
        var ran = false
        let action = CNIPluginInstall.decide(
            sourceVersion: image, sourceSHA256: imageHash, destinationSHA256: destination, record: record,
            reportedVersion: {
                ran = true
                return reported
            })
        probed = ran
        return action
    }

    func testAMissingPluginIsInstalledWithoutRunningAnything() {
        var probed = false
        XCTAssertEqual(decide(destination: nil, record: nil, reported: nil, probed: &probed), .install)
        XCTAssertFalse(probed)
        // A stale record for a file someone removed changes nothing.
        XCTAssertEqual(
            decide(
                destination: nil,
                record: CNIPluginRecord(name: "bridge", version: CNIPluginVersion(9, 0, 0), sha256: otherHash),
                reported: nil, probed: &probed), .install)
        XCTAssertTrue(CNIPluginAction.install.copies)
    }

    func testTheSameContentIsLeftAlone() {
        var probed = false
        XCTAssertEqual(
            decide(destination: imageHash, record: nil, reported: CNIPluginVersion(0, 1, 0), probed: &probed),
            .unchanged)
        XCTAssertFalse(probed)
        XCTAssertFalse(CNIPluginAction.unchanged.copies)
    }

    func testWgmeshsOwnCopyIsUpdatedUnlessItIsNewer() {
        var probed = false
        let older = CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 0, 0), sha256: otherHash)
        XCTAssertEqual(
            decide(destination: otherHash, record: older, reported: nil, probed: &probed),
            .updateOwn(installed: CNIPluginVersion(1, 0, 0)))
        XCTAssertFalse(probed, "wgmesh's own file is known by its record, not by running it")
        // The same version with other bytes (a rebuilt image): the image's copy wins on wgmesh's own file.
        let same = CNIPluginRecord(name: "bridge", version: image, sha256: otherHash)
        XCTAssertEqual(
            decide(destination: otherHash, record: same, reported: nil, probed: &probed), .updateOwn(installed: image))
        let newer = CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 2, 0), sha256: otherHash)
        let kept = decide(destination: otherHash, record: newer, reported: nil, probed: &probed)
        XCTAssertEqual(kept, .keepOwnNewer(installed: CNIPluginVersion(1, 2, 0)))
        XCTAssertFalse(kept.copies)
    }

    func testAFileChangedSinceWgmeshWroteItIsForeign() {
        var probed = false
        let record = CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 0, 0), sha256: thirdHash)
        XCTAssertEqual(
            decide(destination: otherHash, record: record, reported: nil, probed: &probed), .keepForeign(reported: nil))
        XCTAssertTrue(probed)
        XCTAssertEqual(
            decide(destination: otherHash, record: record, reported: CNIPluginVersion(1, 1, 1), probed: &probed),
            .keepForeign(reported: CNIPluginVersion(1, 1, 1)))
    }

    func testAForeignPluginIsReplacedOnlyWhenItReportsAnOlderVersion() {
        var probed = false
        let older = decide(destination: otherHash, record: nil, reported: CNIPluginVersion(1, 0, 9), probed: &probed)
        XCTAssertEqual(older, .replaceOlder(reported: CNIPluginVersion(1, 0, 9)))
        XCTAssertTrue(older.copies)
        XCTAssertTrue(probed)
        XCTAssertEqual(
            decide(destination: otherHash, record: nil, reported: image, probed: &probed), .keepForeign(reported: image)
        )
        XCTAssertEqual(
            decide(destination: otherHash, record: nil, reported: CNIPluginVersion(1, 4, 0), probed: &probed),
            .keepForeign(reported: CNIPluginVersion(1, 4, 0)))
        XCTAssertEqual(
            decide(destination: otherHash, record: nil, reported: nil, probed: &probed), .keepForeign(reported: nil))
        XCTAssertFalse(CNIPluginAction.keepForeign(reported: nil).copies)
    }

    func testSomethingOtherThanAPlainFileIsNeverReplacedNorRun() {
        var probed = false
        let record = CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 0, 0), sha256: "")
        XCTAssertEqual(
            decide(destination: "", record: record, reported: CNIPluginVersion(0, 1, 0), probed: &probed),
            .keepForeign(reported: nil))
        XCTAssertFalse(probed)
    }

    func testRecordsKeepOnlyWhatWgmeshWroteOrAlreadyOwned() {
        let v = CNIPluginVersion(1, 1, 1)
        let previous = [
            "bridge": CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 0, 0), sha256: otherHash),
            "portmap": CNIPluginRecord(name: "portmap", version: CNIPluginVersion(1, 0, 0), sha256: imageHash),
            "tuning": CNIPluginRecord(name: "tuning", version: CNIPluginVersion(0, 9, 0), sha256: thirdHash),
            "host-local": CNIPluginRecord(name: "host-local", version: CNIPluginVersion(2, 0, 0), sha256: otherHash),
        ]
        let actions: [(name: String, action: CNIPluginAction)] = [
            ("bridge", .updateOwn(installed: CNIPluginVersion(1, 0, 0))),
            ("host-local", .keepOwnNewer(installed: CNIPluginVersion(2, 0, 0))),
            ("loopback", .install),
            ("portmap", .unchanged),
            ("vlan", .keepForeign(reported: nil)),
            ("dhcp", .unchanged),
        ]
        let names = ["bridge", "host-local", "loopback", "portmap", "vlan", "dhcp"]
        let records = CNIPluginInstall.records(
            after: actions, sourceVersions: Dictionary(uniqueKeysWithValues: names.map { ($0, v) }),
            sourceHashes: Dictionary(uniqueKeysWithValues: names.map { ($0, imageHash) }), previous: previous)
        XCTAssertEqual(
            records,
            [
                "bridge": CNIPluginRecord(name: "bridge", version: v, sha256: imageHash),
                "host-local": previous["host-local"]!,
                "loopback": CNIPluginRecord(name: "loopback", version: v, sha256: imageHash),
                "portmap": CNIPluginRecord(name: "portmap", version: v, sha256: imageHash),
                // Not in this image: an older wgmesh's record stays, and nothing is removed.
                "tuning": previous["tuning"]!,
            ])
    }

    func testRecordFileRoundTripsAndRejectsMalformedLines() throws {
        let records = [
            "portmap": CNIPluginRecord(name: "portmap", version: CNIPluginVersion(1, 1, 1), sha256: imageHash),
            "bridge": CNIPluginRecord(name: "bridge", version: CNIPluginVersion(1, 0, 0), sha256: otherHash),
        ]
        let text = CNIPluginInstall.render(records)
        XCTAssertEqual(
            text.split(separator: "\n").dropFirst(), ["bridge 1.0.0 \(otherHash)", "portmap 1.1.1 \(imageHash)"])
        XCTAssertEqual(try CNIPluginInstall.parse(text), records)
        XCTAssertEqual(try CNIPluginInstall.parse(""), [:])
        XCTAssertEqual(
            try CNIPluginInstall.parse("\n# comment\n  bridge\t1.0.0   \(otherHash)  \n"),
            ["bridge": records["bridge"]!])
        for (bad, line) in [
            ("bridge 1.0.0", 1), ("# x\nbridge 1.0 \(otherHash)", 2), ("bridge 1.0.0 \(otherHash.uppercased())", 1),
            ("bridge 1.0.0 abc", 1), ("../bridge 1.0.0 \(otherHash)", 1), (".bridge 1.0.0 \(otherHash)", 1),
            ("bridge 1.0.0 \(otherHash) extra", 1),
        ] {
            XCTAssertThrowsError(try CNIPluginInstall.parse(bad), bad) { error in
                XCTAssertEqual((error as? CNIPluginRecordError)?.line, line, bad)
                XCTAssertTrue("\(error)".contains(".wgmesh-cni-plugins line \(line)"), "\(error)")
            }
        }
    }

    func testSHA256IsLowercaseHex() {
        XCTAssertEqual(
            CNIPluginInstall.sha256(Array("abc".utf8)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(CNIPluginInstall.sha256([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testPluginNames() {
        for good in ["bridge", "host-local", "portmap", "a_b.c"] { XCTAssertTrue(CNIPluginInstall.isName(good), good) }
        for bad in ["", ".wgmesh-cni-plugins", "a/b", "..", "br idge", "brïdge"] {
            XCTAssertFalse(CNIPluginInstall.isName(bad), bad)
        }
    }
}
