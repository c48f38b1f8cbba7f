import ArgumentParser
import CLI
import Kube

/// How every subcommand that talks to the API server reaches it: kubeconfig read as kubectl reads it
/// (one `--kubeconfig`, else the files of `$KUBECONFIG` merged, else `~/.kube/config`), or the Pod's
/// service account.
struct KubeOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            """
            Kubeconfig file, read alone (default: the files in $KUBECONFIG, merged as kubectl merges them, else \
            ~/.kube/config; in a Pod, when those choose no context, the service account).
            """,
            valueName: "path"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("Kubeconfig context (default: current-context).", valueName: "name"))
    var context: String?

    @Option(help: ArgumentHelp("Kubeconfig cluster to use instead of the context's.", valueName: "name"))
    var cluster: String?

    @Option(help: ArgumentHelp("Kubeconfig user to use instead of the context's.", valueName: "name"))
    var user: String?

    func config() throws -> KubeConfig {
        try KubeConfig.resolve(kubeconfig: kubeconfig, context: context, cluster: cluster, user: user)
    }

    func client(userAgent: String, fieldManager: String? = nil, requestTimeout: Duration = .seconds(30)) throws
        -> KubeClient
    {
        try KubeClient(
            config: try config(), userAgent: userAgent, fieldManager: fieldManager, requestTimeout: requestTimeout)
    }

    /// Runs `body` with a client of the people's commands (field manager `wgmesh-cli`), shut down on every way out.
    func withClient<T>(_ config: KubeConfig? = nil, _ body: (KubeClient) async throws -> T) async throws -> T {
        let client = try KubeClient(
            config: try config ?? self.config(), userAgent: cliFieldManager, fieldManager: cliFieldManager)
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
