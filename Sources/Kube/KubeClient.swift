import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Synchronization

/// The Kubernetes API over HTTPS (async-http-client): JSON bodies, bearer token or client
/// certificate, a service-account token re-read as it rotates, an exec plugin's credential, a proxy.
public final class KubeClient: KubeAPI {
    public let config: KubeConfig
    let http: HTTPClient
    /// `https://host:port`; the host is `tls-server-name` when the kubeconfig sets one.
    let base: String
    let userAgent: String
    /// Sent as `fieldManager` with every write, so `metadata.managedFields` names this client's fields.
    let fieldManager: String?
    /// How long a request other than a watch may take.
    let requestTimeout: TimeAmount

    /// The TLS configuration without a client certificate from an exec plugin (those are added per request).
    let tls: TLSConfiguration
    /// The TLS configuration for the exec plugin's current client certificate, made once per run of the plugin.
    let pluginTLS = Mutex<(generation: Int, tls: TLSConfiguration)?>(nil)

    /// Builds the TLS context from `config` and picks the proxy (`proxy-url`, else `$HTTPS_PROXY` and
    /// `$NO_PROXY` in `environment`); bad certificates, keys or proxy URLs are refused here, naming the field.
    public init(
        config: KubeConfig, userAgent: String = "wgmesh", fieldManager: String? = nil,
        requestTimeout: Duration = .seconds(30),
        connectTimeout: Duration = .seconds(10),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(KubeConfigError) {
        self.config = config
        self.userAgent = userAgent
        self.fieldManager = fieldManager
        self.requestTimeout = TimeAmount(requestTimeout)
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca = config.certificateAuthorityPEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
            } catch {
                throw .field(config.source, "certificate-authority", "is not a PEM certificate bundle: \(error)")
            }
        }
        if config.insecureSkipTLSVerify { tls.certificateVerification = .none }
        if case .clientCertificate(let certPEM, let keyPEM) = config.credentials {
            tls = try KubeClient.adding(
                certificatePEM: certPEM, keyPEM: keyPEM, to: tls, from: .kubeconfig(source: config.source))
        }
        self.tls = tls
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, timeout: .init(connect: TimeAmount(connectTimeout)))
        configuration.proxy = try KubeProxy.forServer(
            config.server, proxyURL: config.proxyURL, proxyURLField: config.proxyURLField,
            source: config.source, environment: environment)?.configuration
        // tls-server-name: connect to the server's address, but send and verify this name.
        if let name = config.tlsServerName, let host = KubeClient.host(of: config.server) {
            configuration.dnsOverride = [name: host]
            base = config.server.replacing(host, with: name, maxReplacements: 1)
        } else {
            base = config.server
        }
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Where a client certificate comes from, for the error that refuses it.
    enum CertificateOrigin {
        /// The kubeconfig's client-certificate and client-key.
        case kubeconfig(source: String)
        /// An exec plugin's clientCertificateData and clientKeyData.
        case plugin(ExecCredentialPlugin.Configuration)

        func refusal(key: Bool, _ error: any Error) -> KubeConfigError {
            let what = key ? "a PEM private key" : "a PEM certificate"
            switch self {
            case .kubeconfig(let source):
                return .field(source, key ? "client-key" : "client-certificate", "is not \(what): \(error)")
            case .plugin(let c):
                return .field(
                    c.source, c.field,
                    """
                    runs "\(c.command)", which returned \(key ? "clientKeyData" : "clientCertificateData") \
                    that is not \(what): \(error)
                    """)
            }
        }
    }

    /// `tls` presenting this client certificate.
    static func adding(
        certificatePEM: [UInt8], keyPEM: [UInt8], to tls: TLSConfiguration,
        from origin: CertificateOrigin
    ) throws(KubeConfigError) -> TLSConfiguration {
        var tls = tls
        do {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificatePEM).map { .certificate($0) }
        } catch {
            throw origin.refusal(key: false, error)
        }
        do {
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        } catch {
            throw origin.refusal(key: true, error)
        }
        return tls
    }

    /// Closes the connection pool; call once, when done with the client.
    public func shutdown() async throws { try await http.shutdown() }

    // MARK: operations

    public func get(_ resource: APIResource, namespace: String?, name: String) async throws(KubeError) -> KubeObject {
        try object(try await send(.GET, resource.path(namespace: namespace, name: name)))
    }

    public func list(_ resource: APIResource, namespace: String?, options: ListOptions) async throws(KubeError)
        -> ObjectList
    {
        var query: [(String, String)] = []
        if let s = options.labelSelector { query.append(("labelSelector", s)) }
        if let l = options.limit { query.append(("limit", String(l))) }
        if let c = options.continueToken { query.append(("continue", c)) }
        let request = Request(
            method: .GET, path: resource.path(namespace: namespace), query: query,
            accept: options.metadataOnly ? KubeClient.metadataListAccept : "application/json")
        let json = try await send(request)
        do {
            return try ObjectList(json: json)
        } catch {
            throw .decoding(request: request.description, error)
        }
    }

    public func watch(_ resource: APIResource, namespace: String?, options: WatchOptions) async throws(KubeError)
        -> WatchStream
    {
        var query = [("watch", "1")]
        if let rv = options.resourceVersion { query.append(("resourceVersion", rv)) }
        if options.allowBookmarks { query.append(("allowWatchBookmarks", "true")) }
        if let s = options.labelSelector { query.append(("labelSelector", s)) }
        query.append(("timeoutSeconds", String(options.timeoutSeconds)))
        let request = Request(
            method: .GET, path: resource.path(namespace: namespace), query: query,
            accept: options.metadataOnly ? KubeClient.metadataAccept : "application/json",
            // The server ends the watch at timeoutSeconds; allow it a minute more.
            timeout: .seconds(Int64(options.timeoutSeconds) + 60))
        let response = try await execute(request)
        guard response.status == .ok else { throw try await failure(request, response) }
        return WatchStream(body: response.body, request: request.description)
    }

    public func create(_ resource: APIResource, namespace: String?, _ object: JSON) async throws(KubeError)
        -> KubeObject
    {
        try self.object(try await send(.POST, resource.path(namespace: namespace), body: object))
    }

    public func update(_ resource: APIResource, namespace: String?, _ object: JSON, subresource: String? = nil)
        async throws(KubeError) -> KubeObject
    {
        let name = ObjectMeta(object["metadata"]).name
        return try self.object(
            try await send(
                .PUT, resource.path(namespace: namespace, name: name, subresource: subresource), body: object))
    }

    public func patch(
        _ resource: APIResource, namespace: String?, name: String, _ patch: Patch, subresource: String? = nil
    ) async throws(KubeError) -> KubeObject {
        try object(
            try await send(
                .PATCH, resource.path(namespace: namespace, name: name, subresource: subresource),
                body: patch.body, contentType: patch.contentType))
    }

    public func delete(_ resource: APIResource, namespace: String?, name: String) async throws(KubeError) {
        _ = try await send(.DELETE, resource.path(namespace: namespace, name: name))
    }

    // MARK: HTTP

    static let metadataAccept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    static let metadataListAccept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    /// Larger than any list page wgmesh asks for (500 Nodes are a few MB).
    static let maxBody = 256 << 20

    struct Request: CustomStringConvertible {
        var method: HTTPMethod
        var path: String
        var query: [(String, String)] = []
        var body: JSON? = nil
        var contentType = "application/json"
        var accept = "application/json"
        var timeout: TimeAmount? = nil

        var description: String { "\(method.rawValue) \(path)" }
    }

    func send(_ method: HTTPMethod, _ path: String, body: JSON? = nil, contentType: String = "application/json")
        async throws(KubeError) -> JSON
    {
        var request = Request(method: method, path: path, body: body, contentType: contentType)
        if let fieldManager, method != .GET, method != .DELETE { request.query.append(("fieldManager", fieldManager)) }
        return try await send(request)
    }

    func send(_ request: Request) async throws(KubeError) -> JSON {
        let response = try await execute(request)
        guard (200..<300).contains(response.status.code) else { throw try await failure(request, response) }
        let bytes = try await collect(request, response)
        do {
            return try JSON.parse(bytes.readableBytesView)
        } catch {
            throw .decoding(request: request.description, .notAnObject(String(buffer: bytes).prefix(80).description))
        }
    }

    func object(_ json: JSON) throws(KubeError) -> KubeObject {
        do { return try KubeObject(json: json) } catch { throw .decoding(request: "response", error) }
    }

    /// What one request carries: a bearer token, a TLS configuration with a plugin's client certificate, or neither.
    struct Authentication {
        var token: String?
        var tls: TLSConfiguration?
        /// The plugin's credential, to tell the plugin when the server refused it.
        var plugin: ExecCredentialPlugin.Credential?
    }

    /// Sends the request; after a 401, a token file is read again and an exec plugin run again (the
    /// credential may have rotated), and the request tried once more.
    func execute(_ request: Request) async throws(KubeError) -> HTTPClientResponse {
        let first = try await authentication(after: nil) ?? Authentication()
        var response = try await execute(request, first)
        if response.status == .unauthorized, let second = try await authentication(after: first) {
            _ = try? await response.body.collect(upTo: KubeClient.maxBody)
            response = try await execute(request, second)
        }
        return response
    }

    /// The credentials for a request; `after` a 401 with those, new ones, or nil when there is nothing new to try.
    func authentication(after refused: Authentication?) async throws(KubeError) -> Authentication? {
        do {
            switch config.credentials {
            case .none, .clientCertificate:
                return refused == nil ? Authentication() : nil
            case .token(let t):
                return refused == nil ? Authentication(token: t) : nil
            case .tokenFile(let file):
                return Authentication(token: try file.current(force: refused != nil))
            case .exec(let plugin):
                if let used = refused?.plugin { await plugin.refused(used) }
                let credential = try await plugin.credential()
                var tls: TLSConfiguration?
                if let cert = credential.clientCertificatePEM, let key = credential.clientKeyPEM {
                    tls = try pluginTLS(credential, certificatePEM: cert, keyPEM: key, plugin: plugin.configuration)
                }
                return Authentication(token: credential.token, tls: tls, plugin: credential)
            }
        } catch {
            throw .credentials(error)
        }
    }

    /// The TLS configuration with the plugin's certificate; a new one (so new connections) only when the plugin
    /// ran again.
    func pluginTLS(
        _ credential: ExecCredentialPlugin.Credential, certificatePEM: [UInt8], keyPEM: [UInt8],
        plugin: ExecCredentialPlugin.Configuration
    ) throws(KubeConfigError) -> TLSConfiguration {
        if let cached = pluginTLS.withLock({ $0 }), cached.generation == credential.generation { return cached.tls }
        let made = try KubeClient.adding(certificatePEM: certificatePEM, keyPEM: keyPEM, to: tls, from: .plugin(plugin))
        pluginTLS.withLock { $0 = (credential.generation, made) }
        return made
    }

    func execute(_ request: Request, _ authentication: Authentication) async throws(KubeError) -> HTTPClientResponse {
        var url = base + request.path
        if !request.query.isEmpty {
            url += "?" + request.query.map { "\($0.0)=\(KubeClient.percentEncoded($0.1))" }.joined(separator: "&")
        }
        var r = HTTPClientRequest(url: url)
        r.method = request.method
        r.headers.add(name: "Accept", value: request.accept)
        r.headers.add(name: "User-Agent", value: userAgent)
        if let token = authentication.token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let tls = authentication.tls { r.tlsConfiguration = tls }
        if let body = request.body {
            r.headers.add(name: "Content-Type", value: request.contentType)
            r.body = .bytes(ByteBuffer(bytes: body.bytes))
        }
        do {
            return try await http.execute(r, timeout: request.timeout ?? requestTimeout)
        } catch {
            throw .transport(request.description, error, context: "\(base): ")
        }
    }

    func collect(_ request: Request, _ response: HTTPClientResponse) async throws(KubeError) -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: KubeClient.maxBody)
        } catch {
            throw .transport(request.description, error, context: "reading the response: ")
        }
    }

    /// The Status the server sent, or one made from the HTTP status when the body is not a Status.
    func failure(_ request: Request, _ response: HTTPClientResponse) async throws(KubeError) -> KubeError {
        let bytes = try await collect(request, response)
        if let json = try? JSON.parse(bytes.readableBytesView), let status = try? Status(json: json) {
            return .api(request: request.description, status)
        }
        let text = String(buffer: bytes).prefix(200)
        return .api(
            request: request.description,
            Status(
                code: Int(response.status.code), reason: response.status.reasonPhrase,
                message: text.isEmpty ? nil : String(text)))
    }

    /// RFC 3986 query component: unreserved characters stay, everything else is %XX.
    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// The host part of `https://host:port` (brackets kept for IPv6).
    static func host(of server: String) -> String? {
        guard let scheme = server.range(of: "://") else { return nil }
        let rest = server[scheme.upperBound...]
        let authority = rest.prefix { $0 != "/" }
        if authority.hasPrefix("[") { return authority.firstIndex(of: "]").map { String(authority[...$0]) } }
        return String(authority.prefix { $0 != ":" })
    }
}
