#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import Yams

/// The parts of a kubeconfig file wgmesh reads (client-go's clientcmd/api/v1 names).
struct KubeconfigFile: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster
    }
    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        var tlsServerName: String?
        var proxyURL: String?
        var extensions: [NamedExtension]?
        enum CodingKeys: String, CodingKey {
            case server, certificateAuthority = "certificate-authority", certificateAuthorityData =
                "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify", tlsServerName = "tls-server-name", proxyURL =
                "proxy-url"
            case extensions
        }
    }
    struct NamedExtension: Decodable {
        var name: String
        var `extension`: JSON?
    }
    struct NamedContext: Decodable {
        var name: String
        var context: Context
    }
    struct Context: Decodable {
        var cluster: String
        var user: String?
        var namespace: String?
    }
    struct NamedUser: Decodable {
        var name: String
        var user: User
    }
    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: Exec?
        var authProvider: AuthProvider?
        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec, authProvider = "auth-provider"
            case clientCertificate = "client-certificate", clientCertificateData = "client-certificate-data"
            case clientKey = "client-key", clientKeyData = "client-key-data"
        }
    }
    /// `users[].user.exec`: a client-go credential plugin.
    struct Exec: Decodable {
        struct EnvVar: Decodable {
            var name: String?
            var value: String?
        }
        var command: String?
        var args: [String]?
        var env: [EnvVar]?
        var apiVersion: String?
        var installHint: String?
        var provideClusterInfo: Bool?
        var interactiveMode: String?
    }
    struct AuthProvider: Decodable { var name: String? }

    var currentContext: String?
    var clusters: [NamedCluster]?
    var contexts: [NamedContext]?
    var users: [NamedUser]?
    enum CodingKeys: String, CodingKey { case currentContext = "current-context", clusters, contexts, users }

    /// Reads and decodes one file; nil when it does not exist (kubectl skips missing files of $KUBECONFIG).
    static func read(_ path: String) throws(KubeConfigError) -> KubeconfigFile? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if !FileManager.default.fileExists(atPath: path) { return nil }
            throw .unreadable(path, "cannot read it: check its permissions")
        }
        let text = String(decoding: data, as: UTF8.self)
        // An empty file is an empty kubeconfig, as client-go reads it.
        if text.allSatisfy(\.isWhitespace) { return KubeconfigFile() }
        do {
            return try YAMLDecoder().decode(KubeconfigFile.self, from: text)
        } catch {
            throw .malformed(path, "not a kubeconfig: \(error)")
        }
    }

    init() {}
}

/// Several kubeconfig files merged as kubectl merges `$KUBECONFIG`: the first file to set
/// `current-context` or to name a cluster, context or user wins, and that entry is taken whole;
/// later files only add names not seen before. Each entry remembers its file, for relative paths
/// and error messages.
struct MergedKubeconfig {
    struct Entry<Value> {
        var value: Value
        var file: String
        /// The folder that relative paths in this entry are resolved against.
        var folder: String { file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "." }
        func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : folder + "/" + path }
    }

    /// The files read, in order (missing ones left out).
    var files: [String] = []
    var currentContext: Entry<String>?
    var clusters: [String: Entry<KubeconfigFile.Cluster>] = [:]
    var contexts: [String: Entry<KubeconfigFile.Context>] = [:]
    var users: [String: Entry<KubeconfigFile.User>] = [:]

    /// Reads `paths` in order; missing files are skipped, unreadable or malformed ones are errors.
    init(paths: [String]) throws(KubeConfigError) {
        var seen = Set<String>()
        for path in paths where !path.isEmpty && seen.insert(path).inserted {
            guard let file = try KubeconfigFile.read(path) else { continue }
            try add(file, from: path)
        }
    }

    init() {}

    /// Merges one file's entries under the first-wins rule; a name twice in one file is an error, as in client-go.
    mutating func add(_ file: KubeconfigFile, from path: String) throws(KubeConfigError) {
        files.append(path)
        if currentContext == nil, let name = file.currentContext, !name.isEmpty {
            currentContext = Entry(value: name, file: path)
        }
        try Self.merge(file.clusters ?? [], into: &clusters, from: path, field: "clusters") { ($0.name, $0.cluster) }
        try Self.merge(file.contexts ?? [], into: &contexts, from: path, field: "contexts") { ($0.name, $0.context) }
        try Self.merge(file.users ?? [], into: &users, from: path, field: "users") { ($0.name, $0.user) }
    }

    static func merge<Named, Value>(
        _ list: [Named], into map: inout [String: Entry<Value>], from path: String, field: String,
        _ split: (Named) -> (String, Value)
    ) throws(KubeConfigError) {
        var names = Set<String>()
        for item in list {
            let (name, value) = split(item)
            guard names.insert(name).inserted else {
                throw .field(path, field, "names \"\(name)\" twice: remove or rename one of them")
            }
            if map[name] == nil { map[name] = Entry(value: value, file: path) }
        }
    }

    /// Where an error about the merged whole points: the one file, or the list as $KUBECONFIG spells it.
    var source: String { files.joined(separator: ":") }
}
