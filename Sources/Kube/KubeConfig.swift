#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Synchronization

/// How to reach and authenticate to an API server: from a kubeconfig file or from inside a Pod.
public struct KubeConfig: Sendable {
    public enum Credentials: Sendable, CustomStringConvertible {
        case none
        case token(String)
        /// A file re-read as it rotates (service-account tokens are).
        case tokenFile(TokenFile)
        /// PEM client certificate and key (mutual TLS).
        case clientCertificate(certificatePEM: [UInt8], keyPEM: [UInt8])
        /// A client-go credential plugin that gives a token or a client certificate.
        case exec(ExecCredentialPlugin)

        /// What kind of credential, never the secret itself.
        public var description: String {
            switch self {
            case .none: return "none"
            case .token: return "token"
            case .tokenFile(let file): return "token file \(file.path)"
            case .clientCertificate: return "client certificate"
            case .exec(let plugin): return "exec plugin \(plugin.configuration.command)"
            }
        }
    }

    /// `https://host:port`, without a trailing slash.
    public var server: String
    /// PEM bundle of the CAs to trust; nil means the system's.
    public var certificateAuthorityPEM: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var tlsServerName: String?
    /// The cluster's `proxy-url`: every request goes through it, whatever `$HTTPS_PROXY` and `$NO_PROXY` say.
    public var proxyURL: String?
    /// Where `proxyURL` was set, for error messages.
    var proxyURLField = "proxy-url"
    public var credentials: Credentials
    /// The context's namespace, or the Pod's.
    public var namespace: String?
    /// Where this came from (the kubeconfig's path, or the service-account folder), for error messages.
    public var source: String
    /// The kubeconfig context that chose this server; nil in a Pod or without a context.
    public var context: String?

    public init(
        server: String, certificateAuthorityPEM: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false,
        tlsServerName: String? = nil, proxyURL: String? = nil, credentials: Credentials = .none,
        namespace: String? = nil,
        source: String
    ) {
        self.server = server
        self.proxyURL = proxyURL
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.credentials = credentials
        self.namespace = namespace
        self.source = source
    }

    // MARK: kubeconfig

    /// Reads one kubeconfig, as `--kubeconfig` does (no merging). `context` nil takes `current-context`;
    /// `cluster` and `user` override the context's, as kubectl's `--cluster` and `--user`. Relative file
    /// paths are resolved against the kubeconfig's folder, as kubectl does.
    public static func load(
        kubeconfig path: String, context: String? = nil, cluster: String? = nil,
        user: String? = nil
    ) throws(KubeConfigError) -> KubeConfig {
        guard FileManager.default.fileExists(atPath: path) else {
            throw .unreadable(path, "cannot read it: check the path (--kubeconfig, $KUBECONFIG) and its permissions")
        }
        return try select(MergedKubeconfig(paths: [path]), context: context, cluster: cluster, user: user)
    }

    /// The configuration kubectl would use: `--kubeconfig` alone when given; else the files of `$KUBECONFIG`
    /// (colon-separated; missing ones skipped) merged as `MergedKubeconfig` says, or `~/.kube/config`; and
    /// the Pod's service account when those choose no context and no flag chooses one.
    public static func resolve(
        kubeconfig: String? = nil, context: String? = nil, cluster: String? = nil, user: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccount: String = KubeConfig.serviceAccountFolder
    ) throws(KubeConfigError) -> KubeConfig {
        if let kubeconfig { return try load(kubeconfig: kubeconfig, context: context, cluster: cluster, user: user) }
        let list = (environment["KUBECONFIG"] ?? "").split(separator: ":").map(String.init)
        let files = list.isEmpty ? [(environment["HOME"] ?? "") + "/.kube/config"] : list
        let merged = try MergedKubeconfig(paths: files)
        let chosen = context ?? merged.currentContext?.value ?? ""
        if chosen.isEmpty, cluster == nil, user == nil, !(environment["KUBERNETES_SERVICE_HOST"] ?? "").isEmpty {
            return try inCluster(environment: environment, serviceAccount: serviceAccount)
        }
        guard !merged.files.isEmpty else {
            if list.isEmpty {
                throw .unreadable(
                    files[0], "does not exist: pass --kubeconfig, set $KUBECONFIG, or run wgmesh in a Pod")
            }
            throw .unreadable(
                files.joined(separator: ":"),
                "none of the files in $KUBECONFIG exists: correct $KUBECONFIG, or pass --kubeconfig")
        }
        return try select(merged, context: context, cluster: cluster, user: user)
    }

    /// The context, cluster and user chosen by the flags or `current-context`, as one configuration.
    static func select(
        _ merged: MergedKubeconfig, context: String?, cluster clusterFlag: String?,
        user userFlag: String?
    ) throws(KubeConfigError) -> KubeConfig {
        let source = merged.source
        let name = context ?? merged.currentContext?.value ?? ""
        var ctx: MergedKubeconfig.Entry<KubeconfigFile.Context>?
        if !name.isEmpty {
            guard let found = merged.contexts[name] else {
                let known = merged.contexts.keys.sorted().joined(separator: ", ")
                throw .field(
                    source, "contexts", "has no context \"\(name)\" (it has: \(known.isEmpty ? "none" : known))")
            }
            ctx = found
        }
        guard let clusterName = clusterFlag ?? ctx?.value.cluster, !clusterName.isEmpty else {
            throw .field(
                source, "current-context", "is not set: run `kubectl config use-context NAME` or pass --context")
        }
        let namedBy = { (flag: String?, option: String) in
            flag != nil ? "which \(option) names" : "which context \"\(name)\" names"
        }
        guard let cluster = merged.clusters[clusterName] else {
            throw .field(
                ctx?.file ?? source, "clusters",
                "has no cluster \"\(clusterName)\", \(namedBy(clusterFlag, "--cluster"))")
        }
        var config = try clusterConfiguration(cluster, name: clusterName)
        config.namespace = ctx?.value.namespace
        config.context = name.isEmpty ? nil : name
        if let userName = userFlag ?? ctx?.value.user, !userName.isEmpty {
            guard let user = merged.users[userName] else {
                throw .field(
                    ctx?.file ?? source, "users", "has no user \"\(userName)\", \(namedBy(userFlag, "--user"))")
            }
            config.credentials = try credentials(
                user, name: userName, cluster: config, extensions: cluster.value.extensions)
        }
        return config
    }

    /// Reads a file that the kubeconfig names, or the base64 `-data` form of the same field.
    static func bytes<V>(_ entry: MergedKubeconfig.Entry<V>, data: String?, file: String?, field: String)
        throws(KubeConfigError) -> [UInt8]?
    {
        if let data {
            guard let d = Data(base64Encoded: data.filter { !$0.isWhitespace }) else {
                throw .field(entry.file, field + "-data", "is not base64")
            }
            return Array(d)
        }
        guard let file else { return nil }
        guard let d = FileManager.default.contents(atPath: entry.resolve(file)) else {
            throw .field(entry.file, field, "cannot read \(entry.resolve(file))")
        }
        return Array(d)
    }

    static func clusterConfiguration(_ entry: MergedKubeconfig.Entry<KubeconfigFile.Cluster>, name: String)
        throws(KubeConfigError) -> KubeConfig
    {
        let cluster = entry.value
        let f = "clusters[\(name)].cluster"
        guard let server = cluster.server, server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw .field(entry.file, f + ".server", "must be an http(s):// URL, got \"\(cluster.server ?? "")\"")
        }
        if let proxyURL = cluster.proxyURL, !proxyURL.isEmpty {
            _ = try KubeProxy(url: proxyURL, source: entry.file, field: f + ".proxy-url")
        }
        var config = KubeConfig(
            server: server.hasSuffix("/") ? String(server.dropLast()) : server,
            certificateAuthorityPEM: try bytes(
                entry, data: cluster.certificateAuthorityData, file: cluster.certificateAuthority,
                field: f + ".certificate-authority"),
            insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
            tlsServerName: cluster.tlsServerName, source: entry.file)
        config.proxyURL = cluster.proxyURL.flatMap { $0.isEmpty ? nil : $0 }
        config.proxyURLField = f + ".proxy-url"
        return config
    }

    /// The user's credentials, in client-go's order when a user sets several: token, token file, client
    /// certificate, exec plugin.
    static func credentials(
        _ entry: MergedKubeconfig.Entry<KubeconfigFile.User>, name: String, cluster: KubeConfig,
        extensions: [KubeconfigFile.NamedExtension]?
    ) throws(KubeConfigError) -> Credentials {
        let user = entry.value
        let f = "users[\(name)].user"
        if let token = user.token {
            return .token(token)
        } else if let tokenFile = user.tokenFile {
            return .tokenFile(try TokenFile(path: entry.resolve(tokenFile)))
        } else if let cert = try bytes(
            entry, data: user.clientCertificateData, file: user.clientCertificate, field: f + ".client-certificate")
        {
            guard let key = try bytes(entry, data: user.clientKeyData, file: user.clientKey, field: f + ".client-key")
            else {
                throw .field(entry.file, f + ".client-key", "is missing while a client certificate is set")
            }
            return .clientCertificate(certificatePEM: cert, keyPEM: key)
        } else if let exec = user.exec {
            return .exec(
                ExecCredentialPlugin(
                    try execConfiguration(
                        exec, entry: entry, field: f + ".exec", cluster: cluster, extensions: extensions)))
        } else if let provider = user.authProvider {
            throw .field(
                entry.file, f + ".auth-provider",
                "is \"\(provider.name ?? "")\", a plugin built into older kubectl that wgmesh does not have: "
                    + "switch the user to an exec credential plugin "
                    + "(kubelogin for OIDC and AKS, gke-gcloud-auth-plugin for GKE)"
            )
        }
        return .none
    }

    /// The `exec` stanza checked as client-go checks it: a command, a known apiVersion, and interactiveMode
    /// (required by v1; v1beta1 defaults to IfAvailable).
    static func execConfiguration(
        _ exec: KubeconfigFile.Exec, entry: MergedKubeconfig.Entry<KubeconfigFile.User>, field f: String,
        cluster: KubeConfig, extensions: [KubeconfigFile.NamedExtension]?
    ) throws(KubeConfigError) -> ExecCredentialPlugin.Configuration {
        typealias Plugin = ExecCredentialPlugin.Configuration
        guard let command = exec.command, !command.isEmpty else {
            throw .field(entry.file, f + ".command", "is not set: name the credential plugin to run")
        }
        let versions = Plugin.APIVersion.allCases.map(\.rawValue).joined(separator: " or ")
        guard let version = exec.apiVersion, !version.isEmpty else {
            throw .field(
                entry.file, f + ".apiVersion", "is not set: use \(versions), as the plugin's documentation says")
        }
        guard let apiVersion = Plugin.APIVersion(rawValue: version) else {
            throw .field(
                entry.file, f + ".apiVersion", "is \"\(version)\", which wgmesh does not speak: use \(versions)")
        }
        let modes = Plugin.InteractiveMode.allCases.map(\.rawValue).joined(separator: ", ")
        let interactiveMode: Plugin.InteractiveMode
        switch exec.interactiveMode {
        case nil, "":
            guard apiVersion == .v1beta1 else {
                throw .field(
                    entry.file, f + ".interactiveMode", "is required with \(version): set it to one of \(modes)")
            }
            interactiveMode = .ifAvailable
        case let mode?:
            guard let m = Plugin.InteractiveMode(rawValue: mode) else {
                throw .field(entry.file, f + ".interactiveMode", "is \"\(mode)\": use one of \(modes)")
            }
            interactiveMode = m
        }
        var env: [(name: String, value: String)] = []
        for (i, variable) in (exec.env ?? []).enumerated() {
            guard let name = variable.name, !name.isEmpty else {
                throw .field(entry.file, f + ".env[\(i)].name", "is not set: every variable needs a name")
            }
            env.append((name, variable.value ?? ""))
        }
        return Plugin(
            command: command.contains("/") ? entry.resolve(command) : command, args: exec.args ?? [], env: env,
            apiVersion: apiVersion, interactiveMode: interactiveMode, installHint: exec.installHint,
            cluster: exec.provideClusterInfo == true ? execClusterInfo(cluster, extensions: extensions) : nil,
            source: entry.file, field: f)
    }

    /// `spec.cluster` for the plugin: the cluster's fields, the CA as data, and the
    /// `client.authentication.k8s.io/exec` extension as `config`.
    static func execClusterInfo(_ config: KubeConfig, extensions: [KubeconfigFile.NamedExtension]?) -> JSON {
        var info: [String: JSON] = ["server": .string(config.server)]
        if let name = config.tlsServerName { info["tls-server-name"] = .string(name) }
        if config.insecureSkipTLSVerify { info["insecure-skip-tls-verify"] = .bool(true) }
        if let ca = config.certificateAuthorityPEM {
            info["certificate-authority-data"] = .string(Data(ca).base64EncodedString())
        }
        if let proxy = config.proxyURL { info["proxy-url"] = .string(proxy) }
        if let extensionConfig = extensions?.first(where: { $0.name == "client.authentication.k8s.io/exec" })?.extension
        {
            info["config"] = extensionConfig
        }
        return .object(info)
    }

    // MARK: in-cluster

    /// Where the kubelet mounts a Pod's service-account token, CA and namespace.
    public static let serviceAccountFolder = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The configuration of a Pod: KUBERNETES_SERVICE_HOST/PORT and the service-account files.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccount folder: String = KubeConfig.serviceAccountFolder
    ) throws(KubeConfigError) -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw .notInCluster(
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: outside a Pod, pass --kubeconfig")
        }
        let ca = folder + "/ca.crt"
        guard let caData = FileManager.default.contents(atPath: ca) else {
            throw .unreadable(ca, "cannot read the service account's CA")
        }
        let namespace = FileManager.default.contents(atPath: folder + "/namespace").map {
            String(decoding: $0, as: UTF8.self).trimmingSpaces
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeConfig(
            server: "https://\(hostPart):\(port)", certificateAuthorityPEM: Array(caData), insecureSkipTLSVerify: false,
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
        guard let d = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path, "cannot read the token file")
        }
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

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
