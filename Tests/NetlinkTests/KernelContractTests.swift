import TestSupport
import WGMeshCore
import XCTest
@testable import Netlink

/// The backend contract (Tests/TestSupport/WireGuardContract.swift) on kernel WireGuard; the same
/// checks run on wireguard-go in UserspaceTests. Skipped on hosts without it; run by scripts/vm-test.sh.
final class KernelContractTests: XCTestCase {
    var network: KernelNetwork!

    override func setUpWithError() throws {
        try KernelSupport.requireWireGuard()
        network = try KernelNetwork()
    }

    func testReadBackEqualsSet() throws {
        let scratch = try ScratchLink("wgmc-k0", network: network)
        try WireGuardContract.readBackEqualsSet(try KernelWireGuard(), interface: scratch.link.name)
    }

    func testUpdateOnlyReplaceAndRemoval() throws {
        let scratch = try ScratchLink("wgmc-k1", network: network)
        try WireGuardContract.updateOnlyReplaceAndRemoval(try KernelWireGuard(), interface: scratch.link.name)
    }

    func testErrorsNameTheOperation() throws {
        try WireGuardContract.errorsNameTheOperation(try KernelWireGuard(), missing: "wgmc-none")
    }

    func testAThousandPeers() throws {
        let scratch = try ScratchLink("wgmc-k2", network: network)
        try WireGuardContract.manyPeers(try KernelWireGuard(), interface: scratch.link.name, count: 1000)
    }
}
