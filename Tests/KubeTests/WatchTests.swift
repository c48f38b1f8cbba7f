import Foundation
import Kube
import KubeTestSupport
import Synchronization
import XCTest

/// Watches and the informer against the test server: resume after drops, 410 relists, bookmarks,
/// metadata-only watches, coalescing, resync.
final class WatchTests: XCTestCase {
    static func annotate(_ key: String, _ value: String) -> Patch {
        .annotations([key: value])
    }

    func testAWatchResumesFromTheLastVersionAfterDroppedConnectionsWithoutMissingOrRepeating() async throws {
        try await withServer { server, client in
            try server.createNodes(["n0", "n1", "n2"])
            var rv = try await client.listAll(.nodes).resourceVersion!
            let total = 3000
            // Every watch connection is cut after 200 events, wherever the writer is.
            server.inject(.init(.dropWatch(afterEvents: 200), watch: true, count: 1000))
            let writer = Task {
                for i in 1...total {
                    try server.withStore(.nodes) {
                        _ = try $0.mergePatch(
                            "n\(i % 3)",
                            .object(["metadata": .object(["annotations": .object(["seq": .string("\(i)")])])]))
                    }
                    if i % 50 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                }
            }
            var seen: [Int] = []
            var broken = 0
            reading: while seen.count < total {
                do {
                    for try await event in try await client.watch(
                        .nodes, namespace: nil, options: WatchOptions(resourceVersion: rv, timeoutSeconds: 60))
                    {
                        switch event {
                        case .modified(let o):
                            seen.append(Int(o.metadata.annotations["seq"]!)!)
                            rv = o.metadata.resourceVersion!
                            if seen.count == total { break reading }
                        case .bookmark(let v, _):
                            rv = v
                        default:
                            XCTFail("unexpected \(event)")
                        }
                    }
                } catch let error as KubeError {
                    guard case .transport = error else { throw error }
                    broken += 1
                }
            }
            try await writer.value
            XCTAssertEqual(seen, Array(1...total), "every change once, in order")
            XCTAssertGreaterThanOrEqual(broken, total / 200 - 1, "the connection was really cut")
        }
    }

    func testTenThousandRapidAnnotationChangesAreSeenInOrderAndTheCacheEndsEqualToTheServer() async throws {
        try await withServer { server, client in
            let writers = 4
            let perWriter = 2500
            try server.createNodes((0..<writers).map { "node-\($0)" })
            let informer = Informer(
                api: client, resource: .nodes, configuration: .init(watchTimeoutSeconds: 5...10), logger: testLogger)
            let informerTask = Task { await informer.run() }
            await informer.waitUntilSynced()
            let start = try await client.listAll(.nodes).resourceVersion!

            // A raw watch records every event; connections are cut now and then.
            server.inject(.init(.dropWatch(afterEvents: 1500), watch: true, count: 1000))
            let expected = writers * perWriter
            let watcher = Task { () -> [(node: String, seq: Int, rv: Int)] in
                var rv = start
                var seen: [(String, Int, Int)] = []
                reading: while seen.count < expected {
                    do {
                        for try await event in try await client.watch(
                            .nodes, namespace: nil, options: WatchOptions(resourceVersion: rv))
                        {
                            if case .modified(let o) = event {
                                seen.append(
                                    (
                                        o.metadata.name, Int(o.metadata.annotations["wgmesh.dev/seq"]!)!,
                                        Int(o.metadata.resourceVersion!)!
                                    ))
                                rv = o.metadata.resourceVersion!
                                if seen.count == expected { break reading }
                            } else if case .bookmark(let v, _) = event {
                                rv = v
                            }
                        }
                    } catch let error as KubeError {
                        guard case .transport = error else { throw error }
                    }
                }
                return seen
            }
            // Four writers patch through the API as fast as it answers, each its own node.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        for i in 1...perWriter {
                            _ = try await client.patch(
                                .nodes, namespace: nil, name: "node-\(w)", WatchTests.annotate("wgmesh.dev/seq", "\(i)")
                            )
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seen = try await watcher.value
            XCTAssertEqual(seen.count, expected)
            XCTAssertEqual(seen.map(\.rv), seen.map(\.rv).sorted(), "resourceVersions strictly in commit order")
            XCTAssertEqual(Set(seen.map(\.rv)).count, expected, "no event twice")
            for w in 0..<writers {
                XCTAssertEqual(
                    seen.filter { $0.node == "node-\(w)" }.map(\.seq), Array(1...perWriter), "node-\(w) in order")
            }
            let final = try await client.listAll(.nodes)
            await eventually("the informer's cache equals the server", timeout: .seconds(60)) {
                informer.resourceVersion.flatMap(Int.init) ?? 0 >= Int(final.resourceVersion!)!
            }
            XCTAssertEqual(
                Set(informer.list().map(\.json)),
                Set(
                    final.items.map { item in
                        APIStore.mergePatch(item.json, .object(["kind": "Node", "apiVersion": "v1"]))
                    }))
            informerTask.cancel()
            await informerTask.value
        }
    }

    func testA410RelistsAndTheDifferenceArrivesAsEvents() async throws {
        // No bookmark may move the informer past the changes it is not told about.
        try await withServer(.init(bookmarkInterval: .seconds(600))) { server, client in
            try server.createNodes(["a", "b", "c"])
            let informer = Informer(api: client, resource: .nodes, logger: testLogger)
            let task = Task { await informer.run() }
            var events = informer.events.makeAsyncIterator()
            var added: Set<String> = []
            for _ in 0..<3 { if case .added(let o)? = await events.next() { added.insert(o.metadata.name) } }
            XCTAssertEqual(added, ["a", "b", "c"])
            await eventually("the first watch is open") { server.watchCount == 1 }

            // Changes the watch never delivers, then compaction past the informer's version: the
            // informer's next watch gets 410 and must relist to see them.
            try server.withStore(.nodes, notifyWatchers: false) { s in
                _ = try s.delete("a")
                _ = try s.create(node("z"))
                _ = try s.mergePatch("b", .object(["metadata": .object(["annotations": .object(["x": "1"])])]))
                s.compact(keepLast: 0)
            }
            server.dropWatches()
            var got: [String] = []
            for _ in 0..<3 {
                switch await events.next() {
                case .deleted(let o)?: got.append("deleted \(o.metadata.name)")
                case .added(let o)?: got.append("added \(o.metadata.name)")
                case .updated(let old, let new)?:
                    got.append("updated \(new.metadata.name)")
                    XCTAssertNil(old.metadata.annotations["x"])
                    XCTAssertEqual(new.metadata.annotations["x"], "1")
                case nil: XCTFail("events ended")
                }
            }
            XCTAssertEqual(Set(got), ["deleted a", "added z", "updated b"])
            XCTAssertEqual(Set(informer.list().map(\.metadata.name)), ["b", "c", "z"])
            XCTAssertEqual(informer.statistics.lists, 2)
            XCTAssertEqual(informer.statistics.expired, 1)
            task.cancel()
            await task.value
            let end = await events.next()
            XCTAssertNil(end, "events end when the informer stops")
        }
    }

    func testAPeriodicResyncRepairsAGapEvenWithout410() async throws {
        try await withServer { server, client in
            try server.createNodes(["a"])
            let informer = Informer(
                api: client, resource: .nodes,
                configuration: .init(watchTimeoutSeconds: 1...1, resyncInterval: .milliseconds(500)), logger: testLogger
            )
            let task = Task { await informer.run() }
            await informer.waitUntilSynced()
            // A change lost in transit (no watcher hears of it) and still inside the watch window.
            try server.withStore(.nodes, notifyWatchers: false) { _ = try $0.create(node("lost")) }
            await eventually("the resync found the lost node") { informer.get("lost") != nil }
            task.cancel()
            await task.value
        }
    }

    func testBookmarksMetadataOnlyWatchesAndStatistics() async throws {
        try await withServer(.init(bookmarkInterval: .milliseconds(100))) { server, client in
            try server.createNodes(["n1"])
            try server.withStore(.nodes) {
                _ = try $0.patch("n1", .merge(.object(["spec": .object(["podCIDR": "10.244.1.0/24"])])))
            }
            let list = try await client.listAll(.nodes, metadataOnly: true)
            XCTAssertEqual(list.kind, "PartialObjectMetadataList")
            XCTAssertEqual(list.items.first?.kind, "PartialObjectMetadata")
            XCTAssertNil(list.items.first?.json["spec"])

            let informer = Informer(
                api: client, resource: .nodes, configuration: .init(metadataOnly: true), logger: testLogger)
            let task = Task { await informer.run() }
            await informer.waitUntilSynced()
            _ = try await client.patch(
                .nodes, namespace: nil, name: "n1", WatchTests.annotate("wgmesh.dev/public-key", "AAAA"))
            await eventually("the metadata-only watch delivered the change") {
                informer.get("n1")?.metadata.annotations["wgmesh.dev/public-key"] == "AAAA"
            }
            let cached = try XCTUnwrap(informer.get("n1"))
            XCTAssertEqual(cached.kind, "PartialObjectMetadata")
            XCTAssertNil(cached.json["spec"], "metadata only")
            task.cancel()
            await task.value

            // An idle watch gets bookmarks carrying the current version.
            try server.withStore(.leases, namespace: "x") {
                _ = try $0.create(.object(["metadata": .object(["name": "unrelated"])]))
            }
            let rv = try await client.listAll(.nodes).resourceVersion!
            var bookmark: String?
            for try await event in try await client.watch(
                .nodes, namespace: nil, options: WatchOptions(resourceVersion: rv, timeoutSeconds: 2))
            {
                if case .bookmark(let v, _) = event {
                    bookmark = v
                    break
                }
            }
            XCTAssertEqual(bookmark, rv)
        }
    }

    func testBurstsForOneObjectCoalesceIntoOneEvent() async throws {
        try await withServer { server, client in
            try server.createNodes(["busy"])
            let informer = Informer(api: client, resource: .nodes, logger: testLogger)
            let task = Task { await informer.run() }
            var events = informer.events.makeAsyncIterator()
            guard case .added? = await events.next() else { return XCTFail("expected ADDED first") }
            for i in 1...50 {
                _ = try await client.patch(.nodes, namespace: nil, name: "busy", WatchTests.annotate("n", "\(i)"))
            }
            _ = try await client.patch(.nodes, namespace: nil, name: "busy", WatchTests.annotate("done", "yes"))
            await eventually("the cache has the last change") {
                informer.get("busy")?.metadata.annotations["done"] == "yes"
            }
            guard case .updated(let old, let new)? = await events.next() else { return XCTFail("expected one update") }
            XCTAssertNil(old.metadata.annotations["n"], "old is what the consumer saw last")
            XCTAssertEqual(new.metadata.annotations["n"], "50")
            task.cancel()
            await task.value
            let end = await events.next()
            XCTAssertNil(end, "nothing else was pending")
        }
    }

    func testCoalescingRules() throws {
        let a = try KubeObject(json: node("x"))
        let b = try KubeObject(json: node("x", annotations: ["v": "2"]))
        let c = try KubeObject(json: node("x", annotations: ["v": "3"]))
        XCTAssertEqual(InformerEvent.added(a).coalesced(with: .updated(old: a, new: b)), .added(b))
        XCTAssertNil(InformerEvent.added(a).coalesced(with: .deleted(b)), "never seen, gone: nothing to say")
        XCTAssertEqual(
            InformerEvent.updated(old: a, new: b).coalesced(with: .updated(old: b, new: c)), .updated(old: a, new: c))
        XCTAssertEqual(InformerEvent.updated(old: a, new: b).coalesced(with: .deleted(b)), .deleted(a))
        XCTAssertEqual(InformerEvent.deleted(a).coalesced(with: .added(c)), .updated(old: a, new: c))
    }

    func testTransientFailuresBackOffAndRecover() async throws {
        try await withServer { server, client in
            try server.createNodes(["n"])
            server.inject(.init(.status(500), method: "GET", count: 3))
            server.inject(.init(.closeConnection, method: "GET", count: 1))
            let informer = Informer(
                api: client, resource: .nodes,
                configuration: .init(backoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(50))),
                logger: testLogger)
            let task = Task { await informer.run() }
            await informer.waitUntilSynced()
            XCTAssertNotNil(informer.get("n"))
            XCTAssertGreaterThanOrEqual(informer.statistics.watchFailures, 4)
            task.cancel()
            await task.value
        }
    }

    func testTheInformerCachesObjectsAsItsTransformLeavesThem() async throws {
        try await withServer { server, client in
            try server.createNodes(["a"])
            let slim: @Sendable (KubeObject) -> KubeObject = { o in
                try! KubeObject(
                    json: .object([
                        "metadata": .object([
                            "name": o.json["metadata"]!["name"]!,
                            "resourceVersion": o.json["metadata"]!["resourceVersion"]!,
                        ])
                    ]))
            }
            let informer = Informer(
                api: client, resource: .nodes, configuration: .init(transform: slim), logger: testLogger)
            let task = Task { await informer.run() }
            await informer.waitUntilSynced()
            XCTAssertEqual(
                informer.get("a")?.json["metadata"]?.object?.keys.sorted(), ["name", "resourceVersion"],
                "listed, then transformed")
            _ = try await client.patch(
                .nodes, namespace: nil, name: "a",
                .annotations(["x": "1"]))
            try server.createNodes(["b"])
            let patched = try await client.get(.nodes, namespace: nil, name: "a").metadata.resourceVersion
            await eventually("both watched") {
                informer.get("b") != nil && informer.get("a")?.metadata.resourceVersion == patched
            }
            for name in ["a", "b"] {
                XCTAssertEqual(
                    informer.get(name)?.json["metadata"]?.object?.keys.sorted(), ["name", "resourceVersion"],
                    "watched, then transformed")
            }
            task.cancel()
            await task.value
        }
    }
}
