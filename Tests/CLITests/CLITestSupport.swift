import CLI
import Controller
import Foundation
import Kube
import KubeTestSupport
import Logging
import Synchronization
import WGMeshCore
import XCTest

/// The test API server with Nodes, the real controller, and the nodes' agents played by the test: each
/// publishes what a real agent publishes (`MeshAgentTests` checks that the real one publishes the same).
final class CLICluster: Sendable {
    static let clusterCIDRs = [try! IPPrefix("10.244.0.0/16"), try! IPPrefix("fd00:10:244::/48")]

    let server: TestAPIServer
    /// The people's commands' client, as `wgmesh` makes it.
    let client: KubeClient
    /// The played agents' client.
    let agentClient: KubeClient
    let controller: Task<Void, Never>
    let agents = Mutex<Task<Void, Never>?>(nil)
    /// Agents that never apply a new key: their `applied-key-generation` stays as it is.
    let stalled = Mutex<Set<String>>([])

    /// `peerCIDRs`: the Peer CRD is installed and the controller serves Peers from these ranges.
    init(nodes: [String], rotationGrace: TimeInterval = 0.2, peerCIDRs: [String] = []) async throws {
        server = try await TestAPIServer.start(.init(bookmarkInterval: .milliseconds(500)))
        if !peerCIDRs.isEmpty { try server.installPeerCRD() }
        client = try KubeClient(config: server.kubeConfig(), userAgent: cliFieldManager, fieldManager: cliFieldManager)
        agentClient = try KubeClient(
            config: server.kubeConfig(), userAgent: "wgmesh-agent/test", fieldManager: "wgmesh-agent")
        try server.withStore(.nodes) { store in
            for (i, name) in nodes.enumerated() {
                _ = try store.create(
                    .object([
                        "apiVersion": "v1", "kind": "Node",
                        "metadata": .object([
                            "name": .string(name), "labels": .object(["pool": i % 2 == 0 ? "blue" : "green"]),
                        ]),
                        "status": .object([
                            "addresses": .array([
                                .object(["type": "InternalIP", "address": .string("192.0.2.\(i + 1)")])
                            ])
                        ]),
                    ]))
            }
        }
        let controllerClient = try KubeClient(
            config: server.kubeConfig(), userAgent: "wgmesh-controller/test", fieldManager: MeshController.fieldManager)
        let c = try MeshController(
            api: controllerClient,
            configuration: .init(
                clusterCIDRs: Self.clusterCIDRs,
                policy: .init(cidrSource: .wgmesh, rotation: .init(grace: rotationGrace), specWait: 0),
                identity: "test",
                peerCIDRs: try peerCIDRs.map { try IPPrefix($0) }),
            logger: Logger(label: "controller") { _ in SwiftLogNoOpLogHandler() })
        controller = Task {
            await c.run()
            try? await controllerClient.shutdown()
        }
    }

    /// Starts the agents: every 50 ms each publishes its enrollment key and settings, the key generation it
    /// runs, the digest of its peers' keys, a zero unencrypted count and `WireGuardMeshReady` True.
    func startAgents() {
        let task = Task {
            while !Task.isCancelled {
                try? await self.agentPass()
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        agents.withLock { $0 = task }
    }

    func agentPass() async throws {
        let nodes = try await agentClient.listAll(.nodes).items.map(ObservedNode.init)
        let mesh = nodes.compactMap(\.meshNode)
        for node in nodes {
            var wanted = AgentReport.settings(clusterCIDRs: Self.clusterCIDRs, strict: true)
            wanted[Annotation.enrollmentKey] =
                node.annotations[Annotation.enrollmentKey] ?? WireGuardKeyPair.generate().publicKey.base64
            if let g = node.meshNode?.keyGeneration, !stalled.withLock({ $0.contains(node.name) }) {
                wanted[Annotation.appliedKeyGeneration] = String(g)
            }
            wanted[Annotation.appliedPeers] = AppliedPeers.expected(
                for: node.name, nodes: mesh, clusterCIDRs: Self.clusterCIDRs)
            if node.annotations[Annotation.unencryptedDrops] == nil {
                wanted[Annotation.unencryptedDrops] = UnencryptedDrops().description
            }
            let changes = wanted.filter { node.annotations[$0.key] != $0.value }
            if !changes.isEmpty {
                _ = try await agentClient.patch(
                    .nodes, namespace: nil, name: node.name,
                    .annotations(changes), subresource: nil)
            }
            if node.condition == nil {
                _ = try await agentClient.patch(
                    .nodes, namespace: nil, name: node.name,
                    .condition(
                        .object([
                            "type": .string(MeshCondition.type), "status": "True",
                            "reason": "AllPeersConnected",
                            "message": .string(
                                "all \(nodes.count - 1) peers had a handshake in the last 180 s"),
                            "lastTransitionTime": .string(RFC3339.format(Date())),
                        ])), subresource: "status")
            }
        }
    }

    func stopAgents() async {
        let task = agents.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    /// Waits until every node runs its issued key and every peer's, and reports ready.
    func waitUntilSettled(file: StaticString = #filePath, line: UInt = #line) async {
        await eventually("every node runs its key and its peers'", file: file, line: line) {
            guard let nodes = try? await client.listAll(.nodes).items.map(ObservedNode.init) else { return false }
            let mesh = nodes.compactMap(\.meshNode)
            return nodes.allSatisfy { n in
                n.condition?.status == "True" && n.meshNode?.keyGeneration != nil
                    && n.meshNode?.appliedKeyGeneration == n.meshNode?.keyGeneration
                    && n.report.appliedPeers
                        == AppliedPeers.expected(for: n.name, nodes: mesh, clusterCIDRs: Self.clusterCIDRs)
            }
        }
    }

    func annotate(_ name: String, _ annotations: [String: String?]) async throws {
        _ = try await client.patch(
            .nodes, namespace: nil, name: name,
            .annotations(annotations), subresource: nil)
    }

    func annotations(_ name: String) async throws -> [String: String] {
        try await client.get(.nodes, namespace: nil, name: name).metadata.annotations
    }

    func stop() async throws {
        await stopAgents()
        controller.cancel()
        await controller.value
        try await client.shutdown()
        try await agentClient.shutdown()
        try await server.stop()
    }
}

/// What a command printed, line by line.
final class Printed: Sendable {
    let lines = Mutex<[String]>([])
    func callAsFunction(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// Fails the test unless `condition` holds within `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(30), file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    if try await !poll(timeout: timeout, interval: .milliseconds(50), condition) {
        XCTFail("timed out waiting until \(what)", file: file, line: line)
    }
}
