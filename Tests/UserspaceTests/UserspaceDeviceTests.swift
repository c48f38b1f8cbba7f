import Foundation
import TestSupport
import Userspace
import WGMeshCore
import XCTest

/// `wgmesh userspace-device` (UserspaceDevice) and the agent's --external-wireguard-go (WireGuardGo with
/// `Launch.elsewhere`) with the real wireguard-go, in a network namespace of the test's own: a wrapper
/// program runs it there, and every process is ended by PID. Needs root, a tun device and wireguard-go, which
/// scripts/setup.sh installs; it says so and skips elsewhere (UserspaceTestSupport.swift).
final class UserspaceDeviceTests: XCTestCase {
    static let namespace = "wgmc-dev"
    var interface = ""
    var wrapper = ""
    var others: [Process] = []
    var devices: [(UserspaceDevice, Thread)] = []
    let logs = LogCapture()

    /// The host's links: none of the test's interfaces is there (its tun devices live in the namespace).
    struct NoLinks: LinkTable {
        struct Unexpected: Error {}
        func link(named name: String) throws -> LinkState? { nil }
        func createWireGuardLink(named name: String, mtu: UInt32?) throws -> LinkState { throw Unexpected() }
        func setLink(index: UInt32, mtu: UInt32?, up: Bool?) throws { throw Unexpected() }
        func deleteLink(index: UInt32) throws { throw Unexpected() }
        func interface(carrying address: IPAddress) throws -> LinkState? { nil }
        func addresses(ofLinkIndex index: UInt32) throws -> [IPPrefix] { [] }
        func addAddress(_ address: IPPrefix, toLinkIndex index: UInt32, scope: AddressScope) throws {
            throw Unexpected()
        }
        func removeAddress(_ address: IPPrefix, fromLinkIndex index: UInt32) throws { throw Unexpected() }
    }

    override func setUpWithError() throws {
        let program = try UserspaceSupport.requireWireGuardGo()
        interface = "wgmc-d\(getpid() % 1000)"
        try sh("ip netns del \(Self.namespace) 2>/dev/null; ip netns add \(Self.namespace)")
        let folder = NSTemporaryDirectory() + "wgmesh-device-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        wrapper = folder + "/wireguard-go"
        try "#!/bin/sh\nexec /usr/sbin/ip netns exec \(Self.namespace) \(program) \"$@\"\n".write(
            toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
    }

    override func tearDown() {
        for (device, thread) in devices {
            device.stop()
            while !thread.isFinished { usleep(20_000) }
        }
        for p in others where p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
        _ = try? sh("ip netns del \(Self.namespace)", allowFailure: true)
        try? FileManager.default.removeItem(atPath: (wrapper as NSString).deletingLastPathComponent)
    }

    func go(_ launch: WireGuardGo.Launch = .here, startTimeout: Duration = .seconds(10)) -> WireGuardGo {
        WireGuardGo(
            program: wrapper, device: UserspaceWireGuard(), network: NoLinks(), logger: logs.logger("device"),
            launch: launch,
            startTimeout: startTimeout)
    }

    /// `wgmesh userspace-device`'s loop on a thread of its own, stopped in tearDown if the test does not.
    func startDevice(_ go: WireGuardGo) -> (UserspaceDevice, Thread) {
        let device = UserspaceDevice(
            interface: interface, go: go, logger: logs.logger("device"), pollInterval: .milliseconds(50))
        let thread = Thread { device.run() }
        thread.start()
        devices.append((device, thread))
        return (device, thread)
    }

    /// wireguard-go started by another process (as an agent without --external-wireguard-go starts it).
    func startOther() throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: wrapper)
        p.arguments = ["-f", interface]
        p.environment = ["WG_PROCESS_FOREGROUND": "1", "PATH": "/usr/bin:/usr/sbin:/bin:/sbin"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        others.append(p)
        try wait("the other wireguard-go answers") { UserspaceWireGuard().answers(self.interface) }
        return p
    }

    func wait(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) throws {
        let end = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < end else { throw Failure(what: what) }
            usleep(20_000)
        }
    }
    struct Failure: Error, CustomStringConvertible {
        let what: String
        var description: String { "timed out waiting until \(what)" }
    }

    func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !stat.split(separator: " ")[2].hasPrefix("Z")
    }

    func testItStartsWireGuardGoAgainWhenItDiesAndEndsItOnStop() throws {
        let go = go()
        let (device, thread) = startDevice(go)
        try wait("its wireguard-go answers") { go.child(of: interface) != nil && go.device.answers(interface) }
        usleep(300_000)  // until `ensure` (polling every 50 ms) has seen it answer too, and watches it
        let first = try XCTUnwrap(go.child(of: interface))

        kill(first, SIGKILL)
        try wait("a new wireguard-go answers") {
            (go.child(of: interface) ?? first) != first && go.device.answers(interface)
        }
        let second = try XCTUnwrap(go.child(of: interface))
        // Logged by the thread that reaps it, which may come after the new one is up.
        try wait("the exit is logged") { logs.lines.withLock { $0.contains { $0.contains("wireguard-go exited") } } }

        device.stop()
        try wait("run returns") { thread.isFinished }
        XCTAssertNil(go.child(of: interface))
        XCTAssertFalse(isRunning(second), "stop ends its wireguard-go")
        XCTAssertFalse(go.device.accepts(interface), "and nothing answers on the socket")
    }

    func testAnotherWireGuardGoIsLeftAndReplacedOnlyWhenItStopsAnswering() throws {
        let other = try startOther()
        let go = go()
        _ = startDevice(go)
        usleep(500_000)
        XCTAssertNil(go.child(of: interface), "no wireguard-go of its own while another answers")
        XCTAssertTrue(other.isRunning, "the other one is left running")
        XCTAssertTrue(logs.lines.withLock { $0.contains { $0.contains("another wireguard-go answers") } })

        // As the container runtime ends an agent's container: SIGKILL, and its tun device goes with it.
        kill(other.processIdentifier, SIGKILL)
        other.waitUntilExit()
        try wait("its own wireguard-go answers") { go.child(of: interface) != nil && go.device.answers(interface) }
        XCTAssertTrue(logs.lines.withLock { $0.contains { $0.contains("stopped answering") } })
    }

    func testTheAgentWaitsForAnotherProcesssWireGuardGoAndStartsNone() throws {
        let go = go(.elsewhere, startTimeout: .milliseconds(300))
        let why = try XCTUnwrap(go.unavailable(named: interface), "unavailable while nothing answers")
        XCTAssertTrue(why.contains(go.device.socketPath(interface)) && why.contains("userspace-device"), why)
        let started = ContinuousClock.now
        XCTAssertThrowsError(try go.ensure(named: interface, mtu: 1420)) { error in
            XCTAssertTrue("\(error)".contains("userspace-device"), "the error names who starts it: \(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3), "ensure waits startTimeout, then fails")
        XCTAssertNil(go.child(of: interface), "it starts none")
        XCTAssertFalse(go.device.accepts(interface))

        _ = try startOther()
        XCTAssertNil(go.unavailable(named: interface))
        XCTAssertFalse(try go.ensure(named: interface, mtu: 1420), "one that answers is used as it is")
        XCTAssertNil(go.child(of: interface))
    }
}
