#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization
import Yams

/// How to reach and authenticate to an API server: from a kubeconfig file or from inside a Pod.
public struct KubeConfig: Sendable {
    public enum Credentials: Sendable {
        case none
        case token(String)
        /// A file re-read as it rotates (service-account tokens are).
        case tokenFile(TokenFile)
        /// PEM client certificate and key (mutual TLS).
        case clientCertificate(certificatePEM: [UInt8], keyPEM: [UInt8])
    }

    /// `https://host:port`, without a trailing slash.
    public var server: String
    /// PEM bundle of the CAs to trust; nil means the system's.
    public var certificateAuthorityPEM: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var tlsServerName: String?
    public var credentials: Credentials
    /// The context's namespace, or the Pod's.
    public var namespace: String?
    /// Where this came from (the kubeconfig's path, or the service-account folder), for error messages.
    public var source: String

    public init(server: String, certificateAuthorityPEM: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false,
                tlsServerName: String? = nil, credentials: Credentials = .none, namespace: String? = nil, source: String) {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.credentials = credentials
        self.namespace = namespace
        self.source = source
    }

    // MARK: kubeconfig

    /// Reads a kubeconfig; `context` nil takes `current-context`. Relative file paths are resolved
    /// against the kubeconfig's folder, as kubectl does.
    public static func load(kubeconfig path: String, context: String? = nil) throws(KubeConfigError) -> KubeConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path, "cannot read it: check the path (--kubeconfig, $KUBECONFIG) and its permissions")
        }
        let file: KubeconfigFile
        do {
            file = try YAMLDecoder().decode(KubeconfigFile.self, from: String(decoding: data, as: UTF8.self))
        } catch {
            throw .malformed(path, "not a kubeconfig: \(error)")
        }
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : folder + "/" + p }
        func bytes(data: String?, file: String?, field: String) throws(KubeConfigError) -> [UInt8]? {
            if let data {
                guard let d = Data(base64Encoded: data.filter { !$0.isWhitespace }) else { throw .field(path, field + "-data", "is not base64") }
                return Array(d)
            }
            guard let file else { return nil }
            guard let d = FileManager.default.contents(atPath: resolve(file)) else {
                throw .field(path, field, "cannot read \(resolve(file))")
            }
            return Array(d)
        }

        guard let name = context ?? file.currentContext, !name.isEmpty else {
            throw .field(path, "current-context", "is not set: run `kubectl config use-context NAME` or pass --context")
        }
        guard let ctx = file.contexts?.first(where: { $0.name == name })?.context else {
            let known = (file.contexts ?? []).map(\.name).joined(separator: ", ")
            throw .field(path, "contexts", "has no context \"\(name)\" (it has: \(known.isEmpty ? "none" : known))")
        }
        guard let cluster = file.clusters?.first(where: { $0.name == ctx.cluster })?.cluster else {
            throw .field(path, "clusters", "has no cluster \"\(ctx.cluster)\", which context \"\(name)\" names")
        }
        guard let server = cluster.server, server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw .field(path, "clusters[\(ctx.cluster)].cluster.server", "must be an http(s):// URL, got \"\(cluster.server ?? "")\"")
        }
        var config = KubeConfig(server: server.hasSuffix("/") ? String(server.dropLast()) : server,
                                certificateAuthorityPEM: try bytes(data: cluster.certificateAuthorityData, file: cluster.certificateAuthority,
                                                                   field: "clusters[\(ctx.cluster)].cluster.certificate-authority"),
                                insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
                                tlsServerName: cluster.tlsServerName, credentials: .none, namespace: ctx.namespace, source: path)
        if let userName = ctx.user {
            guard let user = file.users?.first(where: { $0.name == userName })?.user else {
                throw .field(path, "users", "has no user \"\(userName)\", which context \"\(name)\" names")
            }
            let f = "users[\(userName)].user"
            if let token = user.token {
                config.credentials = .token(token)
            } else if let tokenFile = user.tokenFile {
                config.credentials = .tokenFile(try TokenFile(path: resolve(tokenFile)))
            } else if let cert = try bytes(data: user.clientCertificateData, file: user.clientCertificate, field: f + ".client-certificate") {
                guard let key = try bytes(data: user.clientKeyData, file: user.clientKey, field: f + ".client-key") else {
                    throw .field(path, f + ".client-key", "is missing while a client certificate is set")
                }
                config.credentials = .clientCertificate(certificatePEM: cert, keyPEM: key)
            } else if user.exec != nil || user.authProvider != nil {
                throw .field(path, f, "uses an exec or auth-provider plugin, which wgmesh does not run: use a token or a client certificate")
            }
        }
        return config
    }

    // MARK: in-cluster

    /// The configuration of a Pod: KUBERNETES_SERVICE_HOST/PORT and the service-account files.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 serviceAccount folder: String = "/var/run/secrets/kubernetes.io/serviceaccount") throws(KubeConfigError) -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty else {
            throw .notInCluster("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: outside a Pod, pass --kubeconfig")
        }
        let ca = folder + "/ca.crt"
        guard let caData = FileManager.default.contents(atPath: ca) else { throw .unreadable(ca, "cannot read the service account's CA") }
        let namespace = FileManager.default.contents(atPath: folder + "/namespace").map { String(decoding: $0, as: UTF8.self).trimmingSpaces }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeConfig(server: "https://\(hostPart):\(port)", certificateAuthorityPEM: Array(caData), insecureSkipTLSVerify: false,
                          tlsServerName: nil, credentials: .tokenFile(try TokenFile(path: folder + "/token")), namespace: namespace,
                          source: folder)
    }
}

/// A bearer token kept in a file that is replaced as it rotates: read again at most once a minute,
/// as client-go does, and at once after the server answered 401.
public final class TokenFile: Sendable {
    public let path: String
    private let cache: Mutex<(token: String, readAt: ContinuousClock.Instant)>
    static let refreshInterval = Duration.seconds(60)

    public init(path: String) throws(KubeConfigError) {
        self.path = path
        cache = Mutex((try TokenFile.read(path), ContinuousClock.now))
    }

    /// The token, re-read from the file when the last read is older than a minute or `force` is set.
    public func current(force: Bool = false, now: ContinuousClock.Instant = .now) throws(KubeConfigError) -> String {
        let cached = cache.withLock { $0 }
        if !force, now - cached.readAt < TokenFile.refreshInterval { return cached.token }
        let token = try TokenFile.read(path)
        cache.withLock { $0 = (token, now) }
        return token
    }

    static func read(_ path: String) throws(KubeConfigError) -> String {
        guard let d = FileManager.default.contents(atPath: path) else { throw .unreadable(path, "cannot read the token file") }
        let token = String(decoding: d, as: UTF8.self).trimmingSpaces
        guard !token.isEmpty else { throw .unreadable(path, "the token file is empty") }
        return token
    }
}

/// Why a configuration could not be used; names the file and the field.
public enum KubeConfigError: Error, Equatable, CustomStringConvertible {
    case unreadable(String, String)
    case malformed(String, String)
    case field(String, String, String)
    case notInCluster(String)

    public var description: String {
        switch self {
        case .unreadable(let file, let why): return "\(file): \(why)"
        case .malformed(let file, let why): return "\(file): \(why)"
        case .field(let file, let field, let why): return "\(file): \(field) \(why)"
        case .notInCluster(let why): return why
        }
    }
}

/// The parts of a kubeconfig file wgmesh reads (client-go's clientcmd/api/v1 names).
struct KubeconfigFile: Decodable {
    struct NamedCluster: Decodable { var name: String; var cluster: Cluster }
    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        var tlsServerName: String?
        enum CodingKeys: String, CodingKey {
            case server, certificateAuthority = "certificate-authority", certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify", tlsServerName = "tls-server-name"
        }
    }
    struct NamedContext: Decodable { var name: String; var context: Context }
    struct Context: Decodable { var cluster: String; var user: String?; var namespace: String? }
    struct NamedUser: Decodable { var name: String; var user: User }
    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: JSON?
        var authProvider: JSON?
        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec, authProvider = "auth-provider"
            case clientCertificate = "client-certificate", clientCertificateData = "client-certificate-data"
            case clientKey = "client-key", clientKeyData = "client-key-data"
        }
    }
    var currentContext: String?
    var clusters: [NamedCluster]?
    var contexts: [NamedContext]?
    var users: [NamedUser]?
    enum CodingKeys: String, CodingKey { case currentContext = "current-context", clusters, contexts, users }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
