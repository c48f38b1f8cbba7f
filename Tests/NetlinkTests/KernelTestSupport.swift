import Foundation
import XCTest
import WGMeshCore
import Netlink
import TestSupport

/// Gate for tests that need the kernel's WireGuard and CAP_NET_ADMIN.
enum KernelSupport {
    /// Skips where the kernel lacks it; inside the VM (scripts/vm-test.sh sets WGMESH_REQUIRE_KERNEL=1) fails.
    static func requireWireGuard() throws {
        do {
            _ = try KernelWireGuard()
            let links = try KernelNetwork()
            let probe = "wgmprobe\(getpid() % 10000)"
            if let old = try links.link(named: probe) { try links.deleteLink(index: old.index) }
            let link = try links.createWireGuardLink(named: probe, mtu: nil)
            try links.deleteLink(index: link.index)
        } catch {
            throw unmetNeed(
                """
                kernel WireGuard is not available here (\(error)); scripts/vm-test.sh runs this test in a VM \
                kernel that has it
                """, requiredBy: "WGMESH_REQUIRE_KERNEL")
        }
    }
}

/// Creates a fresh WireGuard link for one test and deletes it afterwards.
final class ScratchLink {
    let network: KernelNetwork
    let link: LinkState

    init(_ name: String, network: KernelNetwork) throws {
        self.network = network
        if let old = try network.link(named: name) { try network.deleteLink(index: old.index) }
        link = try network.createWireGuardLink(named: name, mtu: 1420)
    }

    deinit { try? network.deleteLink(index: link.index) }
}

func testKey(_ seed: Int) -> WireGuardKey {
    var b = [UInt8](repeating: 0, count: 32)
    withUnsafeBytes(of: UInt64(seed + 1).bigEndian) { b.replaceSubrange(24..<32, with: $0) }
    b[0] = 0x42
    return try! WireGuardKey(bytes: b)
}
