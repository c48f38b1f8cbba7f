import ArgumentParser

@main
struct WGMesh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wgmesh",
        abstract: "Encrypt Pod-to-Pod traffic between Kubernetes Nodes with kernel WireGuard.",
        discussion: "Under development: rotate-keys, status, audit and the demo are not here yet. `wgmesh controller` runs the controller, `wgmesh agent` the agent on each Node; `wgmesh wg` configures a kernel WireGuard interface through wgmesh's own netlink code.",
        version: "0.1.0-dev",
        subcommands: [ControllerCommand.self, AgentCommand.self, WireGuardCommand.self, InstallCNICommand.self]
    )
}
