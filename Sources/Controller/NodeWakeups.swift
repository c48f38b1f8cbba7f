import Synchronization
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One pending wake-up per node, delivered into the work queue.
final class NodeWakeups: Sendable {
    let queue: AsyncStream<MeshController.Work>.Continuation
    let tasks = Mutex<[String: Task<Void, Never>]>([:])

    init(queue: AsyncStream<MeshController.Work>.Continuation) { self.queue = queue }

    func schedule(_ name: String, at date: Date, now: Date) {
        let delay = max(0, date.timeIntervalSince(now))
        let queue = self.queue
        let task = Task {
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            if !Task.isCancelled { queue.yield(.node(name)) }
        }
        tasks.withLock { $0.updateValue(task, forKey: name)?.cancel() }
    }

    func cancel(_ name: String) { tasks.withLock { $0.removeValue(forKey: name)?.cancel() } }

    func cancelAll() {
        tasks.withLock { t in
            for task in t.values { task.cancel() }
            t = [:]
        }
    }
}
