import ArgumentParser

@main
struct WGMesh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wgmesh",
        abstract: "Encrypt Pod-to-Pod traffic between Kubernetes Nodes with kernel WireGuard.",
        discussion: "Under development: the controller, agent, rotate-keys, status and audit commands are not here yet. `wgmesh wg` configures a kernel WireGuard interface through wgmesh's own netlink code.",
        version: "0.1.0-dev",
        subcommands: [WireGuardCommand.self]
    )
}
