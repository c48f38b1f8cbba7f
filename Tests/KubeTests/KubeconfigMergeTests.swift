import Foundation
import XCTest
@testable import Kube

/// `$KUBECONFIG=a:b` and the flags, against the precedence kubectl documents ("Organizing Cluster Access
/// Using kubeconfig Files", merging rules): the first file to set `current-context` or a map key wins and
/// keeps it whole; later files only add; `--context`, `--cluster` and `--user` choose over the files.
final class KubeconfigMergeTests: FolderTestCase {
    let certData = Data("CERT".utf8).base64EncodedString(), keyData = Data("KEY".utf8).base64EncodedString()

    /// a: current-context red, cluster red-cluster, user red-user with a client certificate, context red.
    /// b: current-context blue, cluster red-cluster elsewhere, user red-user with a token (a non-conflicting
    /// field), and blue's own cluster, user and context.
    func files() throws -> (a: String, b: String) {
        let a = try write(
            "a/config",
            """
            current-context: red
            clusters:
            - {name: red-cluster, cluster: {server: "https://192.0.2.1:6443"}}
            contexts:
            - {name: red, context: {cluster: red-cluster, user: red-user, namespace: red-ns}}
            users:
            - {name: red-user, user: {client-certificate-data: \(certData), client-key-data: \(keyData)}}
            """)
        let b = try write(
            "b/config",
            """
            current-context: blue
            clusters:
            - {name: red-cluster, cluster: {server: "https://198.51.100.1:6443"}}
            - {name: blue-cluster, cluster: {server: "https://198.51.100.2:6443", certificate-authority: ca.crt}}
            contexts:
            - {name: red, context: {cluster: blue-cluster, user: blue-user}}
            - {name: blue, context: {cluster: blue-cluster, user: blue-user, namespace: blue-ns}}
            users:
            - {name: red-user, user: {token: from-b}}
            - {name: blue-user, user: {token: blue-token}}
            """)
        try write("b/ca.crt", "B's CA")
        return (a, b)
    }

    func testTheFirstFileToSetAValueOrAMapKeyWins() throws {
        let (a, b) = try files()
        let c = try KubeConfig.resolve(environment: ["KUBECONFIG": "\(a):\(b)"])
        XCTAssertEqual(c.server, "https://192.0.2.1:6443", "a's current-context (red) and a's red-cluster")
        XCTAssertEqual(c.namespace, "red-ns", "a's red context, not b's")
        guard case .clientCertificate(let cert, _) = c.credentials else {
            return XCTFail("a's red-user is taken whole, b's token for red-user is discarded: \(c.credentials)")
        }
        XCTAssertEqual(cert, Array("CERT".utf8))

        let reversed = try KubeConfig.resolve(environment: ["KUBECONFIG": "\(b):\(a)"])
        XCTAssertEqual(reversed.server, "https://198.51.100.2:6443", "b first: b's current-context (blue)")
        XCTAssertEqual(reversed.namespace, "blue-ns")
        guard case .token("blue-token") = reversed.credentials else { return XCTFail("\(reversed.credentials)") }
    }

    func testLaterFilesAddNewEntriesAndContextFlagsChooseAmongAll() throws {
        let (a, b) = try files()
        let env = ["KUBECONFIG": "\(a):\(b)"]
        let blue = try KubeConfig.resolve(context: "blue", environment: env)
        XCTAssertEqual(blue.server, "https://198.51.100.2:6443", "blue exists only in b")
        XCTAssertEqual(
            blue.certificateAuthorityPEM, Array("B's CA".utf8), "b's relative path is resolved against b's folder")
        XCTAssertEqual(blue.source, b, "errors about blue-cluster name b")

        let overridden = try KubeConfig.resolve(
            context: "red", cluster: "blue-cluster", user: "blue-user", environment: env)
        XCTAssertEqual(overridden.server, "https://198.51.100.2:6443", "--cluster replaces the context's cluster")
        XCTAssertEqual(overridden.namespace, "red-ns", "the context still gives the namespace")
        guard case .token("blue-token") = overridden.credentials else {
            return XCTFail("--user replaces the context's user: \(overridden.credentials)")
        }

        XCTAssertThrowsError(try KubeConfig.resolve(context: "green", environment: env)) { error in
            XCTAssertEqual("\(error)", "\(a):\(b): contexts has no context \"green\" (it has: blue, red)")
        }
        XCTAssertThrowsError(try KubeConfig.resolve(user: "nobody", environment: env)) { error in
            XCTAssertEqual("\(error)", "\(a): users has no user \"nobody\", which --user names")
        }
    }

    func testMissingAndEmptyEntriesAreSkippedAndTheFlagReadsOneFile() throws {
        let (a, b) = try files()
        let missing = dir.appendingPathComponent("absent").path
        let c = try KubeConfig.resolve(environment: [
            "KUBECONFIG": "\(missing)::\(b):\(a)", "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        ])
        XCTAssertEqual(
            c.server, "https://198.51.100.2:6443", "the missing file and the empty entry are skipped; b comes first")

        let explicit = try KubeConfig.resolve(kubeconfig: a, context: "red", environment: ["KUBECONFIG": b])
        XCTAssertEqual(explicit.server, "https://192.0.2.1:6443", "--kubeconfig: $KUBECONFIG is not read")
        XCTAssertThrowsError(try KubeConfig.resolve(kubeconfig: a, context: "blue", environment: ["KUBECONFIG": b])) {
            error in
            XCTAssertEqual(
                "\(error)", "\(a): contexts has no context \"blue\" (it has: red)", "no merging with --kubeconfig")
        }
        XCTAssertThrowsError(try KubeConfig.resolve(environment: ["KUBECONFIG": "\(missing):\(missing)2"])) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix("\(missing):\(missing)2: none of the files in $KUBECONFIG exists"), "\(error)")
        }
    }

    func testTheDefaultIsHomeKubeConfigThenTheServiceAccount() throws {
        let (a, _) = try files()
        let home = dir.appendingPathComponent("home")
        try FileManager.default.createDirectory(
            at: home.appendingPathComponent(".kube"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: a, toPath: home.appendingPathComponent(".kube/config").path)
        let c = try KubeConfig.resolve(environment: ["HOME": home.path, "KUBECONFIG": ""])
        XCTAssertEqual(c.server, "https://192.0.2.1:6443", "an empty $KUBECONFIG is unset: ~/.kube/config")

        // In a Pod: no kubeconfig chooses a context, so the service account is used.
        let sa = dir.appendingPathComponent("sa")
        try FileManager.default.createDirectory(at: sa, withIntermediateDirectories: true)
        try "-----BEGIN CERTIFICATE-----\n".write(
            to: sa.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)
        try "sa-token".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        let pod = [
            "HOME": dir.appendingPathComponent("nobody").path, "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        ]
        let inPod = try KubeConfig.resolve(environment: pod, serviceAccount: sa.path)
        XCTAssertEqual(inPod.server, "https://10.96.0.1:443")
        XCTAssertThrowsError(
            try KubeConfig.resolve(context: "red", environment: pod, serviceAccount: sa.path),
            "a chosen context needs a kubeconfig")
        var outside = pod
        outside["KUBERNETES_SERVICE_HOST"] = nil
        XCTAssertThrowsError(try KubeConfig.resolve(environment: outside)) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "nobody/.kube/config: does not exist: pass --kubeconfig, set $KUBECONFIG, or run wgmesh in a Pod"),
                "\(error)")
        }
    }

    func testAFileThatCannotBeMergedIsNamed() throws {
        let (a, _) = try files()
        let broken = try write("broken", "clusters: [unclosed")
        XCTAssertThrowsError(try KubeConfig.resolve(environment: ["KUBECONFIG": "\(a):\(broken)"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(broken): not a kubeconfig"), "\(error)")
        }
        let twice = try write(
            "twice",
            """
            clusters:
            - {name: k, cluster: {server: "https://192.0.2.1:6443"}}
            - {name: k, cluster: {server: "https://192.0.2.2:6443"}}
            """)
        XCTAssertThrowsError(try KubeConfig.resolve(environment: ["KUBECONFIG": "\(a):\(twice)"])) { error in
            XCTAssertEqual("\(error)", "\(twice): clusters names \"k\" twice: remove or rename one of them")
        }
        let empty = try write("empty", "")
        XCTAssertEqual(
            try KubeConfig.resolve(environment: ["KUBECONFIG": "\(empty):\(a)"]).server, "https://192.0.2.1:6443",
            "an empty file is an empty kubeconfig")
    }
}
