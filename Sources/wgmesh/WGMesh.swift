import ArgumentParser

@main
struct WGMesh: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wgmesh", abstract: "Encrypt Pod-to-Pod traffic between Kubernetes Nodes with kernel WireGuard.")
}
