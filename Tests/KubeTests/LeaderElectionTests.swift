import Foundation
import Kube
import KubeTestSupport
import Synchronization
import XCTest

/// Leader election between replicas over the test server's Lease.
final class LeaderElectionTests: XCTestCase {
    /// Short periods so that the tests run in seconds, with a wide gap between renew deadline and
    /// lease duration so that a loaded test machine does not blur who leads when.
    static func configuration(_ identity: String, release: Bool) -> LeaderElector.Configuration {
        .init(
            namespace: "wgmesh-system", name: "wgmesh-controller", identity: identity,
            leaseDuration: .milliseconds(3000),
            renewDeadline: .milliseconds(1000), retryPeriod: .milliseconds(200), releaseOnCancel: release)
    }

    /// What each replica's work saw: when it started and when it was stopped.
    final class Log: Sendable {
        let entries = Mutex<[(String, String, ContinuousClock.Instant)]>([])
        func add(_ who: String, _ what: String) { entries.withLock { $0.append((who, what, .now)) } }
        func time(_ who: String, _ what: String) -> ContinuousClock.Instant? {
            entries.withLock { $0.first { $0.0 == who && $0.1 == what }?.2 }
        }
    }

    static func work(_ who: String, _ log: Log) -> @Sendable () async throws -> Void {
        {
            log.add(who, "start")
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
            log.add(who, "stop")
        }
    }

    func candidate(_ server: TestAPIServer, _ identity: String, release: Bool, log: Log) throws -> (
        LeaderElector, Task<Void, Error>, KubeClient
    ) {
        let client = try KubeClient(config: server.kubeConfig(), userAgent: "wgmesh-controller/\(identity)")
        let elector = LeaderElector(
            api: client, configuration: Self.configuration(identity, release: release), logger: testLogger)
        let work = Self.work(identity, log)
        let task = Task { try await elector.run(work) }
        return (elector, task, client)
    }

    /// Ends candidates: their work cancelled and waited for, then their clients shut down.
    func stop(_ candidates: (task: Task<Void, Error>, client: KubeClient)...) async throws {
        for c in candidates { c.task.cancel() }
        for c in candidates { _ = try? await c.task.value }
        for c in candidates { try await c.client.shutdown() }
    }

    func lease(_ client: KubeClient) async throws -> Lease {
        Lease(try await client.get(.leases, namespace: "wgmesh-system", name: "wgmesh-controller"))
    }

    func testALeaderThatStopsRenewingIsReplacedOnlyAfterItsLeaseExpires() async throws {
        try await withServer { server, client in
            let log = Log()
            let (a, aTask, aClient) = try candidate(server, "a", release: false, log: log)
            await eventually("a leads") { a.isLeader }
            let (b, bTask, bClient) = try candidate(server, "b", release: false, log: log)
            try await Task.sleep(for: .milliseconds(600))
            XCTAssertFalse(b.isLeader, "a renews, so b waits")
            XCTAssertEqual(b.observedHolder, "a")

            // a crashes: no release, no more renewals.
            aTask.cancel()
            _ = try? await aTask.value
            let crashed = ContinuousClock.now
            let lastRenew = try await lease(client).renewTime
            await eventually("b takes over") { b.isLeader }
            let tookOver = try XCTUnwrap(log.time("b", "start"))
            // Safety, not speed: a's last renewal was at most renewDeadline before the crash, and b may
            // not start until leaseDuration after it.
            XCTAssertGreaterThanOrEqual(
                tookOver - crashed, .milliseconds(3000) - .milliseconds(1000), "b waited for the lease to expire")
            let held = try await lease(client)
            XCTAssertEqual(held.holderIdentity, "b")
            XCTAssertEqual(held.leaseTransitions, 1)
            XCTAssertNotEqual(held.renewTime, lastRenew)
            XCTAssertNotNil(log.time("a", "stop"), "a's work was cancelled with it")
            bTask.cancel()
            _ = try? await bTask.value
            try await aClient.shutdown()
            try await bClient.shutdown()
        }
    }

    func testTwoProcessesWithOneIdentityNeverLeadAtOnce() async throws {
        try await withServer { server, client in
            let log = Log()
            let (a, aTask, aClient) = try candidate(server, "same", release: true, log: log)
            await eventually("the first leads") { a.isLeader }
            let (b, bTask, bClient) = try candidate(server, "same", release: true, log: log)
            var both = 0
            for _ in 0..<60 {
                if a.isLeader && b.isLeader { both += 1 }
                try await Task.sleep(for: .milliseconds(25))
            }
            XCTAssertEqual(both, 0, "the second process does not lead beside the first")
            XCTAssertTrue(a.isLeader)
            XCTAssertEqual(log.entries.withLock { $0.filter { $0.1 == "start" }.count }, 1, "one body of work ran")
            // The first stops cleanly: its release succeeds, and the second takes over.
            aTask.cancel()
            _ = try? await aTask.value
            await eventually("the second takes over") { b.isLeader }
            bTask.cancel()
            _ = try? await bTask.value
            let released = try await lease(client)
            XCTAssertEqual(released.holderIdentity, "", "released")
            try await aClient.shutdown()
            try await bClient.shutdown()
        }
    }

    func testACleanShutdownReleasesTheLeaseForAnImmediateHandover() async throws {
        try await withServer { server, client in
            let log = Log()
            let (a, aTask, aClient) = try candidate(server, "a", release: true, log: log)
            await eventually("a leads") { a.isLeader }
            let (b, bTask, bClient) = try candidate(server, "b", release: true, log: log)
            try await Task.sleep(for: .milliseconds(300))
            aTask.cancel()
            _ = try? await aTask.value
            let released = try await lease(client)
            // Either b already holds it, or nobody does: a's release cleared the holder.
            XCTAssertNotEqual(released.holderIdentity, "a", "a released the lease on shutdown")
            await eventually("b takes over") { b.isLeader }
            let taken = try await lease(client)
            XCTAssertEqual(taken.holderIdentity, "b")
            bTask.cancel()
            _ = try? await bTask.value
            let left = try await lease(client)
            XCTAssertEqual(left.holderIdentity, "", "b released it too")
            try await aClient.shutdown()
            try await bClient.shutdown()
        }
    }

    func testALeaderThatCannotRenewStopsItsWorkBeforeAnotherStarts() async throws {
        try await withServer { server, _ in
            let log = Log()
            let (a, aTask, aClient) = try candidate(server, "a", release: true, log: log)
            await eventually("a leads") { a.isLeader }
            let (b, bTask, bClient) = try candidate(server, "b", release: true, log: log)
            // a is cut off from the API server (its requests fail); b still reaches it.
            server.inject(.init(.status(503), path: "/leases", userAgent: "wgmesh-controller/a", count: 1_000_000))
            await eventually("b takes over") { b.isLeader }
            XCTAssertFalse(a.isLeader)
            let aStopped = try XCTUnwrap(log.time("a", "stop"), "a stopped working when it could not renew")
            let bStarted = try XCTUnwrap(log.time("b", "start"))
            XCTAssertLessThan(aStopped, bStarted, "never two leaders at once: renewDeadline < leaseDuration")
            server.clearFaults()
            try await stop((aTask, aClient), (bTask, bClient))
        }
    }

    /// `isConnected` is the controller's /readyz: true for leader and standby alike while the API server
    /// answers their lease requests, false from start until the first answer and once answers stop.
    func testLeaderAndStandbyAreConnectedWhileTheServerAnswersThem() async throws {
        try await withServer { server, client in
            XCTAssertFalse(
                LeaderElector(api: client, configuration: Self.configuration("idle", release: true), logger: testLogger)
                    .isConnected,
                "no lease request answered yet")
            let log = Log()
            let (a, aTask, aClient) = try candidate(server, "a", release: true, log: log)
            await eventually("a leads") { a.isLeader }
            XCTAssertTrue(a.isConnected)
            let (b, bTask, bClient) = try candidate(server, "b", release: true, log: log)
            await eventually("b, a standby, is connected") { b.isConnected }
            XCTAssertFalse(b.isLeader)
            // b is cut off from the API server: within one lease duration it is no longer ready; a still is.
            server.inject(.init(.status(503), path: "/leases", userAgent: "wgmesh-controller/b", count: 1_000_000))
            await eventually("b is no longer connected") { !b.isConnected }
            XCTAssertTrue(a.isConnected, "a renews: it is still connected")
            server.clearFaults()
            await eventually("b is connected again") { b.isConnected }
            try await stop((aTask, aClient), (bTask, bClient))
        }
    }

    func testWorkThatEndsReleasesAndReturnsItsError() async throws {
        struct Failure: Error {}
        try await withServer { server, client in
            let elector = LeaderElector(
                api: client, configuration: Self.configuration("solo", release: true), logger: testLogger)
            do {
                try await elector.run { throw Failure() }
                XCTFail("the work's error must surface")
            } catch is Failure {}
            let left = try await lease(client)
            XCTAssertEqual(left.holderIdentity, "")
            XCTAssertFalse(elector.isLeader)
        }
    }
}
