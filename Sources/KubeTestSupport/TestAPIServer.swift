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

/// A Kubernetes-API-compatible server on loopback, over HTTP or HTTPS, for Nodes, Leases, Events and the custom
/// resources of the CustomResourceDefinitions created in it (TestAPIServer+CustomResources).
/// Semantics follow kube-apiserver (see `APIStore`); shapes follow the responses captured from a real
/// one. Tests reach into its state directly and inject faults: failing requests, 409 storms, slow
/// answers, dropped and expired watches.
///
/// Its parts: request dispatch in TestAPIServer+Routing, watch streams in TestAPIServer+Watches,
/// injected failures in TestAPIServer+Faults, who sends a request in TestAPIServer+Identities, the server's
/// TLS in TestAPIServer+TLS, and the connection handler in HTTPHandler.
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
        /// PATCH and DELETE of a Node or a Peer, or of its status: resource, kind, userInfo, operation,
        /// subResource, name, oldObject and object (the stored result; null for a DELETE), as a
        /// ValidatingAdmissionPolicy would see it.
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

    struct StoreKey: Hashable {
        var resource: APIResource
        var namespace: String?
    }

    struct State {
        var stores: [StoreKey: APIStore] = [:]
        var watchers: [Int: Watcher] = [:]
        var nextWatcher = 0
        var faults: [Fault] = []
        var token: String?
        var requests: [String: Int] = [:]
        /// The served versions of the CustomResourceDefinitions in the store, by the resource each adds.
        var customResources: [APIResource: CustomResourceDefinition.Version] = [:]

        /// The store of `key`, made empty on first use.
        mutating func ensureStore(_ key: StoreKey, windowSize: Int) {
            if stores[key] == nil {
                stores[key] = APIStore(resource: key.resource, windowSize: windowSize)
                stores[key]!.customResource = customResources[key.resource]
            }
        }

        /// The built-in resources and those the CustomResourceDefinitions add.
        var servedResources: [APIResource] { TestAPIServer.resources + Array(customResources.keys) }
    }

    /// The built-in resources served; Events in both the events.k8s.io and the core group. A created
    /// CustomResourceDefinition adds its served versions.
    public static let resources: [APIResource] = [
        .nodes, .leases, .events, .customResourceDefinitions,
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
        let sslContext = try TestAPIServer.sslContext(options)
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
                if key.resource == .customResourceDefinitions, s.stores[key]?.resourceVersion != before {
                    syncCustomResources(&s)
                }
            }
            // Mutated in place: a copy of the store would copy its whole watch window on every write.
            return try body(&s.stores[key]!)
        }
    }
}
