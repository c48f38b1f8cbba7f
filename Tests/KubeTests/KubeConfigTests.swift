import Foundation
import XCTest
@testable import Kube

final class KubeConfigTests: FolderTestCase {
    let ca = Data("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8)

    func kubeconfig(user: String, cluster extra: String = "", current: String = "current-context: dev") -> String {
        """
        apiVersion: v1
        kind: Config
        \(current)
        clusters:
        - name: dev-cluster
          cluster:
            server: https://192.0.2.10:6443/
            certificate-authority-data: \(ca.base64EncodedString())
        \(extra)
        - name: prod-cluster
          cluster:
            server: https://[2001:db8::10]:6443
            certificate-authority: certs/ca.crt
            tls-server-name: kubernetes
        contexts:
        - name: dev
          context: {cluster: dev-cluster, user: dev-user, namespace: wgmesh-system}
        - name: prod
          context: {cluster: prod-cluster, user: prod-user}
        users:
        - name: dev-user
          user:
        \(user)
        - name: prod-user
          user:
            client-certificate: certs/client.crt
            client-key-data: \(Data("KEY".utf8).base64EncodedString())
        """
    }

    func testCurrentContextWithToken() throws {
        let path = try write("config", kubeconfig(user: "    token: abc.def"))
        let c = try KubeConfig.load(kubeconfig: path)
        XCTAssertEqual(c.server, "https://192.0.2.10:6443")
        XCTAssertEqual(c.certificateAuthorityPEM, Array(ca))
        XCTAssertEqual(c.namespace, "wgmesh-system")
        guard case .token("abc.def") = c.credentials else { return XCTFail("\(c.credentials)") }
    }

    func testNamedContextWithClientCertificateAndRelativeFiles() throws {
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("certs"), withIntermediateDirectories: true)
        _ = try write("certs/ca.crt", String(decoding: ca, as: UTF8.self))
        _ = try write("certs/client.crt", "CERT")
        let path = try write("config", kubeconfig(user: "    token: unused"))
        let c = try KubeConfig.load(kubeconfig: path, context: "prod")
        XCTAssertEqual(c.server, "https://[2001:db8::10]:6443")
        XCTAssertEqual(c.tlsServerName, "kubernetes")
        XCTAssertEqual(c.certificateAuthorityPEM, Array(ca), "read relative to the kubeconfig's folder")
        guard case .clientCertificate(let cert, let key) = c.credentials else { return XCTFail("\(c.credentials)") }
        XCTAssertEqual(cert, Array("CERT".utf8))
        XCTAssertEqual(key, Array("KEY".utf8))
    }

    func testBrokenKubeconfigsNameTheFileAndField() throws {
        let cases: [(String, String?, String)] = [
            (kubeconfig(user: "    token: x", current: ""), nil, "current-context is not set"),
            (kubeconfig(user: "    token: x"), "staging", "contexts has no context \"staging\" (it has: dev, prod)"),
            (
                kubeconfig(user: "    token: x").replacingOccurrences(
                    of: "cluster: dev-cluster,", with: "cluster: gone,"), nil, "clusters has no cluster \"gone\""
            ),
            (
                kubeconfig(user: "    token: x").replacingOccurrences(of: "user: dev-user,", with: "user: nobody,"),
                nil, "users has no user \"nobody\""
            ),
            (
                kubeconfig(user: "    token: x").replacingOccurrences(
                    of: "https://192.0.2.10:6443/", with: "192.0.2.10:6443"), nil,
                "clusters[dev-cluster].cluster.server must be an http(s):// URL"
            ),
            (
                kubeconfig(user: "    token: x").replacingOccurrences(
                    of: "certificate-authority-data: ", with: "certificate-authority-data: not-base64?"), nil,
                "clusters[dev-cluster].cluster.certificate-authority-data is not base64"
            ),
            (
                kubeconfig(user: "    client-certificate-data: Q0VSVA=="), nil,
                "users[dev-user].user.client-key is missing"
            ),
            (kubeconfig(user: "    exec: {command: aws}"), nil, "users[dev-user].user.exec.apiVersion is not set"),
            (
                kubeconfig(user: "    token: x").replacingOccurrences(
                    of: "tls-server-name: kubernetes", with: "proxy-url: https://proxy:3128"), "prod",
                """
                clusters[prod-cluster].cluster.proxy-url is "https://proxy:3128": \
                wgmesh cannot speak TLS to the proxy itself
                """
            ),
            (kubeconfig(user: "    token: x", current: "current-context: prod"), nil, "cannot read"),
            ("clusters: [unclosed", nil, "not a kubeconfig"),
        ]
        for (i, (text, context, expected)) in cases.enumerated() {
            let path = try write("config-\(i)", text)
            XCTAssertThrowsError(try KubeConfig.load(kubeconfig: path, context: context), expected) { error in
                XCTAssertTrue("\(error)".hasPrefix(path + ": "), "names the file: \(error)")
                XCTAssertTrue("\(error)".contains(expected), "case \(i): \(error)")
            }
        }
        XCTAssertThrowsError(try KubeConfig.load(kubeconfig: dir.appendingPathComponent("absent").path)) { error in
            XCTAssertTrue("\(error)".contains("absent: cannot read it"), "\(error)")
        }
    }

    func testInClusterAndTokenRotation() throws {
        let sa = dir.appendingPathComponent("sa")
        try FileManager.default.createDirectory(at: sa, withIntermediateDirectories: true)
        try ca.write(to: sa.appendingPathComponent("ca.crt"))
        try "first-token\n".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        try "kube-system".write(to: sa.appendingPathComponent("namespace"), atomically: true, encoding: .utf8)
        let env = ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"]
        let c = try KubeConfig.inCluster(environment: env, serviceAccount: sa.path)
        XCTAssertEqual(c.server, "https://[fd00::1]:443")
        XCTAssertEqual(c.namespace, "kube-system")
        guard case .tokenFile(let token) = c.credentials else { return XCTFail("\(c.credentials)") }
        let start = ContinuousClock.now
        XCTAssertEqual(try token.current(now: start), "first-token")
        try "second-token".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try token.current(now: start + .seconds(10)), "first-token", "cached within a minute")
        XCTAssertEqual(try token.current(now: start + .seconds(61)), "second-token", "re-read after a minute")
        try "third-token".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        XCTAssertEqual(
            try token.current(force: true, now: start + .seconds(62)), "third-token", "re-read at once after a 401")

        XCTAssertThrowsError(try KubeConfig.inCluster(environment: [:], serviceAccount: sa.path)) { error in
            XCTAssertTrue("\(error)".contains("KUBERNETES_SERVICE_HOST"), "\(error)")
        }
    }
}
