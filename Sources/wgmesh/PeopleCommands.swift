import ArgumentParser
import CLI
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `wgmesh status`: every Node's place in the mesh, as `kubectl get` prints it.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            """
            Show every Node's Pod CIDRs, endpoint, key generation and age, applied generation, WireGuardMeshReady \
            and peers.
            """,
        discussion:
            """
            Exits with status 1 when any node's WireGuardMeshReady condition is not True (or missing), so that \
            scripts can wait on it.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Option(name: [.short, .customLong("output")], help: "wide (more columns), json or yaml; a table when left out.")
    var output: String?

    @Option(
        name: [.customShort("l"), .customLong("selector")],
        help: "Only the Nodes with these labels, as kubectl's -l (e.g. pool=blue,zone!=a).")
    var selector: String?

    func validate() throws {
        do { _ = try OutputFormat(flag: output) } catch { throw ValidationError(error.description) }
    }

    func run() async throws {
        let format = try OutputFormat(flag: output)
        let (text, allReady) = try await kube.withClient {
            try await NodeStatusReport.run($0, format: format, labelSelector: selector)
        }
        print(text, terminator: "")
        if !allReady { throw ExitCode(1) }
    }
}

/// `wgmesh rotate-keys`: asks the controller for new keys, and waits until they run everywhere.
struct RotateKeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-keys",
        abstract: "Give nodes new WireGuard keys, through the controller's two-phase rotation (no traffic is lost).",
        discussion: """
            Writes wgmesh.dev/rotate-request on each node; the controller stages the next key, which every peer \
            pre-stages, then switches after its rotation grace. With --wait, prints a line for each node once the \
            node runs the new key (wgmesh.dev/applied-key-generation) and every peer does (wgmesh.dev/applied-peers), \
            and exits with status 1 \
            naming the nodes that did not finish within --timeout.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Option(name: .customLong("node"), help: ArgumentHelp("A Node to rotate; repeat for more.", valueName: "name"))
    var nodes: [String] = []

    @Flag(help: "Rotate every Node.")
    var all = false

    @Option(
        name: [.customShort("l"), .customLong("selector")],
        help: "Rotate the Nodes with these labels, as kubectl's -l (e.g. pool=blue).")
    var selector: String?

    @Flag(help: "Wait until each node and every one of its peers runs the new key.")
    var wait = false

    @Option(help: "With --wait, how long to wait (e.g. 30s, 5m).")
    var timeout = "5m"

    func validate() throws {
        do { _ = try RotateKeys.Selection(nodes: nodes, all: all, selector: selector) } catch {
            throw ValidationError(error.description)
        }
        _ = try Flags.seconds(timeout, flag: "--timeout")
    }

    func run() async throws {
        let selection = try RotateKeys.Selection(nodes: nodes, all: all, selector: selector)
        let seconds = try Flags.seconds(timeout, flag: "--timeout")
        let unfinished = try await kube.withClient { client -> [String: RotationProgress] in
            let names = try await RotateKeys.resolve(client, selection)
            let requests = try await RotateKeys.request(client, nodes: names, token: RotateKeys.token()) { print($0) }
            guard wait else { return [:] }
            return await RotateKeys.wait(client, requests: requests, timeout: .milliseconds(Int64(seconds * 1000))) {
                print($0)
            }
        }
        guard unfinished.isEmpty else { throw RotateKeys.unfinished(unfinished, timeout: timeout) }
    }
}

/// `wgmesh audit`: the report a compliance team files.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract:
            """
            Report, with PASS/FAIL checks, whether every node encrypts Pod-to-Pod traffic, and sign the report \
            with its SHA-256.
            """,
        discussion: """
            Checks: every node in the mesh, running its issued key, WireGuardMeshReady True; no key older than \
            --max-key-age; no public key or Pod CIDR claimed twice; strict mode on every node over the same cluster \
            CIDRs; no Pod packet dropped for leaving unencrypted since --since (counts before it are stated). Exits \
            with status 1 when a check fails. The report holds no secret; its last line (Markdown) or its sha256 \
            field (JSON) is the SHA-256 of its body, \
            which --verify checks on a filed copy.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Option(name: [.short, .customLong("output")], help: "markdown or json.")
    var output = "markdown"

    @Option(help: "Keys older than this fail (e.g. 720h; 2160h is 90 days).")
    var maxKeyAge = "720h"

    @Option(
        help:
            """
            Unencrypted packets counted since then fail: a duration back from now (24h) or the last report's RFC \
            3339 time.
            """
    )
    var since = "24h"

    @Option(help: ArgumentHelp("Check that a filed report is unchanged, and exit.", valueName: "file"))
    var verify: String?

    func validate() throws {
        guard ["markdown", "json"].contains(output) else {
            throw ValidationError("-o \(output) is not an audit format: use -o markdown or -o json")
        }
        _ = try Flags.seconds(maxKeyAge, flag: "--max-key-age")
        _ = try windowStart(now: Date())
    }

    /// `--since`: the last report's RFC 3339 time, or a duration back from `now`.
    func windowStart(now: Date) throws -> Date {
        if let time = RFC3339.parse(since) { return time }
        guard let seconds = try? Flags.seconds(since, flag: "--since") else {
            throw ValidationError(
                """
                --since \(since): use a duration back from now, such as 24h, or the last report's time, such as \
                2026-11-27T10:00:00Z
                """
            )
        }
        return now.addingTimeInterval(-seconds)
    }

    func run() async throws {
        if let verify {
            guard let data = FileManager.default.contents(atPath: verify) else {
                throw ValidationError("cannot read \(verify): check the path")
            }
            switch AuditReport.verify(String(decoding: data, as: UTF8.self)) {
            case .success: print("\(verify): unchanged (its SHA-256 matches its body)")
            case .failure(let error): throw CLIError("\(verify): \(error)")
            }
            return
        }
        let now = Date()
        let maxAge = Int64(try Flags.seconds(maxKeyAge, flag: "--max-key-age"))
        let start = try windowStart(now: now)
        let config = try kube.config()
        let (text, passed) = try await kube.withClient(config) {
            try await Audit.run(
                $0, cluster: .init(server: config.server, context: config.context), json: output == "json",
                maxKeyAge: maxAge, windowStart: start, now: now)
        }
        print(text, terminator: "")
        if !passed { throw ExitCode(1) }
    }
}

/// `wgmesh uninstall`: the last step of removing wgmesh from a cluster.
struct UninstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove every wgmesh.dev/ annotation and the WireGuardMeshReady condition from all Nodes.",
        discussion: """
            The last step: first delete the controller's Deployment and the agent and wgmesh-device DaemonSets, and \
            run the cleanup DaemonSet on every node (kubectl apply -k manifests/cleanup/: once no Pod on a node holds \
            an address from wgmesh's network, it removes the interface, routes, CNI bridge, nftables table, CNI file, \
            the agent's annotations and the condition). \
            Until then uninstall refuses and changes nothing: a node that still has wgmesh.dev/enrollment-key or \
            the condition has an agent that has not cleaned up, and a controller that holds its Lease would write the \
            annotations again. --force removes them anyway.
            """
    )

    @OptionGroup var kube: KubeOptions

    @Flag(help: "Remove the annotations and the condition even while agents or the controller still run.")
    var force = false

    @Option(help: "Namespace of the controller's leader-election Lease.")
    var leaseNamespace = "wgmesh-system"

    @Option(help: "Name of the controller's leader-election Lease.")
    var leaseName = "wgmesh-controller"

    func run() async throws {
        try await kube.withClient {
            try await Uninstall.run($0, force: force, leaseNamespace: leaseNamespace, leaseName: leaseName) {
                print($0)
            }
        }
    }
}
