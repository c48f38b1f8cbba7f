// Not shipped: the Kubernetes-compatible test API server as a process, for the multi-node scenarios in
// the VM (scripts/e2e-agent.sh) and the demo. Plain HTTP on the address given; no credentials are required,
// but each kubeconfig it writes carries a token that names who sends a request, as a real API server's
// authenticator does: KUBECONFIG_OUT is a person's (kubernetes-admin: the people's commands),
// KUBECONFIG_OUT.controller the controller's ServiceAccount, KUBECONFIG_OUT.agent-NODE the agent's Pod on
// NODE (its token names the node), KUBECONFIG_OUT.harness the scenario's own setup and fault injection.
// With --crd FILE (repeatable), the CustomResourceDefinitions in FILE (YAML, e.g. manifests/peer-crd.yaml) are
// created at start, so that their custom resources are served.
// With --record, every accepted write to a Node or a Peer, or its status, is appended to FILE as one admission request
// per line (scripts/check-admission-policies.py --replay evaluates them through the admission policies),
// with "acceptedAt": when the server accepted the write (seconds since 1970, the machine's clock), which the
// join figure of scripts/e2e.sh measures from.
// With --tls CA_OUT, HTTPS with the test certificates (KubeTestSupport/TestCertificates: 127.0.0.1,
// localhost, kubernetes.default.svc), their CA written to CA_OUT, as a Pod's service-account ca.crt
// (scripts/check-containers.sh).
// Usage: wgmesh-test-apiserver HOST PORT KUBECONFIG_OUT [--agents NODE,NODE...] [--crd FILE]... [--record FILE]
//        [--tls CA_OUT]
import Foundation
import Kube
import KubeTestSupport

let usage = """
    usage: wgmesh-test-apiserver HOST PORT KUBECONFIG_OUT [--agents NODE,NODE...] [--crd FILE]... [--record FILE] \
    [--tls CA_OUT]

    """
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n" + usage).utf8))
    exit(2)
}

var positional: [String] = []
var agents: [String] = []
var recordPath: String?
var caOut: String?
var crdFiles: [String] = []
var rest = CommandLine.arguments.dropFirst()
while let arg = rest.popFirst() {
    switch arg {
    case "--agents":
        guard let list = rest.popFirst() else { fail("--agents needs a list of node names") }
        agents += list.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
    case "--crd":
        guard let path = rest.popFirst() else { fail("--crd needs a file of CustomResourceDefinitions") }
        crdFiles.append(path)
    case "--record":
        guard let path = rest.popFirst() else { fail("--record needs a file") }
        recordPath = path
    case "--tls":
        guard let path = rest.popFirst() else { fail("--tls needs a file for the CA") }
        caOut = path
    default:
        positional.append(arg)
    }
}
guard positional.count == 3, let port = Int(positional[1]) else {
    fail("expected HOST PORT KUBECONFIG_OUT, got \(positional)")
}
let kubeconfigPath = positional[2]

/// The scenario's own writes (Nodes registered as a kubelet would, faults injected as etcd surgery would):
/// not the product's, so the replay counts them without judging them.
let harness = UserInfo(username: "wgmesh-test-harness", groups: ["wgmesh:test-harness", "system:authenticated"])
var identities: [String: (file: String, user: UserInfo)] = [
    "test-admin": (kubeconfigPath, .admin),
    "test-controller": (kubeconfigPath + ".controller", .controller),
    "test-harness": (kubeconfigPath + ".harness", harness),
]
for node in agents { identities["test-agent-" + node] = (kubeconfigPath + ".agent-" + node, .agent(node: node)) }

let recorder: FileHandle?
if let recordPath {
    guard FileManager.default.createFile(atPath: recordPath, contents: nil),
        let handle = FileHandle(forWritingAtPath: recordPath)
    else {
        fail("cannot write \(recordPath)")
    }
    recorder = handle
} else {
    recorder = nil
}
let record: (@Sendable (JSON) -> Void)? = recorder.map { handle in
    { @Sendable request in
        var stamped = request.object ?? [:]
        stamped["acceptedAt"] = JSON.double(Date().timeIntervalSince1970)
        handle.write(JSON.object(stamped).data + Data("\n".utf8))
    }
}

if let caOut { try (TestCertificates.caCertificate + "\n").write(toFile: caOut, atomically: true, encoding: .utf8) }
let server = try await TestAPIServer.start(
    .init(
        tls: caOut != nil, bookmarkInterval: .seconds(5), host: positional[0], port: port,
        identities: identities.mapValues(\.user), recordNodeWrite: record))
for path in crdFiles {
    do {
        try server.createCustomResourceDefinitions(yaml: String(contentsOfFile: path, encoding: .utf8))
    } catch {
        fail("--crd \(path): \(error)")
    }
}
for (token, identity) in identities {
    let kubeconfig = """
        apiVersion: v1
        kind: Config
        clusters:
        - name: test
          cluster:
            server: \(server.url)\(caOut.map { "\n    certificate-authority: \($0)" } ?? "")
        users:
        - name: \(identity.user.username)
          user:
            token: \(token)
        contexts:
        - name: test
          context:
            cluster: test
            user: \(identity.user.username)
        current-context: test

        """
    try kubeconfig.write(toFile: identity.file, atomically: true, encoding: .utf8)
}
FileHandle.standardOutput.write(
    Data(
        ("test API server listening on \(server.url)"
            + (recordPath.map { ", recording Node and Peer writes to \($0)" } ?? "") + "\n").utf8))
// Runs until killed (SIGTERM's default action).
while true { try await Task.sleep(for: .seconds(3600)) }
