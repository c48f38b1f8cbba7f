import TestSupport
import XCTest
import WGMeshCore
@testable import Netlink

/// Links, addresses and routes over rtnetlink. Skipped on hosts without kernel WireGuard; run by scripts/vm-test.sh.
final class KernelNetworkTests: XCTestCase {
    var network: KernelNetwork!

    override func setUpWithError() throws {
        try KernelSupport.requireWireGuard()
        network = try KernelNetwork()
    }

    func testLinkLifecycle() throws {
        let scratch = try ScratchLink("wgmt-link", network: network)
        XCTAssertEqual(scratch.link.kind, "wireguard")
        XCTAssertEqual(scratch.link.mtu, 1420)
        XCTAssertFalse(scratch.link.isUp)
        try network.setLink(index: scratch.link.index, mtu: 1380, up: true)
        let up = try XCTUnwrap(try network.link(named: "wgmt-link"))
        XCTAssertEqual(up.mtu, 1380)
        XCTAssertTrue(up.isUp)
        try network.addAddress(try IPPrefix("10.244.7.0/32"), toLinkIndex: up.index, scope: .link)
        try network.addAddress(try IPPrefix("fd00:10:244:7::/128"), toLinkIndex: up.index, scope: .link)
        XCTAssertEqual(
            Set(try network.addresses(ofLinkIndex: up.index)),
            [try IPPrefix("10.244.7.0/32"), try IPPrefix("fd00:10:244:7::/128")])
        // The tunnel's IPv4 address is link-scoped: never the source of a packet leaving by another interface.
        let shown = try sh("ip -4 -o addr show dev wgmt-link")
        XCTAssertTrue(shown.contains("10.244.7.0/32 scope link"), shown)
        try network.removeAddress(try IPPrefix("10.244.7.0/32"), fromLinkIndex: up.index)
        XCTAssertEqual(try network.addresses(ofLinkIndex: up.index), [try IPPrefix("fd00:10:244:7::/128")])
        XCTAssertThrowsError(try network.createWireGuardLink(named: "wgmt-link", mtu: nil)) { error in
            XCTAssertEqual((error as? NetlinkError)?.errno, EEXIST)
        }
        XCTAssertNil(try network.link(named: "wgmt-absent"))
    }

    /// What the agent's link watch reads: the kernel announces a link set down and deleted.
    func testTheLinkMonitorSeesALinkSetDownAndDeleted() throws {
        let monitor = try LinkMonitor()
        var scratch: ScratchLink? = try ScratchLink("wgmt-watch", network: network)
        let index = scratch!.link.index
        try network.setLink(index: index, mtu: nil, up: true)
        try network.setLink(index: index, mtu: nil, up: false)
        scratch = nil  // deleted
        var seen: [LinkMonitor.Change] = []
        let end = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < end,
            !seen.contains(where: { if case .removed(let l) = $0 { l.name == "wgmt-watch" } else { false } })
        {
            seen += try monitor.next(timeout: .milliseconds(200))
        }
        let ours = seen.filter { $0.needsRepair(of: "wgmt-watch") }
        XCTAssertTrue(
            ours.contains { if case .changed(let l) = $0 { !l.isUp && l.index == index } else { false } },
            "set down: \(seen)")
        XCTAssertTrue(
            ours.contains { if case .removed(let l) = $0 { l.index == index } else { false } }, "deleted: \(seen)")
        let setUp = seen.filter { if case .changed(let l) = $0 { l.isUp && l.name == "wgmt-watch" } else { false } }
        XCTAssertFalse(setUp.isEmpty, "set up: \(seen)")
        XCTAssertFalse(setUp.contains { $0.needsRepair(of: "wgmt-watch") }, "a link set up needs nothing")
        XCTAssertFalse(
            LinkMonitor.Change.removed(LinkState(name: "eth9", index: 9, mtu: 1500, isUp: false, kind: nil))
                .needsRepair(of: "wgmt-watch"))
        XCTAssertTrue(LinkMonitor.Change.lost.needsRepair(of: "wgmt-watch"))
    }

    func testRoutesAreAddedDumpedReplacedAndDeletedOnlyOurs() throws {
        let a = try ScratchLink("wgmt-ra", network: network)
        let b = try ScratchLink("wgmt-rb", network: network)
        for l in [a.link, b.link] { try network.setLink(index: l.index, mtu: nil, up: true) }
        // A route some other program made, on our interface, inside our range.
        try sh("ip route add 10.99.0.0/24 dev wgmt-ra proto static")
        defer { _ = try? sh("ip route del 10.99.0.0/24 dev wgmt-ra proto static", allowFailure: true) }

        let v4 = Route(destination: try IPPrefix("10.244.1.0/24"), interfaceIndex: a.link.index)
        let v6 = Route(destination: try IPPrefix("fd00:10:244:1::/64"), interfaceIndex: a.link.index)
        let strict = Route(destination: try IPPrefix("10.244.0.0/16"), interfaceIndex: a.link.index, metric: 100)
        for r in [v4, v6, strict] { try network.add(r) }
        XCTAssertEqual(v6.metric, 1024, "IPv6 metric 0 is stored as 1024")
        XCTAssertEqual(try network.routes(family: nil), [v4, strict, v6].sorted())
        XCTAssertEqual(try network.routes(family: .v6), [v6])
        XCTAssertThrowsError(try network.add(v4)) { XCTAssertEqual(($0 as? NetlinkError)?.errno, EEXIST) }

        let moved = Route(destination: v4.destination, interfaceIndex: b.link.index)
        try network.replace(moved)
        XCTAssertEqual(try network.routes(family: .v4), [moved, strict].sorted())

        // Deleting "our" 10.99.0.0/24 must not remove the foreign route of the same destination.
        XCTAssertThrowsError(
            try network.delete(Route(destination: try IPPrefix("10.99.0.0/24"), interfaceIndex: a.link.index))
        ) { error in
            XCTAssertEqual((error as? NetlinkError)?.errno, ESRCH, "\(error)")
        }
        XCTAssertTrue(try sh("ip route show 10.99.0.0/24").contains("proto static"))
        XCTAssertFalse(try network.routes(family: .v4).contains { $0.destination == (try? IPPrefix("10.99.0.0/24")) })

        for r in [moved, strict, v6] { try network.delete(r) }
        XCTAssertEqual(try network.routes(family: nil), [])
    }
}
