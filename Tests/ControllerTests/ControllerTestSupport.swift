import Controller
import Foundation
import Kube
import KubeTestSupport
import Logging
import Synchronization
import TestSupport
import WGMeshCore
import XCTest

/// A test API server with Nodes whose agents (played by the test) hold enrollment keys.
final class TestCluster: @unchecked Sendable {
    let server: TestAPIServer
    /// The test's own writes, as a person with kubectl makes them (field manager "wgmesh").
    let client: KubeClient
    /// The controllers' client, writing as the controller's field manager.
    let controllerClient: KubeClient
    let logs = LogCapture()
    var enrollment: [String: WireGuardKeyPair] = [:]

    init() async throws {
        server = try await TestAPIServer.start(.init(bookmarkInterval: .milliseconds(500)))
        client = try KubeClient(config: server.kubeConfig())
        controllerClient = try KubeClient(
            config: server.kubeConfig(), userAgent: "wgmesh-controller/test", fieldManager: MeshController.fieldManager)
    }

    func stop() async throws {
        try await client.shutdown()
        try await controllerClient.shutdown()
        try await server.stop()
    }

    /// Sets (or, with nil, removes) annotations by hand.
    func annotate(_ name: String, _ annotations: [String: String?]) async throws {
        _ = try await client.patch(
            .nodes, namespace: nil, name: name,
            .annotations(annotations))
    }

    /// Sets `spec.podCIDRs`, as kube-controller-manager does.
    func setSpecPodCIDRs(_ name: String, _ cidrs: [String]) async throws {
        _ = try await client.patch(
            .nodes, namespace: nil, name: name,
            .merge(
                .object([
                    "spec": .object([
                        "podCIDR": .string(cidrs[0]), "podCIDRs": .array(cidrs.map(JSON.string)),
                    ])
                ])))
    }

    /// The raw `pod-cidrs` annotation.
    func podCIDRs(_ name: String) -> String? {
        server.withStore(.nodes) { store in
            (try? store.get(name))?["metadata"]?["annotations"]?[Annotation.podCIDRs]?.string
        }
    }

    static func node(_ name: String, enrollmentKey: String?, addresses: [(String, String)], podCIDRs: [String] = [])
        -> JSON
    {
        var annotations: [String: JSON] = [:]
        annotations[Annotation.enrollmentKey] = enrollmentKey.map(JSON.string)
        var spec: [String: JSON] = [:]
        if !podCIDRs.isEmpty {
            spec["podCIDR"] = .string(podCIDRs[0])
            spec["podCIDRs"] = .array(podCIDRs.map(JSON.string))
        }
        return .object([
            "apiVersion": "v1", "kind": "Node",
            "metadata": .object(["name": .string(name), "annotations": .object(annotations)]),
            "spec": .object(spec),
            "status": .object([
                "addresses": .array(addresses.map { .object(["type": .string($0.0), "address": .string($0.1)]) })
            ]),
        ])
    }

    /// Nodes that publish an enrollment key, as their agents would.
    func addNodes(_ names: [String]) throws {
        for name in names { enrollment[name] = WireGuardKeyPair.generate() }
        try server.withStore(.nodes) { store in
            for (i, name) in names.enumerated() {
                _ = try store.create(
                    Self.node(
                        name, enrollmentKey: enrollment[name]!.publicKey.base64,
                        addresses: [("InternalIP", "10.0.\(i / 250).\(i % 250 + 1)"), ("Hostname", name)]))
            }
        }
    }

    func nodes() -> [MeshNode] {
        server.withStore(.nodes) { store in
            let list = try! ObjectList(json: try! store.list())
            // A node with a garbage enrollment key or Pod CIDR (a test puts one there) is read without it.
            return list.items.map { item in
                var annotations = item.metadata.annotations
                for key in [Annotation.enrollmentKey, Annotation.podCIDRs]
                where (try? MeshNode(name: item.metadata.name, annotations: annotations)) == nil {
                    annotations[key] = nil
                }
                return try! MeshNode(name: item.metadata.name, annotations: annotations)
            }
        }
    }

    func node(_ name: String) -> MeshNode? { nodes().first { $0.name == name } }

    func events() -> [JSON] {
        server.withStore(.events, namespace: "default") { store in (try! store.list())["items"]?.array ?? [] }
    }

    func events(reason: String, node: String? = nil) -> [JSON] {
        events().filter { $0["reason"]?.string == reason && (node == nil || $0["regarding"]?["name"]?.string == node) }
    }

    /// A node is done when it has CIDRs, a keypair and an endpoint.
    static func isComplete(_ n: MeshNode) -> Bool {
        !n.podCIDRs.isEmpty && n.publicKey != nil && n.sealedPrivateKey != nil && n.endpoint != nil
    }

    /// A controller; `specWait` replaces the policy's (tests do not wait for a kube-controller-manager
    /// unless they say so).
    func controller(
        _ identity: String, clusterCIDRs: [String] = ["10.240.0.0/12", "fd00:10:244::/48"],
        policy: ControllerPolicy = .init(),
        specWait: TimeInterval = 0, maxConcurrentRotations: Int = 1, peerCIDRs: [String] = []
    ) throws -> MeshController {
        var policy = policy
        policy.specWait = specWait
        let config = MeshController.Configuration(
            clusterCIDRs: try clusterCIDRs.map { try IPPrefix($0) }, policy: policy,
            maxConcurrentRotations: maxConcurrentRotations, identity: identity,
            peerCIDRs: try peerCIDRs.map { try IPPrefix($0) })
        return try MeshController(
            api: controllerClient, configuration: config, logger: logs.logger("controller-\(identity)"),
            informer: .init(
                watchTimeoutSeconds: 5...10, backoff: Backoff(initial: .milliseconds(50), maximum: .seconds(1))))
    }

    /// Opens every sealed key as the node's agent would; fails the test when one does not open or
    /// does not match its public key. Returns the private keys (base64) for leak scans.
    func openAll(file: StaticString = #filePath, line: UInt = #line) -> [String] {
        var secrets: [String] = []
        for n in nodes() {
            guard let enrollment = enrollment[n.name], let sealed = n.sealedPrivateKey, let generation = n.keyGeneration
            else { continue }
            guard n.sealedTo == enrollment.publicKey else { continue }
            do {
                let key = try sealed.open(with: enrollment.privateKey, nodeName: n.name, generation: generation)
                XCTAssertEqual(
                    try WireGuardKeyPair(privateKey: key).publicKey, n.publicKey,
                    "\(n.name): sealed key matches public key", file: file, line: line)
                secrets.append(key.base64)
                if let next = n.nextSealedPrivateKey {
                    secrets.append(
                        try next.open(with: enrollment.privateKey, nodeName: n.name, generation: generation + 1).base64)
                }
            } catch {
                XCTFail("\(n.name): \(error)", file: file, line: line)
            }
        }
        return secrets
    }

    /// Where a private key shows: in an annotation, an Event or a log line.
    func leaks(_ secrets: [String]) -> [String] {
        let annotations = server.withStore(.nodes) { store in (try! store.list()).description }
        let events = self.events().map(\.description).joined(separator: "\n")
        let logs = self.logs.lines.withLock { $0.joined(separator: "\n") }
        // Every run of base64 characters in the texts, and each 44-character window of it, looked up
        // among the secrets: a key pasted into a longer word ("key=…") is found too.
        let wanted = Set(secrets)
        var found: [String] = []
        for (what, text) in [("an annotation", annotations), ("an Event", events), ("a log line", logs)] {
            for token in text.split(whereSeparator: {
                !($0.isASCII && ($0.isLetter || $0.isNumber || "+/=".contains($0)))
            }) where token.count >= 44 {
                let chars = Array(token)
                for start in 0...(chars.count - 44) where wanted.contains(String(chars[start..<(start + 44)])) {
                    found.append(what)
                }
            }
        }
        return found
    }

    /// No private key in any annotation, Event or log line.
    func assertNoSecretLeaks(_ secrets: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(secrets.isEmpty, file: file, line: line)
        XCTAssertFalse(
            logs.lines.withLock { $0.isEmpty }, "the scan needs log lines to look at", file: file, line: line)
        XCTAssertEqual(leaks(secrets), [], "private keys found", file: file, line: line)
    }
}

/// Fails the test unless `condition` holds within `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(60), file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    // Not too often: each look takes the test server's lock.
    if try await !poll(timeout: timeout, interval: .milliseconds(250), condition) {
        XCTFail("timed out waiting until \(what)", file: file, line: line)
    }
}
