import Agent
import ArgumentParser
import Logging

/// `wgmesh install-cni`: the agent DaemonSet's init container, which puts the image's CNI plugins on the node.
struct InstallCNICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-cni",
        abstract: "Copy the image's CNI plugins into the node's plugin directory where they are missing or older.",
        discussion: """
            For each plugin in --from: a node without it gets it; a copy wgmesh made earlier (listed in \
            .wgmesh-cni-plugins in --to, with the content it still has) is replaced unless it is a newer version; any \
            other file is replaced only when that plugin, run without CNI_COMMAND, reports an older version than the \
            image's, and kept when it reports \
            none. Nothing is removed. Each copy is atomic: a temporary file in --to, fsync, mode 0755, rename.
            """
    )

    @Option(help: ArgumentHelp("The image's plugins.", valueName: "directory"))
    var from = "/opt/wgmesh/cni/bin"

    @Option(
        help: ArgumentHelp(
            "The node's plugin directory (in the DaemonSet, the host's /opt/cni/bin mounted at /host/opt/cni/bin).",
            valueName: "directory"))
    var to = "/opt/cni/bin"

    @Option(
        help: ArgumentHelp(
            """
            A file holding the release version (e.g. 1.1.1) of the --from plugins that report none themselves, as \
            Debian's builds do.
            """,
            valueName: "path"))
    var pluginsVersionFile = "/opt/wgmesh/cni/VERSION"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func run() throws {
        let logger = makeLogger("wgmesh.install-cni", level: logLevel)
        try CNIPluginInstaller(sourceDirectory: from, destinationDirectory: to, sourceVersionFile: pluginsVersionFile)
            .run(logger: logger)
    }
}
