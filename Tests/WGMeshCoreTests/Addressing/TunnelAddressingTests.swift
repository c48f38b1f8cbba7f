import XCTest
import WGMeshCore

final class TunnelAddressingTests: XCTestCase {
    func testOneNetworkAddressPerPodCIDRIPv4First() throws {
        let cidrs = [try IPPrefix("fd00:10:244:3::/64"), try IPPrefix("10.244.3.0/24")]
        XCTAssertEqual(
            TunnelAddressing.addresses(podCIDRs: cidrs),
            [try IPPrefix("10.244.3.0/32"), try IPPrefix("fd00:10:244:3::/128")])
        XCTAssertEqual(
            TunnelAddressing.addresses(podCIDRs: [try IPPrefix("10.244.3.0/24")]), [try IPPrefix("10.244.3.0/32")])
        XCTAssertEqual(
            TunnelAddressing.addresses(podCIDRs: [try IPPrefix("fd00:10:244:3::/64")]),
            [try IPPrefix("fd00:10:244:3::/128")])
        XCTAssertEqual(TunnelAddressing.addresses(podCIDRs: []), [])
    }

    func testHostBitsAreClearedAndDuplicatesCollapse() throws {
        let cidrs = [try IPPrefix("10.244.3.7/24"), try IPPrefix("10.244.3.0/24"), try IPPrefix("fd00:10:244:3::9/64")]
        XCTAssertEqual(
            TunnelAddressing.addresses(podCIDRs: cidrs),
            [try IPPrefix("10.244.3.0/32"), try IPPrefix("fd00:10:244:3::/128")])
    }

    func testMTUIsUnderlayMinusOverheadNeverBelow1280() {
        XCTAssertEqual(TunnelAddressing.overhead, 40 + 8 + 32)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 1500), 1420)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 9001), 8921)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 1361), 1281)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 1360), 1280)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 1300), 1280)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 79), 1280, "no underflow")
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: 0), 1280)
        XCTAssertEqual(TunnelAddressing.mtu(underlayMTU: .max), .max - 80)
    }
}
