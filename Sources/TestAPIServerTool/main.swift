// Not shipped: the Kubernetes-compatible test API server as a process, for the multi-node scenarios in
// the VM (scripts/e2e-agent.sh) and the demo. Plain HTTP without authentication, on the address given.
// Usage: wgmesh-test-apiserver HOST PORT KUBECONFIG_OUT
import Foundation
import KubeTestSupport

let args = CommandLine.arguments
guard args.count == 4, let port = Int(args[2]) else {
    FileHandle.standardError.write(Data("usage: wgmesh-test-apiserver HOST PORT KUBECONFIG_OUT\n".utf8))
    exit(2)
}
let server = try await TestAPIServer.start(.init(bookmarkInterval: .seconds(5), host: args[1], port: port))
let kubeconfig = """
    apiVersion: v1
    kind: Config
    clusters:
    - name: test
      cluster:
        server: \(server.url)
    users:
    - name: test
      user: {}
    contexts:
    - name: test
      context:
        cluster: test
        user: test
    current-context: test

    """
try kubeconfig.write(toFile: args[3], atomically: true, encoding: .utf8)
FileHandle.standardOutput.write(Data("test API server listening on \(server.url)\n".utf8))
// Runs until killed (SIGTERM's default action).
while true { try await Task.sleep(for: .seconds(3600)) }
