import Foundation
import Logging
import Synchronization
import XCTest

@testable import Kube

/// The informer's consumer cancelled at the moment a change wakes it: a controller stopping while Nodes change.
final class InformerCancellationTests: XCTestCase {
    /// Two threads start together: one applies a change, which wakes the consumer parked in `nextEvent`; the
    /// other cancels the consumer, which runs `nextEvent`'s cancellation handler while the runtime holds the
    /// consumer's status lock. Resuming the consumer under the informer's lock took the two locks in the
    /// opposite order, and now and then both threads waited forever (the hang of `MeshController.run`'s
    /// cancellation). Each round must end within seconds, the consumer with the event or nil.
    func testCancellingTheConsumerWhileAChangeWakesItNeverDeadlocks() throws {
        let api = try KubeClient(
            config: KubeConfig(
                server: "http://127.0.0.1:1", certificateAuthorityPEM: nil, credentials: .none, namespace: "default",
                source: "test"))
        let logger = Logger(label: "informer") { _ in SwiftLogNoOpLogHandler() }
        let rounds = 3000
        for round in 0..<rounds {
            let informer = Informer(api: api, resource: .nodes, logger: logger)
            let node = try KubeObject(
                json: .object(["metadata": .object(["name": "n1", "resourceVersion": .string(String(round + 1))])]))
            let consumed = DispatchSemaphore(value: 0)
            let consumer = Task.detached {
                _ = await informer.nextEvent()
                consumed.signal()
            }
            while !informer.state.withLock({ $0.consumer != nil }) { usleep(10) }
            let go = StartLine()
            let applied = DispatchSemaphore(value: 0)
            let cancelled = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                go.wait()
                informer.withState { $0.apply(.upsert(node)) }
                applied.signal()
            }
            Thread.detachNewThread {
                go.wait()
                consumer.cancel()
                cancelled.signal()
            }
            go.start()
            for (what, done) in [("the change", applied), ("the cancellation", cancelled), ("the consumer", consumed)]
            where done.wait(timeout: .now() + 10) == .timedOut {
                // The deadlocked threads stay blocked: give up on the rest rather than pile more onto them.
                return XCTFail("round \(round): \(what) never finished: the informer's lock and the task's deadlock")
            }
        }
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            try? await api.shutdown()
            done.signal()
        }
        done.wait()
    }
}

/// A start line for two threads, so that their next steps race.
final class StartLine: Sendable {
    let started = Atomic(false)
    func start() { started.store(true, ordering: .releasing) }
    func wait() { while !started.load(ordering: .acquiring) {} }
}
