import Foundation
import KubeTestSupport
import TestSupport
import WGMeshCore
import XCTest

/// The built binary, run as kubectl runs a plugin: through a link named kubectl-wgmesh.
final class KubectlPluginTests: XCTestCase {
    func testTheBinaryAnswersAsKubectlWgmeshAndItsExitStatusesAreScriptable() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let binary = root.appendingPathComponent(".build/debug/wgmesh").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return XCTFail("\(binary) is missing: run `swift build` first")
        }
        let dir = NSTemporaryDirectory() + "wgmesh-plugin-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plugin = dir + "/kubectl-wgmesh"
        try FileManager.default.createSymbolicLink(atPath: plugin, withDestinationPath: binary)

        let help = try runProgram(plugin, ["status", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("USAGE: kubectl wgmesh status"), help.output)
        XCTAssertTrue(
            try runProgram(binary, ["--help"]).output.contains("USAGE: wgmesh <subcommand>"), "its own name otherwise")

        let cluster = try await CLICluster(nodes: ["n1", "n2"])
        cluster.startAgents()
        await cluster.waitUntilSettled()
        let kubeconfig = dir + "/kubeconfig"
        try """
        apiVersion: v1
        kind: Config
        clusters: [{name: test, cluster: {server: "\(cluster.server.url)"}}]
        users: [{name: test, user: {}}]
        contexts: [{name: test, context: {cluster: test, user: test}}]
        current-context: test
        """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)

        let status = try runProgram(plugin, ["status", "--kubeconfig", kubeconfig])
        XCTAssertEqual(status.status, 0, status.output)
        XCTAssertEqual(
            status.output.split(separator: "\n").map { String($0.prefix(4)) }, ["NAME", "n1  ", "n2  "], status.output)

        // Bad input names the value and changes nothing.
        let timeout = try runProgram(plugin, ["rotate-keys", "--kubeconfig", kubeconfig, "--all", "--timeout", "2x"])
        XCTAssertNotEqual(timeout.status, 0)
        XCTAssertTrue(timeout.output.contains("--timeout 2x: use a duration such as 10s, 5m or 720h"), timeout.output)
        let unknown = try runProgram(plugin, ["rotate-keys", "--kubeconfig", kubeconfig, "--node", "n9"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.output.contains("no Node named n9"), unknown.output)
        let both = try runProgram(plugin, ["rotate-keys", "--kubeconfig", kubeconfig, "--node", "n1", "--all"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.output.contains("--node and --all"), both.output)
        let annotations = try await cluster.annotations("n1")
        XCTAssertNil(annotations[Annotation.rotateRequest], "nothing was requested")

        // The audit's JSON, filed and checked; a changed copy is found and fails.
        let audit = try runProgram(plugin, ["audit", "--kubeconfig", kubeconfig, "-o", "json"])
        XCTAssertEqual(audit.status, 0, audit.output)
        let filed = dir + "/audit.json"
        try audit.output.write(toFile: filed, atomically: true, encoding: .utf8)
        let verified = try runProgram(plugin, ["audit", "--verify", filed])
        XCTAssertEqual(verified.status, 0, verified.output)
        try audit.output.replacing("\"passed\" : true", with: "\"passed\" : false").write(
            toFile: filed, atomically: true, encoding: .utf8)
        let tampered = try runProgram(plugin, ["audit", "--verify", filed])
        XCTAssertEqual(tampered.status, 1, tampered.output)
        XCTAssertTrue(tampered.output.contains("the report was changed after it was made"), tampered.output)

        // A node that is not ready: status and audit exit with 1.
        await cluster.stopAgents()
        try await cluster.annotate("n2", [Annotation.appliedKeyGeneration: nil])
        try cluster.server.withStore(.nodes) { _ = try $0.create(.object(["metadata": .object(["name": "n3"])])) }
        XCTAssertEqual(try runProgram(plugin, ["status", "--kubeconfig", kubeconfig]).status, 1)
        XCTAssertEqual(try runProgram(plugin, ["audit", "--kubeconfig", kubeconfig]).status, 1)
        try await cluster.stop()
    }
}
