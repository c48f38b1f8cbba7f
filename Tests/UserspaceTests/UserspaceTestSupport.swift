import Foundation
import TestSupport

/// Gate for the tests that run the real wireguard-go: they need root (a network namespace), a tun device and
/// wireguard-go, which scripts/setup.sh installs. Elsewhere they skip, saying what is missing; with
/// WGMESH_REQUIRE_USERSPACE=1 (scripts/test.sh sets it) a missing need is a failure instead, as
/// WGMESH_REQUIRE_KERNEL=1 makes it for the kernel tests in the VM.
enum UserspaceSupport {
    /// Returns the path of wireguard-go, or throws a skip (a failure where required) naming what is missing.
    static func requireWireGuardGo() throws -> String {
        func missing(_ what: String) -> Error { unmetNeed("this test " + what, requiredBy: "WGMESH_REQUIRE_USERSPACE") }
        guard getuid() == 0 else {
            throw missing("needs root for a network namespace and a tun device (CI runs as root)")
        }
        guard FileManager.default.fileExists(atPath: "/dev/net/tun") else {
            throw missing("needs /dev/net/tun, which is missing: wireguard-go runs on a tun device")
        }
        guard
            let program = ["/usr/bin/wireguard-go", "/usr/sbin/wireguard-go"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw missing(
                "needs wireguard-go, which is not installed: scripts/setup.sh installs it (Debian wireguard-go)")
        }
        return program
    }
}
