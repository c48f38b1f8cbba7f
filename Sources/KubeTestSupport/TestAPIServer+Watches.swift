import Kube
import NIOCore
import NIOHTTP1
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension TestAPIServer {
    struct Watcher {
        var key: StoreKey
        var channel: any Channel
        var metadataOnly: Bool
        var selector: LabelSelector?
        var bookmarks: Bool
        var dropAfter: Int?
        var timers: [Scheduled<Void>] = []
        var bookmarkTask: RepeatedTask?
    }

    /// Cuts every open watch connection mid-stream, as a restarting apiserver or a load balancer does.
    public func dropWatches() {
        state.withLock { s in
            for id in Array(s.watchers.keys) { endWatch(&s, id, cleanly: false) }
        }
    }

    /// Open watches.
    public var watchCount: Int { state.withLock { $0.watchers.count } }

    func startWatch(
        _ request: Request, key: StoreKey, channel: any Channel, metadataOnly: Bool, selector: LabelSelector?,
        fault: Fault.Effect?
    ) {
        let timeout = request.query["timeoutSeconds"].flatMap { Int64($0) } ?? 1800
        let bookmarks = request.query["allowWatchBookmarks"] == "true"
        let rv = request.query["resourceVersion"]
        let initialEvents = request.query["sendInitialEvents"] == "true"
        state.withLock { s in
            let id = s.nextWatcher
            s.nextWatcher += 1
            s.ensureStore(key, windowSize: options.windowSize)
            let store = s.stores[key]!
            var watcher = Watcher(
                key: key, channel: channel, metadataOnly: metadataOnly, selector: selector, bookmarks: bookmarks)
            if case .dropWatch(let n) = fault { watcher.dropAfter = n }
            s.watchers[id] = watcher
            if watcher.dropAfter == 0 { return endWatch(&s, id, cleanly: false) }
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Cache-Control", value: "no-cache, private")
            head.headers.add(name: "Transfer-Encoding", value: "chunked")
            let channel = watcher.channel
            let start = HTTPServerResponsePart.head(head)
            channel.eventLoop.execute { channel.writeAndFlush(start, promise: nil) }

            if case .expireWatch = fault {
                send(
                    &s, id,
                    TestAPIServer.errorEvent(
                        APIStore.status(
                            410, "Expired", "too old resource version: \(rv ?? "") (\(store.resourceVersion))")))
                return endWatch(&s, id, cleanly: true)
            }
            if rv == nil || rv == "0" || rv == "" || initialEvents {
                // Synthetic ADDED events for the current state, then changes from now on.
                let list = (try? store.list(labelSelector: selector)) ?? .null
                for item in list["items"]?.array ?? [] {
                    var object = item.object ?? [:]
                    object["kind"] = .string(key.resource.kind)
                    object["apiVersion"] = .string(key.resource.apiVersion)
                    send(&s, id, event("ADDED", .object(object), metadataOnly: metadataOnly))
                    if s.watchers[id] == nil { return }
                }
                if initialEvents && bookmarks {
                    send(
                        &s, id,
                        bookmark(
                            key.resource, store.resourceVersion, metadataOnly: metadataOnly, initialEventsEnd: true))
                }
            } else {
                do throws(Status) {
                    for change in try store.changes(after: Int64(rv!) ?? 0) {
                        guard let (type, object) = TestAPIServer.selected(change, selector) else { continue }
                        send(&s, id, event(type, object, metadataOnly: metadataOnly))
                        if s.watchers[id] == nil { return }
                    }
                } catch {
                    send(&s, id, TestAPIServer.errorEvent(error))
                    return endWatch(&s, id, cleanly: true)
                }
            }
            let el = channel.eventLoop
            s.watchers[id]?.timers.append(
                el.scheduleTask(in: .seconds(timeout)) { [self] in
                    state.withLock { endWatch(&$0, id, cleanly: true) }
                })
            if bookmarks {
                let interval = TimeAmount(options.bookmarkInterval)
                s.watchers[id]?.bookmarkTask = el.scheduleRepeatedTask(initialDelay: interval, delay: interval) {
                    [self] _ in
                    state.withLock { s in
                        guard let w = s.watchers[id], let store = s.stores[w.key] else { return }
                        send(
                            &s, id,
                            bookmark(
                                w.key.resource, store.resourceVersion, metadataOnly: w.metadataOnly,
                                initialEventsEnd: false))
                    }
                }
            }
        }
    }

    /// Called with the lock held, in resourceVersion order; every write goes through the channel's
    /// event loop queue, which keeps that order.
    func notify(_ s: inout State, _ key: StoreKey, _ changes: [APIStore.Change]) {
        for (id, w) in s.watchers where w.key == key {
            for change in changes {
                guard let (type, object) = TestAPIServer.selected(change, w.selector) else { continue }
                send(&s, id, event(type, object, metadataOnly: w.metadataOnly))
                if s.watchers[id] == nil { break }
            }
        }
    }

    /// The event a watch with `selector` gets for a change, as kube-apiserver sends it: an object that starts
    /// matching arrives as ADDED, one that stops matching as DELETED; nil when it matches neither before nor after.
    static func selected(_ change: APIStore.Change, _ selector: LabelSelector?) -> (String, JSON)? {
        guard let selector else { return (change.type.rawValue, change.object) }
        let now = selector.matches(change.object)
        let before = change.previous.map(selector.matches) ?? false
        switch change.type {
        case .added: return now ? ("ADDED", change.object) : nil
        case .deleted: return before ? ("DELETED", change.object) : nil
        case .modified:
            return now ? (before ? "MODIFIED" : "ADDED", change.object) : before ? ("DELETED", change.object) : nil
        }
    }

    func send(_ s: inout State, _ id: Int, _ event: JSON) {
        guard let w = s.watchers[id] else { return }
        var buffer = ByteBuffer(bytes: event.bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let part = HTTPServerResponsePart.body(.byteBuffer(buffer))
        let channel = w.channel
        channel.eventLoop.execute { channel.writeAndFlush(part, promise: nil) }
        if let n = w.dropAfter {
            s.watchers[id]?.dropAfter = n - 1
            if n <= 1 { endWatch(&s, id, cleanly: false) }
        }
    }

    /// Ends a watch: cleanly (the chunked body ends, the connection stays) or by cutting the connection.
    func endWatch(_ s: inout State, _ id: Int, cleanly: Bool) {
        guard let w = s.watchers.removeValue(forKey: id) else { return }
        for t in w.timers { t.cancel() }
        w.bookmarkTask?.cancel()
        let channel = w.channel
        channel.eventLoop.execute {
            if cleanly {
                channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
            } else {
                channel.close(promise: nil)
            }
        }
    }

    func watcherGone(_ channel: any Channel) {
        state.withLock { s in
            for (id, w) in s.watchers where w.channel === channel {
                for t in w.timers { t.cancel() }
                w.bookmarkTask?.cancel()
                s.watchers[id] = nil
            }
        }
    }

    func event(_ type: String, _ object: JSON, metadataOnly: Bool) -> JSON {
        .object(["type": .string(type), "object": metadataOnly ? TestAPIServer.metadataObject(object) : object])
    }

    static func errorEvent(_ status: Status) -> JSON { .object(["type": "ERROR", "object": status.json]) }

    /// A BOOKMARK carries only the version, in an otherwise empty object of the watched kind; a Node's
    /// empty object has the zero values of its nested structs, as captured from kube-apiserver.
    func bookmark(_ resource: APIResource, _ rv: Int64, metadataOnly: Bool, initialEventsEnd: Bool) -> JSON {
        var meta: [String: JSON] = ["resourceVersion": .string(String(rv))]
        if initialEventsEnd { meta["annotations"] = .object(["k8s.io/initial-events-end": "true"]) }
        var object: [String: JSON] = [
            "kind": .string(resource.kind), "apiVersion": .string(resource.apiVersion), "metadata": .object(meta),
        ]
        if metadataOnly {
            object["kind"] = "PartialObjectMetadata"
            object["apiVersion"] = "meta.k8s.io/v1"
        } else if resource.kind == "Node" {
            object["spec"] = .object([:])
            let info = [
                "machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion",
                "kubeletVersion",
                "kubeProxyVersion", "operatingSystem", "architecture",
            ]
            object["status"] = .object([
                "daemonEndpoints": .object(["kubeletEndpoint": .object(["Port": .integer(0)])]),
                "nodeInfo": .object(Dictionary(uniqueKeysWithValues: info.map { ($0, JSON.string("")) })),
            ])
        } else if resource.kind == "Lease" {
            object["spec"] = .object([:])
        }
        return .object(["type": "BOOKMARK", "object": .object(object)])
    }
}
