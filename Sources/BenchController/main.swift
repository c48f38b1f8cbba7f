// Benchmark: how long the controller takes to bring N new Nodes to fully annotated against the test
// API server, and how many API requests it makes per node. The reference, measured in the same run,
// is a bare client making the one write per node that the controller cannot avoid.
import Controller
import Foundation
import Kube
import KubeTestSupport
import Logging
import WGMeshCore

let count = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 5000

func cluster(_ server: TestAPIServer) throws -> [String: WireGuardKeyPair] {
    var enrollment: [String: WireGuardKeyPair] = [:]
    try server.withStore(.nodes) { store in
        for i in 0..<count {
            let name = "node-\(i)"
            let pair = WireGuardKeyPair.generate()
            enrollment[name] = pair
            _ = try store.create(
                .object([
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": .object([
                        "name": .string(name),
                        "annotations": .object([Annotation.enrollmentKey: .string(pair.publicKey.base64)]),
                    ]),
                    "status": .object([
                        "addresses": .array([
                            .object([
                                "type": "InternalIP", "address": .string("10.\(i >> 16).\((i >> 8) & 255).\(i & 255)"),
                            ])
                        ])
                    ]),
                ]))
        }
    }
    return enrollment
}

/// Those of `nodes` not yet fully annotated. The poll holds the store's lock, which the server's requests wait
/// for: it looks only at the nodes not yet done, and reads three keys, not every annotation.
func unfinished(_ server: TestAPIServer, _ nodes: [Int]) -> [Int] {
    server.withStore(.nodes) { store in
        nodes.filter { i in
            let a = (try? store.get("node-\(i)"))?["metadata"]?["annotations"]
            return a?[Annotation.podCIDRs] == nil || a?[Annotation.sealedPrivateKey] == nil
                || a?[Annotation.endpoint] == nil
        }
    }
}

var quiet = Logger(label: "bench")
quiet.logLevel = .error

// Reference: one annotation patch per node, of the size the controller writes, one after another.
let reference = try await TestAPIServer.start()
let enrollment = try cluster(reference)
let refClient = try KubeClient(config: reference.kubeConfig())
let sample = WireGuardKeyPair.generate()
let sealed = try SealedKey.seal(
    sample.privateKey, to: enrollment["node-0"]!.publicKey, nodeName: "node-0", generation: 1)
let refStart = ContinuousClock.now
for i in 0..<count {
    _ = try await refClient.patch(
        .nodes, namespace: nil, name: "node-\(i)",
        .annotations([
            Annotation.publicKey: sample.publicKey.base64,
            Annotation.sealedPrivateKey: sealed.base64,
            Annotation.podCIDRs: "10.244.0.0/24,fd00:10:244::/64", Annotation.endpoint: "10.0.0.1:51820",
            Annotation.keyGeneration: "1",
            Annotation.keyIssuedAt: "2026-11-27T10:00:00Z",
            Annotation.sealedTo: enrollment["node-0"]!.publicKey.base64,
        ]), subresource: nil)
}
let refTime = ContinuousClock.now - refStart
try await refClient.shutdown()
try await reference.stop()

// The controller on a fresh server with the same nodes.
let server = try await TestAPIServer.start()
_ = try cluster(server)
let client = try KubeClient(config: server.kubeConfig())
// The cluster has no kube-controller-manager assigning spec.podCIDRs: configured as such a cluster is
// (--cidr-source=wgmesh). With auto, every node would first wait --pod-cidr-spec-wait (15 s) for it, a
// timer and not the controller's work.
let controller = try MeshController(
    api: client,
    configuration: .init(
        clusterCIDRs: [try IPPrefix("10.0.0.0/8"), try IPPrefix("fd00:10::/32")], policy: .init(cidrSource: .wgmesh),
        identity: "bench"), logger: quiet)
server.resetRequestCounts()
let start = ContinuousClock.now
let task = Task { await controller.run() }
var remaining = Array(0..<count)
repeat {
    remaining = unfinished(server, remaining)
    if !remaining.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
} while !remaining.isEmpty
let elapsed = ContinuousClock.now - start
// Events go out after the writes they describe: count their requests once they have all gone.
var posted = -1
while server.requestCounts["POST events", default: 0] != posted {
    posted = server.requestCounts["POST events", default: 0]
    try await Task.sleep(for: .seconds(1))
}
let drained = ContinuousClock.now - start - .seconds(1)
task.cancel()
await task.value
let requests = server.requestCounts
let total = requests.values.reduce(0, +)
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
print("nodes: \(count)")
print(
    String(
        format: "controller: %.2f s to bring every node to fully annotated (%.2f ms per node)", seconds(elapsed),
        seconds(elapsed) * 1000 / Double(count)))
print(String(format: "Events: all %d written %.2f s after the start", posted, seconds(drained)))
print(String(format: "reference:  %.2f s for one bare annotation patch per node from one client", seconds(refTime)))
print(String(format: "controller/reference: %.2f", seconds(elapsed) / seconds(refTime)))
print(
    """
    API requests: \(total) \
    (\(requests.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
    """
)
print(
    String(
        format: "requests per node: %.2f; node writes per node: %.2f (the minimum is 1)", Double(total) / Double(count),
        Double(requests["PATCH nodes", default: 0]) / Double(count)))
try await client.shutdown()
try await server.stop()
