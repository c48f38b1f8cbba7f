import Foundation
import Kube
import KubeTestSupport
import XCTest

/// KubeClient against the test server: TLS, client certificates, server names, token files.
extension ClientTests {
    func testMutualTLSWithAClientCertificate() async throws {
        try await withServer(.init(tls: true, token: "only-for-token-clients"), clientCertificate: true) {
            server, client in
            try server.createNodes(["n"])
            let list = try await client.listAll(.nodes)
            XCTAssertEqual(list.items.count, 1)
        }
        // Without certificate or token the server says 401.
        let server = try await TestAPIServer.start(.init(tls: true, token: "t"))
        var config = server.kubeConfig()
        config.credentials = .none
        let anonymous = try KubeClient(config: config)
        do {
            _ = try await anonymous.get(.nodes, namespace: nil, name: "x")
            XCTFail("anonymous request must fail")
        } catch {
            XCTAssertEqual(error.code, 401)
        }
        // A client that does not trust the server's CA fails the TLS handshake.
        config.certificateAuthorityPEM = nil
        config.credentials = .token("t")
        // (async-http-client retries a failed connection until the connect timeout.)
        let untrusting = try KubeClient(config: config, connectTimeout: .seconds(1))
        do {
            _ = try await untrusting.get(.nodes, namespace: nil, name: "x")
            XCTFail("an untrusted server certificate must be refused")
        } catch {
            guard case .transport = error else { return XCTFail("\(error)") }
        }
        try await anonymous.shutdown()
        try await untrusting.shutdown()
        try await server.stop()
    }

    func testTLSServerNameIsSentAndVerifiedInsteadOfTheAddress() async throws {
        // The certificate names kubernetes.default.svc and carries no address, as many clusters' do.
        let server = try await TestAPIServer.start(.init(tls: true, nameOnlyCertificate: true, token: "t"))
        try server.createNodes(["n"])
        func get(_ name: String?) async -> KubeError? {
            var config = server.kubeConfig()
            config.tlsServerName = name
            guard let client = try? KubeClient(config: config, connectTimeout: .seconds(1)) else { return nil }
            defer { Task { try? await client.shutdown() } }
            do {
                _ = try await client.get(.nodes, namespace: nil, name: "n")
                return nil
            } catch {
                return error
            }
        }
        let named = await get("kubernetes.default.svc")
        XCTAssertNil(named, "connected to 127.0.0.1 and verified the certificate for the name")
        for name in [nil, "not-in-the-certificate.example"] {
            let refused = await get(name)
            guard case .transport? = refused else {
                return XCTFail("\(name ?? "the address"): expected a TLS failure, got \(String(describing: refused))")
            }
        }
        try await server.stop()
    }

    func testBadTLSMaterialIsRefusedNamingTheField() throws {
        var config = KubeConfig(
            server: "https://127.0.0.1:1", certificateAuthorityPEM: Array("not a pem".utf8), source: "/tmp/kc")
        XCTAssertThrowsError(try KubeClient(config: config)) { error in
            XCTAssertTrue("\(error)".contains("/tmp/kc: certificate-authority is not a PEM"), "\(error)")
        }
        config.certificateAuthorityPEM = nil
        config.credentials = .clientCertificate(
            certificatePEM: Array(TestCertificates.clientCertificate.utf8), keyPEM: Array("garbage".utf8))
        XCTAssertThrowsError(try KubeClient(config: config)) { error in
            XCTAssertTrue("\(error)".contains("client-key is not a PEM private key"), "\(error)")
        }
    }

    func testARotatedTokenFileIsReadAgainAfterA401() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("wgmesh-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let tokenPath = folder.appendingPathComponent("token").path
        try "first\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
        let server = try await TestAPIServer.start(.init(tls: true, token: "first"))
        var config = server.kubeConfig()
        config.credentials = .tokenFile(try TokenFile(path: tokenPath))
        let client = try KubeClient(config: config)
        try server.createNodes(["n"])
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        // The kubelet rotates the projected token; the server accepts only the new one.
        try "second\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
        server.setToken("second")
        let n = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n", "a 401 made the client read the token file again")
        try await client.shutdown()
        try await server.stop()
    }
}
