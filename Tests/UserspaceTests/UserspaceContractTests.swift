import Foundation
import TestSupport
import Userspace
import WGMeshCore
import XCTest

/// The backend contract (Tests/TestSupport/WireGuardContract.swift) on wireguard-go through its UAPI
/// socket, the same checks as KernelContractTests on kernel WireGuard. wireguard-go runs in a network
/// namespace of the test's own, started and ended by PID. Needs root, a tun device and wireguard-go, which
/// scripts/setup.sh installs; it says so and skips elsewhere (UserspaceTestSupport.swift).
final class UserspaceContractTests: XCTestCase {
    static let namespace = "wgmc-us"
    var process: Process?
    var interface = ""

    override func setUpWithError() throws {
        let program = try UserspaceSupport.requireWireGuardGo()
        interface = "wgmc-u\(getpid() % 1000)"
        _ = try run("/usr/sbin/ip", ["netns", "del", Self.namespace], allowFailure: true)
        _ = try run("/usr/sbin/ip", ["netns", "add", Self.namespace])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", Self.namespace, program, "-f", interface]
        p.environment = ["WG_PROCESS_FOREGROUND": "1", "PATH": "/usr/bin:/usr/sbin:/bin:/sbin"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let device = UserspaceWireGuard()
        for _ in 0..<200 where !device.answers(interface) { usleep(50_000) }
        XCTAssertTrue(device.answers(interface), "wireguard-go answers on \(device.socketPath(interface))")
    }

    override func tearDown() {
        if let p = process, p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
        _ = try? run("/usr/sbin/ip", ["netns", "del", Self.namespace], allowFailure: true)
    }

    /// `ip netns …`; a failure fails the test unless `allowFailure`.
    func run(_ path: String, _ args: [String], allowFailure: Bool = false) throws {
        let (status, output) = try runProgram(path, args)
        if status != 0 && !allowFailure {
            XCTFail("\(path) \(args.joined(separator: " ")) exited \(status): \(output)")
        }
    }

    func testReadBackEqualsSet() throws {
        try WireGuardContract.readBackEqualsSet(UserspaceWireGuard(), interface: interface)
    }

    func testUpdateOnlyReplaceAndRemoval() throws {
        try WireGuardContract.updateOnlyReplaceAndRemoval(UserspaceWireGuard(), interface: interface)
    }

    func testErrorsNameTheOperation() throws {
        try WireGuardContract.errorsNameTheOperation(UserspaceWireGuard(), missing: "wgmc-none")
    }

    func testTenThousandPeers() throws {
        try WireGuardContract.manyPeers(UserspaceWireGuard(), interface: interface, count: 10_000)
    }
}
