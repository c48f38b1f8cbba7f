import Agent
import Foundation
import TestSupport
import WGMeshCore
import XCTest

/// `wgmesh install-cni`'s file work on a temporary folder: plugins missing, older, newer, foreign, and
/// wgmesh's own from an earlier image. The plugins are shell scripts that print what a CNI plugin prints
/// when run without CNI_COMMAND.
final class CNIPluginInstallerTests: XCTestCase {
    var root = "", image = "", node = "", versionFile = ""
    let log = LogCapture()

    override func setUp() {
        root = temporaryDirectory()
        image = root + "/image/bin"
        node = root + "/node/opt/cni/bin"
        versionFile = root + "/image/VERSION"
        try! FileManager.default.createDirectory(atPath: image, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// A plugin script; `reports` is what its first line says after "plugin " (Debian's builds: "version unknown").
    func plugin(_ directory: String, _ name: String, reports: String, body: String = "") {
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let text =
            """
            #!/bin/sh\n\(body)echo 'CNI \(name) plugin \(reports)' >&2\necho 'CNI protocol versions supported: \
            0.1.0, 1.0.0' >&2\n
            """
        write(directory + "/" + name, text, mode: 0o755)
    }

    func write(_ path: String, _ text: String, mode: Int = 0o644) {
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]), path)
    }

    func imageVersion(_ text: String) { write(versionFile, text + "\n") }

    func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func install() throws -> [String: CNIPluginAction] {
        var installer = CNIPluginInstaller(
            sourceDirectory: image, destinationDirectory: node, sourceVersionFile: versionFile)
        installer.probeTimeoutMilliseconds = 2000
        return Dictionary(
            uniqueKeysWithValues: try installer.run(logger: log.logger("test")).map { ($0.name, $0.action) })
    }

    func records() throws -> [String: CNIPluginRecord] {
        try CNIPluginInstall.parse(read(node + "/" + CNIPluginInstall.recordFileName) ?? "")
    }

    func sha(_ path: String) -> String { CNIPluginInstall.sha256(Array(FileManager.default.contents(atPath: path)!)) }

    /// Debian's image plugins report no version; the node has one foreign plugin older, one newer, one
    /// without a version, one the image lacks, and lacks one.
    func testMissingOlderNewerAndForeignPlugins() throws {
        for name in ["bridge", "host-local", "portmap", "loopback"] { plugin(image, name, reports: "version unknown") }
        imageVersion("1.1.1")
        plugin(node, "host-local", reports: "v1.0.0")
        plugin(node, "portmap", reports: "v1.4.0")
        plugin(node, "loopback", reports: "version unknown", body: "# the node's own build\n")
        plugin(node, "macvlan", reports: "v0.1.0")
        let portmap = read(node + "/portmap")
        let loopback = read(node + "/loopback")
        let macvlan = read(node + "/macvlan")

        let old = umask(0o077)
        defer { umask(old) }
        let actions = try install()
        XCTAssertEqual(
            actions,
            [
                "bridge": .install,
                "host-local": .replaceOlder(reported: CNIPluginVersion(1, 0, 0)),
                "portmap": .keepForeign(reported: CNIPluginVersion(1, 4, 0)),
                "loopback": .keepForeign(reported: nil),
            ])
        XCTAssertEqual(read(node + "/bridge"), read(image + "/bridge"))
        XCTAssertEqual(read(node + "/host-local"), read(image + "/host-local"))
        XCTAssertEqual(read(node + "/portmap"), portmap, "a newer foreign plugin is never overwritten")
        XCTAssertEqual(read(node + "/loopback"), loopback, "a foreign plugin without a version is never overwritten")
        XCTAssertEqual(read(node + "/macvlan"), macvlan, "a plugin the image lacks is never removed")
        for name in ["bridge", "host-local"] {
            let mode = try FileManager.default.attributesOfItem(atPath: node + "/" + name)[.posixPermissions] as? Int
            XCTAssertEqual(mode, 0o755, "\(name) is 0755 whatever the umask")
        }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: node).sorted(),
            [".wgmesh-cni-plugins", "bridge", "host-local", "loopback", "macvlan", "portmap"],
            "no temporary file is left")
        XCTAssertEqual(
            try records(),
            [
                "bridge": CNIPluginRecord(
                    name: "bridge", version: CNIPluginVersion(1, 1, 1), sha256: sha(image + "/bridge")),
                "host-local": CNIPluginRecord(
                    name: "host-local", version: CNIPluginVersion(1, 1, 1), sha256: sha(image + "/host-local")),
            ])
        XCTAssertTrue(
            log.lines.withLock { $0 }.contains {
                $0.hasPrefix(
                    "info replaced: the node's plugin, not installed by wgmesh, reports an older version (1.0.0)")
                    && $0.contains("plugin=host-local")
            },
            "\(log.lines.withLock { $0 })")

        // A second run finds its own copies up to date and changes nothing.
        let recordText = read(node + "/" + CNIPluginInstall.recordFileName)
        XCTAssertEqual(
            try install(),
            [
                "bridge": .unchanged, "host-local": .unchanged,
                "portmap": .keepForeign(reported: CNIPluginVersion(1, 4, 0)), "loopback": .keepForeign(reported: nil),
            ])
        XCTAssertEqual(read(node + "/" + CNIPluginInstall.recordFileName), recordText)
    }

    /// A newer image updates the copies wgmesh made; an older one leaves them; a copy someone replaced since
    /// is theirs.
    func testWgmeshsOwnCopiesFollowTheImageButNeverGoBack() throws {
        plugin(image, "bridge", reports: "version unknown")
        plugin(image, "portmap", reports: "version unknown")
        imageVersion("1.1.1")
        _ = try install()

        plugin(image, "bridge", reports: "version unknown", body: "# 1.2.0\n")
        plugin(image, "portmap", reports: "version unknown", body: "# 1.2.0\n")
        imageVersion("1.2.0+ds1-1")
        // Someone puts their own portmap over wgmesh's: it is theirs now, and it says it is newer.
        plugin(node, "portmap", reports: "v1.3.0")
        XCTAssertEqual(
            try install(),
            [
                "bridge": .updateOwn(installed: CNIPluginVersion(1, 1, 1)),
                "portmap": .keepForeign(reported: CNIPluginVersion(1, 3, 0)),
            ])
        XCTAssertEqual(read(node + "/bridge"), read(image + "/bridge"))
        XCTAssertTrue(read(node + "/portmap")!.contains("v1.3.0"))
        XCTAssertEqual(try records()["bridge"]?.version, CNIPluginVersion(1, 2, 0))

        // A rollback to the older image keeps the newer copy wgmesh made.
        plugin(image, "bridge", reports: "version unknown")
        imageVersion("1.1.1")
        let newer = read(node + "/bridge")
        XCTAssertEqual(try install()["bridge"], .keepOwnNewer(installed: CNIPluginVersion(1, 2, 0)))
        XCTAssertEqual(read(node + "/bridge"), newer)
    }

    /// An upstream build reports its own version, which wins over the version file, and none is needed.
    func testAPluginsOwnVersionNeedsNoVersionFile() throws {
        plugin(image, "bridge", reports: "v1.5.1")
        plugin(node, "bridge", reports: "v1.5.0")
        XCTAssertEqual(try install(), ["bridge": .replaceOlder(reported: CNIPluginVersion(1, 5, 0))])
        XCTAssertEqual(try records()["bridge"]?.version, CNIPluginVersion(1, 5, 1))
    }

    func testNothingIsCopiedWhenAnImagePluginHasNoVersion() throws {
        plugin(image, "bridge", reports: "v1.5.1")
        plugin(image, "portmap", reports: "version unknown")
        XCTAssertThrowsError(try install()) { error in
            XCTAssertEqual(
                "\(error)",
                """
                \(image)/portmap reports no version of its own and none was given: write its release version \
                (e.g. 1.1.1) to \(versionFile)
                """
            )
        }
        XCTAssertNil(read(node + "/bridge"), "the check comes before any copy")

        imageVersion("one.two")
        XCTAssertThrowsError(try install()) { error in
            XCTAssertEqual(
                "\(error)",
                "\(versionFile) holds \"one.two\", not a version: write the plugins' release version there, e.g. 1.1.1")
        }
    }

    func testAnEmptyImageDirectoryIsAnError() throws {
        imageVersion("1.1.1")
        write(image + "/.hidden", "x", mode: 0o755)
        XCTAssertThrowsError(try install()) { error in
            XCTAssertEqual("\(error)", "no CNI plugins in \(image): give --from the directory that holds them")
        }
        image = root + "/nowhere"
        XCTAssertThrowsError(try install()) { error in
            XCTAssertEqual("\(error)", "cannot read the plugin directory \(root)/nowhere: No such file or directory")
        }
    }

    /// A record that cannot be read counts for nothing: every plugin there is treated as someone else's.
    func testAMalformedRecordMakesEveryPluginForeign() throws {
        plugin(image, "bridge", reports: "version unknown")
        imageVersion("1.1.1")
        plugin(node, "bridge", reports: "version unknown", body: "# the node's own build\n")
        write(node + "/" + CNIPluginInstall.recordFileName, "bridge 1.0.0 \(sha(node + "/bridge")) x\n")
        XCTAssertEqual(try install(), ["bridge": .keepForeign(reported: nil)])
        XCTAssertTrue(
            log.lines.withLock { $0 }.contains { $0.hasPrefix("warning ignoring the record") && $0.contains("line 1") })
    }

    /// A node plugin that hangs is killed at the deadline and kept.
    func testAHangingNodePluginIsKeptAfterTheTimeout() throws {
        plugin(image, "bridge", reports: "version unknown")
        imageVersion("1.1.1")
        plugin(node, "bridge", reports: "v0.1.0", body: "exec sleep 60\n")
        let start = Date()
        XCTAssertEqual(try install(), ["bridge": .keepForeign(reported: nil)])
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// A directory where a plugin should be is left alone, and not run.
    func testADirectoryInThePluginsPlaceIsKept() throws {
        plugin(image, "bridge", reports: "version unknown")
        imageVersion("1.1.1")
        try FileManager.default.createDirectory(atPath: node + "/bridge", withIntermediateDirectories: true)
        XCTAssertEqual(try install(), ["bridge": .keepForeign(reported: nil)])
    }
}
