import Kube
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A Kubernetes-API-compatible server on loopback, over HTTP or HTTPS, for Nodes, Leases and Events.
/// Semantics follow kube-apiserver (see `APIStore`); shapes follow the responses captured from a real
/// one. Tests reach into its state directly and inject faults: failing requests, 409 storms, slow
/// answers, dropped and expired watches.
public final class TestAPIServer: Sendable {
    public struct Options: Sendable {
        /// Serve HTTPS with `TestCertificates`.
        public var tls: Bool
        /// Present the certificate for kubernetes.default.svc only (no IP address in it).
        public var nameOnlyCertificate: Bool
        /// Require this bearer token (or, with `tls`, a client certificate signed by the test CA).
        public var token: String?
        /// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK (kube-apiserver: about a minute).
        public var bookmarkInterval: Duration
        /// Changes kept for watches and continue tokens (the watch cache).
        public var windowSize: Int
        /// The address to listen on (loopback unless a test's own network namespaces must reach it).
        public var host: String
        /// 0: a free port.
        public var port: Int
        /// Bearer tokens that authenticate as these users (accepted besides `token`). A request with none of
        /// them is `UserInfo.testClient` when `token` or a client certificate let it in, else `anonymous`.
        public var identities: [String: UserInfo]
        /// Called, in the order of the writes, with one admission request for every accepted POST, PUT,
        /// PATCH and DELETE of a Node or its status: userInfo, operation, subResource, name, oldObject and
        /// object (the stored result; null for a DELETE), as a ValidatingAdmissionPolicy would see it.
        public var recordNodeWrite: (@Sendable (JSON) -> Void)?

        public init(
            tls: Bool = false, nameOnlyCertificate: Bool = false, token: String? = nil,
            bookmarkInterval: Duration = .seconds(1),
            windowSize: Int = 20_000, host: String = "127.0.0.1", port: Int = 0, identities: [String: UserInfo] = [:],
            recordNodeWrite: (@Sendable (JSON) -> Void)? = nil
        ) {
            self.identities = identities
            self.recordNodeWrite = recordNodeWrite
            self.host = host
            self.port = port
            self.tls = tls
            self.nameOnlyCertificate = nameOnlyCertificate
            self.token = token
            self.bookmarkInterval = bookmarkInterval
            self.windowSize = windowSize
        }
    }

    /// A failure injected into matching requests.
    public struct Fault: Sendable {
        public enum Effect: Sendable {
            /// Answer with this HTTP status and a Status body (500, 503, 429, 409 Conflict, 410 Expired …).
            case status(Int)
            /// Answer normally, this much later.
            case delay(Duration)
            /// Close the connection without answering.
            case closeConnection
            /// A watch: send this many events, then cut the connection mid-stream.
            case dropWatch(afterEvents: Int)
            /// A watch: answer with one ERROR event holding 410 Expired, as for a compacted version.
            case expireWatch
        }

        public var effect: Effect
        /// GET, PATCH, …; nil matches any.
        public var method: String?
        /// A substring of the path and query (`/nodes/n1`, `continue=`); nil matches any.
        public var path: String?
        /// Only watches (`watch=1`), only other requests, or both (nil).
        public var watch: Bool?
        /// A substring of the User-Agent; nil matches any.
        public var userAgent: String?
        /// How many requests it applies to.
        public var count: Int

        public init(
            _ effect: Effect, method: String? = nil, path: String? = nil, watch: Bool? = nil, userAgent: String? = nil,
            count: Int = 1
        ) {
            self.effect = effect
            self.method = method
            self.path = path
            self.watch = watch
            self.userAgent = userAgent
            self.count = count
        }
    }

    struct StoreKey: Hashable {
        var resource: APIResource
        var namespace: String?
    }

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

    struct State {
        var stores: [StoreKey: APIStore] = [:]
        var watchers: [Int: Watcher] = [:]
        var nextWatcher = 0
        var faults: [Fault] = []
        var token: String?
        var requests: [String: Int] = [:]

        /// The store of `key`, made empty on first use.
        mutating func ensureStore(_ key: StoreKey, windowSize: Int) {
            if stores[key] == nil { stores[key] = APIStore(resource: key.resource, windowSize: windowSize) }
        }
    }

    /// The resources served; Events in both the events.k8s.io and the core group.
    public static let resources: [APIResource] = [
        .nodes, .leases, .events,
        APIResource(group: "", version: "v1", plural: "events", kind: "Event", namespaced: true),
    ]

    public let options: Options
    public let port: Int
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let state: Mutex<State>

    /// Starts listening on `options.host` (127.0.0.1 by default), on a free port unless `options.port` says.
    public static func start(_ options: Options = Options()) async throws -> TestAPIServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let sslContext: NIOSSLContext? =
            try options.tls
            ? {
                let (certificate, key) =
                    options.nameOnlyCertificate
                    ? (TestCertificates.namedServerCertificate, TestCertificates.namedServerKey)
                    : (TestCertificates.serverCertificate, TestCertificates.serverKey)
                var tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map {
                        .certificate($0)
                    },
                    privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)))
                // Ask for a client certificate, but let token clients in too.
                tls.certificateVerification = .optionalVerification
                tls.trustRoots = .certificates(
                    try NIOSSLCertificate.fromPEMBytes(Array(TestCertificates.caCertificate.utf8)))
                return try NIOSSLContext(configuration: tls)
            }() : nil
        let box = Mutex<TestAPIServer?>(nil)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = HTTPHandler(server: box.withLock { $0 }!)
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        handler.tls = true
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: options.host, port: options.port).get()
        let server = TestAPIServer(options: options, group: group, channel: channel)
        box.withLock { $0 = server }
        return server
    }

    init(options: Options, group: MultiThreadedEventLoopGroup, channel: any Channel) {
        self.options = options
        self.group = group
        self.channel = channel
        port = channel.localAddress?.port ?? 0
        state = Mutex(State(token: options.token))
    }

    public func stop() async throws {
        dropWatches()
        try await channel.close()
        try await group.shutdownGracefully()
    }

    public var url: String {
        let host = options.host.contains(":") ? "[\(options.host)]" : options.host
        return "\(options.tls ? "https" : "http")://\(host):\(port)"
    }

    /// A configuration that reaches this server: its CA, and its token or the test client certificate.
    public func kubeConfig(clientCertificate: Bool = false) -> KubeConfig {
        var credentials = KubeConfig.Credentials.none
        if clientCertificate {
            credentials = .clientCertificate(
                certificatePEM: Array(TestCertificates.clientCertificate.utf8),
                keyPEM: Array(TestCertificates.clientKey.utf8))
        } else if let token = state.withLock({ $0.token }) {
            credentials = .token(token)
        }
        return KubeConfig(
            server: url, certificateAuthorityPEM: options.tls ? Array(TestCertificates.caCertificate.utf8) : nil,
            credentials: credentials, namespace: "default", source: "test server \(url)")
    }

    // MARK: test control

    /// Changes the accepted token, as a rotation does.
    public func setToken(_ token: String?) { state.withLock { $0.token = token } }

    public func inject(_ fault: Fault) { state.withLock { $0.faults.append(fault) } }

    public func clearFaults() { state.withLock { $0.faults = [] } }

    /// Requests served, by `VERB resource` (`PATCH nodes`, `WATCH nodes`, `LIST leases`).
    public var requestCounts: [String: Int] { state.withLock { $0.requests } }

    public func resetRequestCounts() { state.withLock { $0.requests = [:] } }

    /// Reads or changes a resource's objects directly, as another API client would; watchers see
    /// the changes unless `notifyWatchers` is false, which simulates events lost in transit.
    public func withStore<T>(
        _ resource: APIResource, namespace: String? = nil, notifyWatchers: Bool = true,
        _ body: (inout APIStore) throws -> T
    ) rethrows -> T {
        try state.withLock { s in
            let key = StoreKey(resource: resource, namespace: resource.namespaced ? namespace : nil)
            s.ensureStore(key, windowSize: options.windowSize)
            let before = s.stores[key]!.resourceVersion
            defer {
                if notifyWatchers, let store = s.stores[key], store.resourceVersion != before {
                    notify(&s, key, (try? store.changes(after: before)) ?? [])
                }
            }
            // Mutated in place: a copy of the store would copy its whole watch window on every write.
            return try body(&s.stores[key]!)
        }
    }

    /// Cuts every open watch connection mid-stream, as a restarting apiserver or a load balancer does.
    public func dropWatches() {
        state.withLock { s in
            for id in Array(s.watchers.keys) { endWatch(&s, id, cleanly: false) }
        }
    }

    /// Open watches.
    public var watchCount: Int { state.withLock { $0.watchers.count } }

    // MARK: requests

    struct Request {
        var method: String
        /// The request target as sent: path and query.
        var uri: String
        var path: String
        var query: [String: String]
        var headers: HTTPHeaders
        var body: ByteBuffer
        var clientCertificate: Bool
    }

    enum Response {
        case json(HTTPResponseStatus, JSON, delay: Duration?)
        case close
        /// The channel now belongs to a watch.
        case watching
    }

    func handle(_ request: Request, channel: any Channel) -> Response {
        let isWatch = request.query["watch"] == "1" || request.query["watch"] == "true"
        let route = Route(request.path)
        if let route {
            let verb = isWatch ? "WATCH" : (request.method == "GET" && route.name == nil ? "LIST" : request.method)
            state.withLock { $0.requests["\(verb) \(route.resource.plural)", default: 0] += 1 }
        }
        var delay: Duration?
        let fault: Fault.Effect? = state.withLock { s in
            guard
                let i = s.faults.firstIndex(where: { f in
                    (f.method == nil || f.method == request.method) && (f.path.map { request.uri.contains($0) } ?? true)
                        && (f.watch.map { $0 == isWatch } ?? true)
                        && (f.userAgent.map { request.headers.first(name: "user-agent")?.contains($0) ?? false } ?? true)
                })
            else { return nil }
            s.faults[i].count -= 1
            let effect = s.faults[i].effect
            if s.faults[i].count <= 0 { s.faults.remove(at: i) }
            return effect
        }
        switch fault {
        case .status(let code):
            return .json(HTTPResponseStatus(statusCode: code), TestAPIServer.faultStatus(code).json, delay: nil)
        case .closeConnection:
            return .close
        case .delay(let d):
            delay = d
        case .dropWatch, .expireWatch, nil:
            break
        }
        guard authorized(request) else {
            return .json(
                .unauthorized, Status(code: 401, reason: "Unauthorized", message: "Unauthorized").json, delay: delay)
        }
        guard let route else {
            return .json(
                .notFound, APIStore.status(404, "NotFound", "the server could not find the requested resource").json,
                delay: delay)
        }
        let key = StoreKey(resource: route.resource, namespace: route.namespace)
        let accept = request.headers.first(name: "accept") ?? ""
        let metadataOnly = accept.contains("as=PartialObjectMetadata")
        if isWatch, route.name == nil {
            var selector: LabelSelector?
            do throws(Status) {
                if let text = request.query["labelSelector"] { selector = try LabelSelector(text) }
            } catch {
                return .json(.badRequest, error.json, delay: delay)
            }
            startWatch(
                request, key: key, channel: channel, metadataOnly: metadataOnly, selector: selector, fault: fault)
            return .watching
        }
        do {
            let result = try serve(request, route: route, key: key, user: user(request))
            var body = result.body
            if metadataOnly {
                body = body["items"] != nil ? TestAPIServer.metadataList(body) : TestAPIServer.metadataObject(body)
            }
            return .json(result.status, body, delay: delay)
        } catch {
            return .json(HTTPResponseStatus(statusCode: error.code), error.json, delay: delay)
        }
    }

    func serve(_ request: Request, route: Route, key: StoreKey, user: UserInfo) throws(Status) -> (
        status: HTTPResponseStatus, body: JSON
    ) {
        func body() throws(Status) -> JSON {
            do {
                return try JSON.parse(request.body.readableBytesView)
            } catch {
                throw APIStore.status(400, "BadRequest", "the request body is not JSON: \(error)")
            }
        }
        let record: (@Sendable (JSON) -> Void)? =
            key.resource == .nodes && request.method != "GET" ? options.recordNodeWrite : nil
        let store = { (body: (inout APIStore) throws(Status) -> JSON) throws(Status) -> JSON in
            let result: Result<JSON, Status> = self.withStore(key.resource, namespace: key.namespace) { s in
                do throws(Status) {
                    let old = route.name.flatMap { try? s.get($0) }
                    let result = try body(&s)
                    // Under the store's lock: the records come in the order of the writes.
                    record?(
                        TestAPIServer.admissionRequest(
                            request.method, route: route, user: user, old: old, result: result))
                    return .success(result)
                } catch { return .failure(error) }
            }
            return try result.get()
        }
        // As kube-apiserver: the fieldManager parameter, else the User-Agent up to its first "/".
        let manager =
            request.query["fieldManager"]
            ?? request.headers.first(name: "user-agent").map {
                String($0.split(separator: "/", maxSplits: 1).first ?? "")
            }
        switch (request.method, route.name) {
        case ("GET", nil):
            if request.query["resourceVersionMatch"] == "Exact",
                let rv = request.query["resourceVersion"].flatMap({ Int64($0) })
            {
                let tooOld = withStore(key.resource, namespace: key.namespace) { rv < $0.windowStart }
                if tooOld {
                    throw APIStore.status(410, "Expired", "The resourceVersion for the provided list is too old.")
                }
            }
            let limit = request.query["limit"].flatMap { Int($0) }
            var selector: LabelSelector?
            if let text = request.query["labelSelector"] { selector = try LabelSelector(text) }
            return (
                .ok,
                try store { s throws(Status) in
                    try s.list(limit: limit, continueToken: request.query["continue"], labelSelector: selector)
                }
            )
        case ("GET", let name?):
            return (.ok, try store { s throws(Status) in try s.get(name) })
        case ("POST", nil):
            var object = try body()
            if let ns = key.namespace {
                object = APIStore.mergePatch(object, .object(["metadata": .object(["namespace": .string(ns)])]))
            }
            return (.created, try store { s throws(Status) in try s.create(object, manager: manager) })
        case ("PUT", let name?):
            let object = try body()
            guard ObjectMeta(object["metadata"]).name == name else {
                throw APIStore.status(
                    400, "BadRequest",
                    "the name of the object (\(ObjectMeta(object["metadata"]).name)) does not match the name on the URL (\(name))"
                )
            }
            return (
                .ok,
                try store { s throws(Status) in try s.update(object, subresource: route.subresource, manager: manager) }
            )
        case ("PATCH", let name?):
            let content = request.headers.first(name: "content-type") ?? ""
            let b = try body()
            let patch: Patch
            switch content.split(separator: ";").first.map(String.init) ?? "" {
            case "application/merge-patch+json": patch = .merge(b)
            case "application/strategic-merge-patch+json": patch = .strategicMerge(b)
            case "application/json-patch+json": patch = .json(b.array ?? [])
            default:
                throw APIStore.status(
                    415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                )
            }
            return (
                .ok,
                try store { s throws(Status) in
                    try s.patch(name, patch, subresource: route.subresource, manager: manager)
                }
            )
        case ("DELETE", let name?):
            return (.ok, try store { s throws(Status) in try s.delete(name) })
        default:
            throw APIStore.status(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
    }

    func authorized(_ request: Request) -> Bool {
        guard let token = state.withLock({ $0.token }) else { return true }
        if request.clientCertificate || bearer(request).map({ options.identities[$0] != nil }) == true { return true }
        return request.headers.first(name: "authorization") == "Bearer \(token)"
    }

    func bearer(_ request: Request) -> String? {
        guard let value = request.headers.first(name: "authorization"), value.hasPrefix("Bearer ") else { return nil }
        return String(value.dropFirst("Bearer ".count))
    }

    /// Who sent an authorized request.
    func user(_ request: Request) -> UserInfo {
        if let token = bearer(request), let user = options.identities[token] { return user }
        let token = state.withLock { $0.token }
        if request.clientCertificate || (token != nil && bearer(request) == token) { return .testClient }
        return .anonymous
    }

    /// A write as admission sees it (what `Options.recordNodeWrite` gets).
    static func admissionRequest(_ method: String, route: Route, user: UserInfo, old: JSON?, result: JSON) -> JSON {
        let operation = ["POST": "CREATE", "DELETE": "DELETE"][method] ?? "UPDATE"
        return .object([
            "userInfo": user.json, "operation": .string(operation), "subResource": .string(route.subresource ?? ""),
            "name": .string(route.name ?? ObjectMeta(result["metadata"]).name),
            "oldObject": old ?? .null, "object": operation == "DELETE" ? .null : result,
        ])
    }

    static func faultStatus(_ code: Int) -> Status {
        switch code {
        case 409:
            return APIStore.status(
                409, "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again"
            )
        case 410: return APIStore.status(410, "Expired", "The resourceVersion for the provided list is too old.")
        case 429:
            return APIStore.status(
                429, "TooManyRequests", "the server has received too many requests and has asked us to try again later")
        // A ValidatingAdmissionPolicy's denial (its default reason, Invalid).
        case 422:
            return APIStore.status(
                422, "Invalid",
                """
                ValidatingAdmissionPolicy 'wgmesh-agent-own-node' with binding 'wgmesh-agent-own-node' denied request: injected refusal
                """)
        case 503:
            return APIStore.status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        default: return APIStore.status(code, "InternalError", "Internal error occurred: injected fault")
        }
    }

    // MARK: watches

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
        var buffer = ByteBuffer(bytes: event.data)
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

    // MARK: metadata-only responses

    static func metadataObject(_ object: JSON) -> JSON {
        .object([
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"] ?? .object([:]),
        ])
    }

    static func metadataList(_ list: JSON) -> JSON {
        .object([
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": list["metadata"] ?? .object([:]),
            "items": .array((list["items"]?.array ?? []).map(metadataObject)),
        ])
    }
}

/// `/api/v1/nodes/NAME/status`, `/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME`.
struct Route {
    var resource: APIResource
    var namespace: String?
    var name: String?
    var subresource: String?

    init?(_ path: String) {
        var parts = path.split(separator: "/").map(String.init)[...]
        let group: String
        let version: String
        switch parts.first {
        case "api":
            guard parts.count >= 2 else { return nil }
            group = ""
            version = parts[parts.startIndex + 1]
            parts = parts.dropFirst(2)
        case "apis":
            guard parts.count >= 3 else { return nil }
            group = parts[parts.startIndex + 1]
            version = parts[parts.startIndex + 2]
            parts = parts.dropFirst(3)
        default:
            return nil
        }
        if parts.first == "namespaces", parts.count >= 3 {
            namespace = parts[parts.startIndex + 1]
            parts = parts.dropFirst(2)
        }
        guard let plural = parts.first,
            let resource = TestAPIServer.resources.first(where: {
                $0.group == group && $0.version == version && $0.plural == plural
            }),
            resource.namespaced == (namespace != nil), parts.count <= 3
        else { return nil }
        self.resource = resource
        name = parts.dropFirst().first
        subresource = parts.dropFirst(2).first
    }
}

/// One connection: gathers each request, answers it, or hands the connection to a watch.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: TestAPIServer
    var tls = false
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    init(server: TestAPIServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b):
            body.writeBuffer(&b)
        case .end:
            guard let head else { return }
            self.head = nil
            let (path, query) = HTTPHandler.split(head.uri)
            var clientCertificate = false
            if tls, let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) {
                // optionalVerification: a certificate that was sent has been verified against the test CA.
                clientCertificate = ssl.peerCertificate != nil
            }
            let request = TestAPIServer.Request(
                method: head.method.rawValue, uri: head.uri, path: path, query: query, headers: head.headers,
                body: body, clientCertificate: clientCertificate)
            switch server.handle(request, channel: context.channel) {
            case .watching:
                break
            case .close:
                context.close(promise: nil)
            case .json(let status, let json, let delay):
                let keepAlive = head.isKeepAlive
                let respond = { [self] in
                    self.respond(context: context, status: status, json: json, keepAlive: keepAlive)
                }
                if let delay {
                    context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { respond() }
                } else {
                    respond()
                }
            }
        }
    }

    func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, json: JSON, keepAlive: Bool) {
        let data = json.data
        var head = HTTPResponseHead(version: .http1_1, status: status)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Cache-Control", value: "no-cache, private")
        head.headers.add(name: "Content-Length", value: String(data.count))
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if !keepAlive { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.watcherGone(context.channel)
        context.fireChannelInactive()
    }

    /// Path and percent-decoded query parameters of a request target.
    static func split(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
        }
        return (String(uri[..<q]), query)
    }

    static func decode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var i = s.utf8.startIndex
        let u = s.utf8
        while i < u.endIndex {
            let c = u[i]
            if c == UInt8(ascii: "%"), u.distance(from: i, to: u.endIndex) >= 3,
                let v = UInt8(
                    String(decoding: u[u.index(after: i)..<u.index(i, offsetBy: 3)], as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                i = u.index(i, offsetBy: 3)
            } else {
                bytes.append(c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
                i = u.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Checks `condition` every `interval` until it holds (true) or `timeout` has passed (false): for
/// tests waiting on state that travels through the network.
public func poll(timeout: Duration, interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool)
    async rethrows -> Bool
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return false
}
