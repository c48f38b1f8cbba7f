import XCTest
import WGMeshCore

final class PodCIDRAllocatorTests: XCTestCase {
    func p(_ s: String) -> IPPrefix { try! IPPrefix(s) }

    func testDualStackLowestFreeAndRelease() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16"), p("fd00:10:244::/48")])
        XCTAssertEqual(try ipam.allocate(node: "a"), [p("10.244.0.0/24"), p("fd00:10:244::/64")])
        XCTAssertEqual(try ipam.allocate(node: "b"), [p("10.244.1.0/24"), p("fd00:10:244:1::/64")])
        XCTAssertEqual(try ipam.allocate(node: "a"), [p("10.244.0.0/24"), p("fd00:10:244::/64")], "stable")
        ipam.release(node: "a")
        XCTAssertEqual(
            try ipam.allocate(node: "c"), [p("10.244.0.0/24"), p("fd00:10:244::/64")], "lowest free is reused")
        XCTAssertEqual(ipam.owner(of: p("10.244.1.0/24")), "b")
    }

    func testRestoreRefusesDuplicatesOverlapsAndStrangersWithoutChangingState() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16")])
        try ipam.restore(node: "a", cidr: p("10.244.5.0/24"))
        XCTAssertThrowsError(try ipam.restore(node: "b", cidr: p("10.244.5.0/24"))) {
            XCTAssertEqual($0 as? IPAMError, .duplicate(p("10.244.5.0/24"), holder: "a", claimant: "b"))
        }
        XCTAssertThrowsError(try ipam.restore(node: "b", cidr: p("10.244.5.0/25"))) { error in
            XCTAssertTrue("\(error)".contains("not a /24 block"), "\(error)")
        }
        XCTAssertThrowsError(try ipam.restore(node: "b", cidr: p("10.9.0.0/24"))) { error in
            XCTAssertTrue("\(error)".contains("outside the cluster CIDRs (10.244.0.0/16)"), "\(error)")
        }
        XCTAssertThrowsError(try ipam.restore(node: "a", cidr: p("10.244.6.0/24")), "one CIDR per family")
        XCTAssertEqual(ipam.count, 1)
        XCTAssertNil(ipam.allocation(of: "b"))
        XCTAssertEqual(try ipam.allocate(node: "b"), [p("10.244.0.0/24")])
    }

    func testEachFamilyIsRestoredOnItsOwn() throws {
        // The IPv6 range was dropped from the configuration: the IPv4 CIDR is still restored.
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16")])
        try ipam.restore(node: "a", cidr: p("10.244.0.0/24"))
        XCTAssertThrowsError(try ipam.restore(node: "a", cidr: p("fd00:10:244::/64")))
        ipam.claim(node: "a", cidrs: [p("10.244.0.0/24"), p("fd00:10:244::/64")])
        XCTAssertEqual(ipam.allocation(of: "a"), [p("10.244.0.0/24")])
        XCTAssertEqual(try ipam.allocate(node: "b"), [p("10.244.1.0/24")], "a's IPv4 CIDR is not free")
    }

    func testClaimedCIDRsAreNeverHandedOut() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16"), p("fd00:10:244::/48")])
        ipam.claim(node: "spec", cidrs: [p("10.244.0.0/24")])  // spec.podCIDRs from another allocator
        ipam.claim(node: "big", cidrs: [p("10.244.2.0/23")])  // not one block: takes both it covers
        ipam.claim(node: "host", cidrs: [p("10.244.4.7/32")])  // the trace of a garbled annotation
        ipam.claim(node: "v6", cidrs: [p("fd00:10:244::/64")])
        XCTAssertEqual(try ipam.allocate(node: "n"), [p("10.244.1.0/24"), p("fd00:10:244:1::/64")])
        XCTAssertEqual(try ipam.allocate(node: "m"), [p("10.244.5.0/24"), p("fd00:10:244:2::/64")])
        ipam.claim(node: "spec", cidrs: [])
        XCTAssertEqual(
            try ipam.allocate(node: "o", families: [.v4]), [p("10.244.0.0/24")], "an unclaimed block is free again")
        ipam.release(node: "big")
        XCTAssertEqual(try ipam.allocate(node: "q", families: [.v4]), [p("10.244.2.0/24")])
    }

    func testOverlapsAreFoundWhateverTheirSizes() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16")])
        _ = try ipam.allocate(node: "a")  // 10.244.0.0/24
        ipam.claim(node: "a", cidrs: [p("10.244.0.0/24")])
        ipam.claim(node: "copy", cidrs: [p("10.244.0.0/24")])
        ipam.claim(node: "wide", cidrs: [p("10.244.0.0/22")])
        ipam.claim(node: "outside", cidrs: [p("10.99.0.0/24")])
        ipam.claim(node: "outside2", cidrs: [p("10.99.0.128/25")])
        XCTAssertEqual(Set(ipam.overlaps(of: "a").map(\.otherNode)), ["copy", "wide"])
        XCTAssertEqual(ipam.overlaps(of: "wide").map(\.otherNode).sorted(), ["a", "copy"])
        XCTAssertEqual(ipam.overlaps(of: "outside").map(\.otherNode), ["outside2"])
        XCTAssertEqual(ipam.owner(of: p("10.244.0.0/24")), "a", "the allocation stays with its node")
        ipam.claim(node: "copy", cidrs: [])
        ipam.claim(node: "wide", cidrs: [])
        XCTAssertEqual(ipam.overlaps(of: "a"), [])
    }

    func testBadConfigurations() throws {
        var none = try PodCIDRAllocator(clusterCIDRs: [])
        XCTAssertEqual(try none.allocate(node: "a"), [], "no pools: only claims are tracked")
        XCTAssertThrowsError(try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16"), p("10.244.128.0/17")])) {
            XCTAssertEqual($0 as? IPAMError, .clusterCIDRsOverlap(self.p("10.244.0.0/16"), self.p("10.244.128.0/17")))
        }
        XCTAssertThrowsError(try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.1/16")])) {
            XCTAssertEqual($0 as? IPAMError, .notCanonical(self.p("10.244.0.1/16")))
        }
        XCTAssertThrowsError(try PodCIDRAllocator(clusterCIDRs: [p("10.244.0.0/16")], nodeMaskIPv4: 12))
        XCTAssertThrowsError(try PodCIDRAllocator(clusterCIDRs: [p("fd00::/8")], nodeMaskIPv6: 120))
    }

    func testExhaustionIsAllOrNothing() throws {
        var ipam = try PodCIDRAllocator(
            clusterCIDRs: [p("10.244.0.0/23"), p("fd00:10:244::/63")], nodeMaskIPv4: 24, nodeMaskIPv6: 64)
        _ = try ipam.allocate(node: "a")
        ipam.release(node: "a")
        try ipam.restore(node: "v4only", cidr: p("10.244.0.0/24"))
        try ipam.restore(node: "x", cidr: p("fd00:10:244::/64"))
        try ipam.restore(node: "y", cidr: p("fd00:10:244:1::/64"))
        XCTAssertThrowsError(try ipam.allocate(node: "z")) { error in
            XCTAssertTrue("\(error)".contains("no free IPv6 Pod CIDR left in fd00:10:244::/63"), "\(error)")
        }
        XCTAssertNil(ipam.allocation(of: "z"))
        XCTAssertNil(ipam.owner(of: p("10.244.1.0/24")), "the IPv4 block was not taken when IPv6 failed")
    }

    func testSeveralPoolsPerFamily() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.1.0.0/24"), p("10.2.0.0/23")], nodeMaskIPv4: 24)
        XCTAssertEqual(try ipam.allocate(node: "a"), [p("10.1.0.0/24")])
        XCTAssertEqual(try ipam.allocate(node: "b"), [p("10.2.0.0/24")])
        XCTAssertEqual(try ipam.allocate(node: "c"), [p("10.2.1.0/24")])
        XCTAssertThrowsError(try ipam.allocate(node: "d"))
    }

    func testSlashEightWith65536NodesAndHugeIPv6() throws {
        var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.0.0.0/8"), p("fd00:10::/48")])
        for i in 0..<65_536 { _ = try ipam.allocate(node: "n\(i)") }
        XCTAssertEqual(ipam.allocation(of: "n65535"), [p("10.255.255.0/24"), p("fd00:10:0:ffff::/64")])
        XCTAssertThrowsError(try ipam.allocate(node: "one-too-many"))
        ipam.release(node: "n40000")
        XCTAssertEqual(try ipam.allocate(node: "again"), [p("10.156.64.0/24"), p("fd00:10:0:9c40::/64")])
        // An IPv6 /32 with /64 blocks has 2^32 of them: nothing is allocated per free block.
        var big = try PodCIDRAllocator(clusterCIDRs: [p("fd00::/32")])
        XCTAssertEqual(try big.allocate(node: "a"), [p("fd00::/64")])
    }

    func testRandomOperationsMatchAReferenceModel() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            var ipam = try PodCIDRAllocator(clusterCIDRs: [p("10.10.0.0/26")], nodeMaskIPv4: 29)  // 8 blocks
            var model: [String: Int] = [:]  // node -> block index
            for step in 0..<200 {
                let node = "n\(Int.random(in: 0..<12, using: &rng))"
                if Bool.random(using: &rng) {
                    let lowest = (0..<8).first { !model.values.contains($0) }
                    if let held = model[node] {
                        XCTAssertEqual(
                            try ipam.allocate(node: node),
                            [try p("10.10.0.0/26").subnet(newLength: 29, index: UInt64(held))])
                    } else if let lowest {
                        XCTAssertEqual(
                            try ipam.allocate(node: node),
                            [try p("10.10.0.0/26").subnet(newLength: 29, index: UInt64(lowest))], "step \(step)")
                        model[node] = lowest
                    } else {
                        XCTAssertThrowsError(try ipam.allocate(node: node))
                    }
                } else {
                    ipam.release(node: node)
                    model[node] = nil
                }
                XCTAssertEqual(ipam.count, model.count)
                let cidrs = model.keys.compactMap { ipam.allocation(of: $0) }.flatMap { $0 }
                XCTAssertEqual(Set(cidrs).count, cidrs.count, "no CIDR held twice")
            }
        }
    }
}
