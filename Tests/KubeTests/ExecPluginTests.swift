import Foundation
import KubeTestSupport
import Synchronization
import XCTest
@testable import Kube

/// client-go credential plugins (`users[].user.exec`), run as small shell scripts against the test server.
final class ExecPluginTests: FolderTestCase {
    func read(_ name: String) -> String { (try? String(contentsOfFile: path(name), encoding: .utf8)) ?? "" }

    /// How often the plugin ran (each run appends a line to `runs`).
    var runs: Int { read("runs").split(separator: "\n").count }

    /// A plugin that records its run, KUBERNETES_EXEC_INFO, args, $PLUGIN_GREETING and whether stdin is a
    /// terminal, writes `stderr` to standard error, prints the file `answer`, and exits with `exit`.
    func writePlugin(_ name: String = "plugin", stderr: String = "", exit: Int = 0) throws -> String {
        let d = dir.path
        let script = """
            #!/bin/sh
            echo run >> '\(d)/runs'
            printf '%s' "$KUBERNETES_EXEC_INFO" > '\(d)/exec-info'
            printf '%s' "$*" > '\(d)/args'
            printf '%s' "${PLUGIN_GREETING:-}" > '\(d)/greeting'
            if [ -t 0 ]; then echo terminal > '\(d)/stdin'; else echo none > '\(d)/stdin'; fi
            printf '%s' '\(stderr)' >&2
            cat '\(d)/answer'
            exit \(exit)

            """
        try write(name, script)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path(name))
        return path(name)
    }

    /// Sets what the plugin prints next.
    func answer(
        token: String? = nil, certificate: String? = nil, key: String? = nil, expires: String? = nil,
        apiVersion: String = "client.authentication.k8s.io/v1"
    ) throws {
        var status: [String: JSON] = [:]
        if let token { status["token"] = .string(token) }
        if let certificate { status["clientCertificateData"] = .string(certificate) }
        if let key { status["clientKeyData"] = .string(key) }
        if let expires { status["expirationTimestamp"] = .string(expires) }
        let credential = JSON.object([
            "apiVersion": .string(apiVersion), "kind": "ExecCredential", "status": .object(status),
        ])
        try write("answer", credential.description)
    }

    func plugin(
        _ command: String, mode: ExecCredentialPlugin.Configuration.InteractiveMode = .never,
        installHint: String? = nil,
        cluster: JSON? = nil, now: @escaping @Sendable () -> Date = { Date() }, terminal: Bool = false
    ) -> ExecCredentialPlugin {
        ExecCredentialPlugin(
            .init(
                command: command, args: ["token", "--cluster", "test"], env: [("PLUGIN_GREETING", "hello")],
                interactiveMode: mode, installHint: installHint, cluster: cluster,
                source: "/home/me/.kube/config", field: "users[me].user.exec"),
            now: now, stdinIsTerminal: { terminal })
    }

    /// The error a request through `plugin` ends in.
    func failure(_ plugin: ExecCredentialPlugin) async throws -> String {
        let server = try await TestAPIServer.start(.init(tls: true, token: "t"))
        var config = server.kubeConfig()
        config.credentials = .exec(plugin)
        let client = try KubeClient(config: config)
        var message = ""
        do {
            _ = try await client.get(.nodes, namespace: nil, name: "n")
            XCTFail("the request must fail")
        } catch {
            if case .credentials = error {} else { XCTFail("expected a credentials error, got \(error)") }
            message = "\(error)"
        }
        try await client.shutdown()
        try await server.stop()
        return message
    }

    func testATokenIsCachedUntilItExpiresAndFetchedAgainAfterA401() async throws {
        let start = try Date("2030-01-01T00:00:00Z", strategy: .iso8601)
        let clock = Mutex(start)
        let command = try writePlugin()
        try answer(token: "first", expires: "2030-01-01T01:00:00Z")
        let server = try await TestAPIServer.start(.init(tls: true, token: "first"))
        try server.createNodes(["n"])
        var config = server.kubeConfig()
        config.credentials = .exec(plugin(command, now: { clock.withLock { $0 } }))
        let client = try KubeClient(config: config)

        // Many requests at once: one run of the plugin.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { _ = try await client.get(.nodes, namespace: nil, name: "n") } }
            try await group.waitForAll()
        }
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(runs, 1, "the token is kept until it expires")
        XCTAssertEqual(read("args"), "token --cluster test")
        XCTAssertEqual(read("greeting"), "hello", "exec.env is added to the environment")
        XCTAssertEqual(read("stdin"), "none\n", "interactiveMode Never: no standard input")
        let info = try JSON.parse(Array(read("exec-info").utf8))
        XCTAssertEqual(
            info,
            .object([
                "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                "spec": .object(["interactive": .bool(false)]),
            ]),
            "no cluster without provideClusterInfo")

        // Past expirationTimestamp the plugin runs again, even though the server still takes the token.
        clock.withLock { $0 = start + 3601 }
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(runs, 2, "an expired token is fetched again")

        // The server rotates what it accepts: the 401 runs the plugin again and the request is repeated.
        try answer(token: "second", expires: "2030-01-01T03:00:00Z")
        server.setToken("second")
        let n = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n", "the request succeeded with the new token")
        XCTAssertEqual(runs, 3)
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(runs, 3, "the new token is cached in turn")

        // A plugin whose new token is refused too: one more run, then the 401 is the answer (no loop).
        server.setToken("third")
        do {
            _ = try await client.get(.nodes, namespace: nil, name: "n")
            XCTFail("a refused token must end in 401")
        } catch {
            XCTAssertEqual(error.code, 401)
        }
        XCTAssertEqual(runs, 4)
        try await client.shutdown()
        try await server.stop()
    }

    func testAClientCertificateFromThePluginIsUsedForMutualTLS() async throws {
        let command = try writePlugin()
        try answer(certificate: TestCertificates.clientCertificate, key: TestCertificates.clientKey)
        // The server takes a client certificate signed by its CA, or this token, which the client does not have.
        let server = try await TestAPIServer.start(.init(tls: true, token: "only-for-token-clients"))
        try server.createNodes(["n"])
        var config = server.kubeConfig()
        config.credentials = .exec(plugin(command))
        let client = try KubeClient(config: config)
        let list = try await client.listAll(.nodes)
        XCTAssertEqual(list.items.map(\.metadata.name), ["n"], "authenticated by the plugin's certificate")
        _ = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(runs, 1, "a certificate without expirationTimestamp is kept")
        try await client.shutdown()

        // A certificate that is not PEM is reported naming the plugin.
        try answer(certificate: "not a certificate", key: TestCertificates.clientKey)
        var broken = server.kubeConfig()
        broken.credentials = .exec(plugin(command))
        let brokenClient = try KubeClient(config: broken)
        do {
            _ = try await brokenClient.get(.nodes, namespace: nil, name: "n")
            XCTFail("a bad certificate must be refused")
        } catch {
            XCTAssertTrue(
                "\(error)".contains(
                    """
                    users[me].user.exec runs "\(command)", \
                    which returned clientCertificateData that is not a PEM certificate
                    """), "\(error)")
        }
        try await brokenClient.shutdown()
        try await server.stop()
    }

    func testAMissingPluginGivesTheInstallHint() async throws {
        let hint = "wgmesh-test-login is part of the Example CLI: https://example.com/install"
        let message = try await failure(plugin("wgmesh-test-login", installHint: hint))
        XCTAssertTrue(
            message.contains(
                """
                /home/me/.kube/config: users[me].user.exec runs "wgmesh-test-login", \
                which is not an executable file on $PATH
                """), message)
        XCTAssertTrue(message.hasSuffix(hint), "the installHint comes last, as kubectl prints it: \(message)")
        let byPath = try await failure(plugin(path("bin/absent")))
        XCTAssertTrue(
            byPath.contains(
                "runs \"\(path("bin/absent"))\", which is not an executable file: install it, or correct exec.command"),
            byPath)
    }

    func testAPluginThatPrintsGarbageOrFailsIsNamedWithItsStandardError() async throws {
        let garbage = try writePlugin("garbage", stderr: "using cached login")
        try write("answer", "this is not JSON")
        let message = try await failure(plugin(garbage))
        XCTAssertTrue(
            message.contains(
                """
                users[me].user.exec runs "\(garbage)", \
                which printed 16 bytes that are not an ExecCredential JSON object
                """), message)
        XCTAssertTrue(message.hasSuffix("it wrote: using cached login"), message)

        let failing = try writePlugin(
            "failing", stderr: "error: the SSO session has expired; run example-cli login", exit: 3)
        let failed = try await failure(plugin(failing))
        XCTAssertTrue(
            failed.contains(
                """
                runs "\(failing)", which failed (exit status 3); \
                it wrote: error: the SSO session has expired; run example-cli login
                """), failed)

        // Wrong answers are described without quoting them: they may hold the secret.
        let answers: [(() throws -> Void, String)] = [
            (
                { try self.answer(token: "SECRET-1", apiVersion: "client.authentication.k8s.io/v1beta1") },
                """
                answered with apiVersion "client.authentication.k8s.io/v1beta1" \
                while the kubeconfig asks for client.authentication.k8s.io/v1
                """
            ),
            ({ try self.answer(certificate: "SECRET-2") }, "returned clientCertificateData without clientKeyData"),
            ({ try self.answer() }, "returned neither a token nor clientCertificateData and clientKeyData"),
            (
                { try self.answer(token: "SECRET-3", expires: "tomorrow") },
                "returned expirationTimestamp \"tomorrow\", which is not an RFC 3339 time"
            ),
            (
                { try self.write("answer", "{\"kind\": \"Status\", \"token\": \"SECRET-4\"}") },
                "printed an object of kind \"Status\", not an ExecCredential"
            ),
        ]
        for (setAnswer, expected) in answers {
            try setAnswer()
            let message = try await failure(plugin(garbage))
            XCTAssertTrue(message.contains(expected), message)
            XCTAssertFalse(message.contains("SECRET"), "never the credential: \(message)")
        }
    }

    func testInteractiveModeDecidesStandardInput() async throws {
        let command = try writePlugin()
        try answer(token: "t")
        let message = try await failure(plugin(command, mode: .always, terminal: false))
        XCTAssertTrue(
            message.contains("users[me].user.exec has interactiveMode Always, and standard input is not a terminal"),
            message)
        XCTAssertEqual(runs, 0, "not run at all")

        _ = try await plugin(command, mode: .ifAvailable, terminal: false).credential()
        XCTAssertEqual(try JSON.parse(Array(read("exec-info").utf8))["spec"]?["interactive"], .bool(false))
        XCTAssertEqual(read("stdin"), "none\n", "IfAvailable without a terminal: no standard input")
        _ = try await plugin(command, mode: .ifAvailable, terminal: true).credential()
        XCTAssertEqual(
            try JSON.parse(Array(read("exec-info").utf8))["spec"]?["interactive"], .bool(true),
            "a terminal: interactive")
    }

    func testExpirationTimestampsAreRFC3339() throws {
        let expected = try Date("2030-01-01T01:00:00Z", strategy: .iso8601)
        XCTAssertEqual(ExecCredentialPlugin.parseTimestamp("2030-01-01T01:00:00Z"), expected)
        XCTAssertEqual(ExecCredentialPlugin.parseTimestamp("2030-01-01T03:00:00+02:00"), expected, "an offset")
        XCTAssertEqual(
            ExecCredentialPlugin.parseTimestamp("2030-01-01T01:00:00.250Z"), expected + 0.25, "fractional seconds")
        XCTAssertNil(ExecCredentialPlugin.parseTimestamp("2030-01-01"))
    }

    func testAKubeconfigWithAnExecUserReachesTheServer() async throws {
        let server = try await TestAPIServer.start(.init(tls: true, token: "from-the-plugin"))
        try server.createNodes(["n"])
        _ = try writePlugin("bin/login")
        try answer(token: "from-the-plugin", apiVersion: "client.authentication.k8s.io/v1beta1")
        let ca = Data(TestCertificates.caCertificate.utf8).base64EncodedString()
        let kubeconfig = """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters:
            - name: test
              cluster:
                server: \(server.url)
                certificate-authority-data: \(ca)
                extensions:
                - name: client.authentication.k8s.io/exec
                  extension: {audience: wgmesh-test}
            contexts:
            - name: test
              context: {cluster: test, user: sso}
            users:
            - name: sso
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/v1beta1
                  command: bin/login
                  args: [token]
                  env:
                  - {name: PLUGIN_GREETING, value: from-the-kubeconfig}
                  provideClusterInfo: true
                  installHint: see the README
            """
        try write("config", kubeconfig)
        let config = try KubeConfig.resolve(environment: ["KUBECONFIG": path("config")])
        guard case .exec(let plugin) = config.credentials else { return XCTFail("\(config.credentials)") }
        XCTAssertEqual(
            plugin.configuration.command, path("bin/login"),
            "a relative command is resolved against the kubeconfig's folder")
        XCTAssertEqual(plugin.configuration.interactiveMode, .ifAvailable, "v1beta1's default")
        XCTAssertEqual("\(config.credentials)", "exec plugin \(path("bin/login"))")

        let client = try KubeClient(config: config)
        let n = try await client.get(.nodes, namespace: nil, name: "n")
        XCTAssertEqual(n.metadata.name, "n")
        XCTAssertEqual(read("greeting"), "from-the-kubeconfig")
        let info = try JSON.parse(Array(read("exec-info").utf8))
        XCTAssertEqual(info["apiVersion"], "client.authentication.k8s.io/v1beta1")
        XCTAssertEqual(
            info["spec"]?["cluster"],
            .object([
                "server": .string(server.url), "certificate-authority-data": .string(ca),
                "config": .object(["audience": "wgmesh-test"]),
            ]),
            "provideClusterInfo: the cluster, its CA as data, and the exec extension as config")
        try await client.shutdown()
        try await server.stop()
    }

    func testBrokenExecStanzasNameTheFieldAndTheFix() throws {
        let cases: [(String, String)] = [
            (
                "exec: {command: aws}",
                """
                users[u].user.exec.apiVersion is not set: \
                use client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1
                """
            ),
            (
                "exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: aws}",
                """
                users[u].user.exec.apiVersion is "client.authentication.k8s.io/v1alpha1", which wgmesh does not speak
                """
            ),
            (
                "exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}",
                """
                users[u].user.exec.interactiveMode is required with client.authentication.k8s.io/v1: \
                set it to one of Never, IfAvailable, Always
                """
            ),
            (
                "exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, interactiveMode: Sometimes}",
                "users[u].user.exec.interactiveMode is \"Sometimes\": use one of Never, IfAvailable, Always"
            ),
            (
                "exec: {apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}",
                "users[u].user.exec.command is not set"
            ),
            (
                "exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, "
                    + "interactiveMode: Never, env: [{value: x}]}",
                "users[u].user.exec.env[0].name is not set"
            ),
            (
                "auth-provider: {name: oidc}",
                """
                users[u].user.auth-provider is "oidc", a plugin built into older kubectl that wgmesh does not have: \
                switch the user to an exec credential plugin
                """
            ),
        ]
        for (i, (user, expected)) in cases.enumerated() {
            let text = """
                current-context: c
                clusters: [{name: k, cluster: {server: "https://192.0.2.1:6443"}}]
                contexts: [{name: c, context: {cluster: k, user: u}}]
                users: [{name: u, user: {\(user)}}]
                """
            let file = try write("config-\(i)", text)
            XCTAssertThrowsError(try KubeConfig.load(kubeconfig: file)) { error in
                XCTAssertTrue("\(error)".hasPrefix(file + ": " + expected), "case \(i): \(error)")
            }
        }
    }
}
