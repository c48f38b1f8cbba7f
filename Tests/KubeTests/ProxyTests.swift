import Foundation
import KubeTestSupport
import XCTest
@testable import Kube

/// `proxy-url` and `$HTTPS_PROXY`/`$NO_PROXY`, chosen as Go's net/http chooses them for kubectl, and
/// requests through a CONNECT or SOCKS5 proxy that the test runs on loopback.
final class ProxyTests: XCTestCase {
    func testNoProxyMatchesAsGoDoes() {
        let cases: [(host: String, port: Int, noProxy: String, bypass: Bool)] = [
            ("api.example.com", 443, "", false),
            ("localhost", 443, "", true),
            ("127.0.0.1", 6443, "", true),
            ("127.9.9.9", 6443, "", true),
            ("::1", 6443, "", true),
            ("::ffff:127.0.0.1", 6443, "", true),
            ("api.example.com", 443, "*", true),
            ("api.example.com", 443, "example.com", true),
            ("example.com", 443, "example.com", true),
            ("api.example.com", 443, ".example.com", true),
            ("example.com", 443, ".example.com", false),
            ("example.com", 443, "*.example.com", false),
            ("api.example.com", 443, "*.example.com", true),
            ("notexample.com", 443, "example.com", false),
            ("API.Example.COM", 443, " other.org , EXAMPLE.com ", true),
            ("api.example.com", 443, "example.com:443", true),
            ("api.example.com", 6443, "example.com:443", false),
            ("10.1.2.3", 6443, "10.0.0.0/8", true),
            ("11.1.2.3", 6443, "10.0.0.0/8", false),
            ("10.1.2.3", 6443, "10.1.2.3", true),
            ("10.1.2.3", 6443, "10.1.2.3:443", false),
            ("10.1.2.3", 6443, "1.2.3", false),
            ("fd00::10", 6443, "fd00::/8", true),
            ("fe80::10", 6443, "fd00::/8", false),
            ("10.1.2.3", 6443, "fd00::/0", false),
            ("10.1.2.3", 6443, "010.1.2.3", false),
            ("10.1.2.3", 6443, "10.0.0.0/33", false),
            ("fd00::10", 6443, "fd00::10", true),
            ("fd00::10", 6443, "[fd00::10]:6443", true),
            ("fd00::10", 6443, "[fd00::10]:443", false),
            ("10.1.2.3", 6443, "example.com", false),
        ]
        for c in cases {
            XCTAssertEqual(
                KubeProxy.bypasses(host: c.host, port: c.port, noProxy: c.noProxy), c.bypass,
                "\(c.host):\(c.port) NO_PROXY=\(c.noProxy)")
        }
    }

    func testTheProxyComesFromTheClusterElseTheEnvironment() throws {
        func proxy(_ server: String, _ proxyURL: String? = nil, _ env: [String: String]) throws -> KubeProxy? {
            try KubeProxy.forServer(server, proxyURL: proxyURL, source: "/kc", environment: env)
        }
        let env = [
            "HTTPS_PROXY": "http://corp:3128", "https_proxy": "http://ignored:1", "HTTP_PROXY": "plain:8080",
            "NO_PROXY": "internal.example",
        ]
        XCTAssertEqual(
            try proxy("https://api.example.com:6443", nil, env)?.host, "corp", "HTTPS_PROXY before https_proxy")
        XCTAssertEqual(
            try proxy("http://api.example.com:8080", nil, env).map { "\($0.host):\($0.port)" }, "plain:8080",
            "http:// servers: HTTP_PROXY; host:port is http")
        XCTAssertNil(try proxy("https://k8s.internal.example", nil, env), "NO_PROXY")
        XCTAssertNil(try proxy("https://127.0.0.1:6443", nil, env), "loopback is never proxied from the environment")
        XCTAssertEqual(
            try proxy("https://127.0.0.1:6443", "socks5://127.0.0.1:1080", env)?.kind, .socks5,
            "proxy-url applies to every server")
        XCTAssertEqual(
            try proxy("https://k8s.internal.example", "http://u%40corp:p%3Aw@proxy", env),
            KubeProxy(kind: .http, host: "proxy", port: 80, username: "u@corp", password: "p:w"),
            "proxy-url wins over NO_PROXY")
        XCTAssertEqual(
            try proxy("https://[fd00::1]:6443", nil, ["https_proxy": "http://[fd00::3128]:3128"])?.host, "fd00::3128")
        XCTAssertNil(try proxy("https://api.example.com", nil, [:]))

        XCTAssertThrowsError(try proxy("https://api.example.com", "socks5://user:secret@proxy:1080", [:])) { error in
            XCTAssertEqual(
                "\(error)",
                """
                /kc: proxy-url is "socks5://user:REDACTED@proxy:1080": wgmesh cannot authenticate to a SOCKS5 proxy: \
                use one that needs no password, or an http:// proxy
                """)
        }
        XCTAssertThrowsError(try proxy("https://api.example.com", nil, ["HTTPS_PROXY": "https://proxy:443"])) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix(
                    "environment: $HTTPS_PROXY is \"https://proxy:443\": wgmesh cannot speak TLS to the proxy itself"),
                "\(error)")
        }
        XCTAssertThrowsError(try proxy("https://api.example.com", "ftp://proxy", [:])) { error in
            XCTAssertTrue("\(error)".contains("the scheme ftp is not a proxy wgmesh speaks"), "\(error)")
        }
    }

    /// A client of the test server at `server` (another URL for the same server), with `proxyURL` and `environment`.
    func client(
        _ server: TestAPIServer, url: String? = nil, tlsServerName: String? = nil, proxyURL: String? = nil,
        environment: [String: String] = [:]
    ) throws -> KubeClient {
        var config = server.kubeConfig()
        if let url { config.server = url }
        config.tlsServerName = tlsServerName
        config.proxyURL = proxyURL
        return try KubeClient(config: config, connectTimeout: .seconds(2), environment: environment)
    }

    func testRequestsGoThroughTheClustersProxyURL() async throws {
        let server = try await TestAPIServer.start(.init(tls: true, token: "t"))
        try server.createNodes(["n"])
        let proxy = try await TestProxy.start(credentials: (user: "ops", password: "pa:ss"))
        let socks = try await TestProxy.start()

        let connect = try client(server, proxyURL: "http://ops:pa%3Ass@127.0.0.1:\(proxy.port)")
        let n = try await connect.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n")
        XCTAssertEqual(
            proxy.targets, ["127.0.0.1:\(server.port)"], "CONNECT to the server, with the proxy's Basic credentials")
        try await connect.shutdown()

        let wrongPassword = try client(server, proxyURL: "http://ops:wrong@127.0.0.1:\(proxy.port)")
        do {
            _ = try await wrongPassword.get(.nodes, namespace: nil, name: "n")
            XCTFail("the proxy refuses a wrong password")
        } catch {
            guard case .transport = error else { return XCTFail("\(error)") }
        }
        try await wrongPassword.shutdown()

        let viaSOCKS = try client(server, proxyURL: socks.url(scheme: "socks5"))
        _ = try await viaSOCKS.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(socks.targets, ["127.0.0.1:\(server.port)"])
        try await viaSOCKS.shutdown()

        try await socks.stop()
        try await proxy.stop()
        try await server.stop()
    }

    func testHTTPSProxyIsUsedUnlessNoProxyNamesTheServer() async throws {
        let server = try await TestAPIServer.start(.init(tls: true, token: "t"))
        try server.createNodes(["n"])
        // The API server's name is known only to the proxy, as on a network where only the proxy resolves it.
        let proxy = try await TestProxy.start(hosts: ["api.wgmesh.invalid": "127.0.0.1"])
        let url = "https://api.wgmesh.invalid:\(server.port)"
        let env = ["HTTPS_PROXY": "127.0.0.1:\(proxy.port)", "NO_PROXY": "localhost,10.0.0.0/8"]

        let proxied = try client(server, url: url, tlsServerName: "kubernetes.default.svc", environment: env)
        let n = try await proxied.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n")
        XCTAssertEqual(
            proxy.targets, ["api.wgmesh.invalid:\(server.port)"],
            "CONNECT to the server's address; tls-server-name is only sent and verified inside the tunnel")
        try await proxied.shutdown()

        var exempt = env
        exempt["NO_PROXY"] = "localhost,.invalid"
        let direct = try client(server, url: url, tlsServerName: "kubernetes.default.svc", environment: exempt)
        do {
            _ = try await direct.get(.nodes, namespace: nil, name: "n")
            XCTFail("without the proxy, the name does not resolve")
        } catch {
            guard case .transport = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(proxy.targets.count, 1, "NO_PROXY: the proxy was not asked")
        try await direct.shutdown()

        let loopback = try client(server, environment: env)
        _ = try await loopback.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(proxy.targets.count, 1, "127.0.0.1 is reached directly, as kubectl does")
        try await loopback.shutdown()

        try await proxy.stop()
        try await server.stop()
    }
}
