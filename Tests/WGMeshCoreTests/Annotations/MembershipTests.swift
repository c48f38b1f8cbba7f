import Foundation
import TestSupport
import WGMeshCore
import XCTest

/// Which nodes are in the mesh, as `wgmesh status` and `wgmesh audit` judge it.
final class MembershipTests: XCTestCase {
    func testMembershipJudgesAsTheAgentsDo() {
        var fixture = ClusterFixture(["a", "b", "c"])
        XCTAssertEqual(Membership.leftOut(fixture.nodes), [:])
        fixture.annotations["c"]![Annotation.podCIDRs] = "10.244.0.128/25"  // inside a's
        fixture.annotations["b"]![Annotation.podCIDRs] = "10.1.0.0/24"  // outside the cluster CIDRs the agents report
        let out = Membership.leftOut(fixture.nodes)
        XCTAssertEqual(out["b"], "Pod CIDR 10.1.0.0/24 is outside the cluster CIDRs")
        XCTAssertTrue(out["a"]?.contains("overlaps 10.244.0.128/25 of node c") ?? false, "\(out)")
        XCTAssertTrue(out["c"]?.contains("of node a") ?? false, "\(out)")
        XCTAssertEqual(Membership.clusterCIDRs([]), Membership.everyAddress, "no agent reports: nothing is outside")
    }
}
