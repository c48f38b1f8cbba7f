import ArgumentParser

@main
struct WGMesh: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: programName,
            abstract: "Encrypt Pod-to-Pod traffic between Kubernetes Nodes with kernel WireGuard.",
            discussion: """
                `wgmesh controller` runs the controller and `wgmesh agent` the agent on each Node (with `wgmesh \
                userspace-device` where the kernel has no WireGuard). The people's commands: `status` shows every \
                Node's place in the mesh, `rotate-keys` gives nodes new keys, `audit` writes the compliance report, \
                `peer` lets a machine outside the cluster in, \
                `uninstall` removes what wgmesh wrote on the Nodes. `wgmesh wg` configures a kernel WireGuard \
                interface through wgmesh's own netlink code. Linked as kubectl-wgmesh, it is the kubectl plugin: \
                `kubectl wgmesh status`.
                """,
            version: "0.1.0-dev",
            subcommands: [
                StatusCommand.self, RotateKeysCommand.self, AuditCommand.self, PeerCommand.self, UninstallCommand.self,
                ControllerCommand.self, AgentCommand.self, UserspaceDeviceCommand.self, WireGuardCommand.self,
                InstallCNICommand.self,
            ]
        )
    }

    /// `kubectl wgmesh` when run as the kubectl plugin (through a link named kubectl-wgmesh), else `wgmesh`:
    /// usage and help name the command the user typed.
    static let programName =
        CommandLine.arguments.first.map { $0.split(separator: "/").last == "kubectl-wgmesh" } == true
        ? "kubectl wgmesh" : "wgmesh"
}
