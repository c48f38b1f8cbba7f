import AsyncHTTPClient

#if canImport(Glibc)
    import Glibc
#endif
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A proxy between wgmesh and the API server, chosen as kubectl chooses it: the cluster's `proxy-url`
/// for every request, else `$HTTPS_PROXY` (`$HTTP_PROXY` for an http:// server) unless `$NO_PROXY`
/// exempts the server or the server is loopback.
public struct KubeProxy: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// HTTP CONNECT, with Basic authentication when the URL has a user.
        case http
        /// SOCKS5 without authentication; the proxy resolves the server's name.
        case socks5
    }

    public var kind: Kind
    public var host: String
    public var port: Int
    /// Basic authentication to an HTTP proxy (`http://user:password@proxy:3128`).
    public var username: String?
    public var password: String?

    public init(kind: Kind, host: String, port: Int, username: String? = nil, password: String? = nil) {
        self.kind = kind
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// Parses `http://[user:password@]host[:port]` or `socks5://host[:port]`; `source` and `field` name
    /// where the URL came from in the error. With `lenient`, a bare `host:port` is http, as Go reads
    /// `$HTTPS_PROXY`.
    public init(url text: String, source: String, field: String, lenient: Bool = false) throws(KubeConfigError) {
        func refuse(_ why: String) -> KubeConfigError {
            .field(source, field, "is \"\(KubeProxy.redacted(text))\": \(why)")
        }
        let withScheme = lenient && !text.contains("://") ? "http://" + text : text
        guard let url = URL(string: withScheme), let scheme = url.scheme?.lowercased(),
            let host = url.host(percentEncoded: false), !host.isEmpty
        else {
            throw refuse("not a proxy URL: write it as http://host:port or socks5://host:port")
        }
        switch scheme {
        case "http":
            kind = .http
        case "socks5":
            kind = .socks5
            guard url.user == nil else {
                throw refuse(
                    "wgmesh cannot authenticate to a SOCKS5 proxy: use one that needs no password, or an http:// proxy")
            }
        case "https":
            throw refuse(
                """
                wgmesh cannot speak TLS to the proxy itself: use the proxy's http:// address (the API traffic \
                inside stays TLS)
                """
            )
        default:
            throw refuse("the scheme \(scheme) is not a proxy wgmesh speaks: use http:// (CONNECT) or socks5://")
        }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        port = url.port ?? (kind == .http ? 80 : 1080)
        username = url.user(percentEncoded: false)
        password = url.password(percentEncoded: false)
    }

    /// The proxy for requests to `server` (`https://host:port`): `proxyURL` when the cluster sets one,
    /// else the environment's, as Go's http.ProxyFromEnvironment reads it. nil: connect directly.
    public static func forServer(
        _ server: String, proxyURL: String?, proxyURLField: String = "proxy-url", source: String,
        environment: [String: String]
    ) throws(KubeConfigError) -> KubeProxy? {
        if let proxyURL, !proxyURL.isEmpty { return try KubeProxy(url: proxyURL, source: source, field: proxyURLField) }
        let https = server.lowercased().hasPrefix("https://")
        let names = https ? ["HTTPS_PROXY", "https_proxy"] : ["HTTP_PROXY", "http_proxy"]
        guard let name = names.first(where: { !(environment[$0] ?? "").isEmpty }), let value = environment[name] else {
            return nil
        }
        guard let (host, port) = hostAndPort(of: server, defaultPort: https ? 443 : 80),
            !bypasses(
                host: host, port: port,
                noProxy: environment["NO_PROXY"].flatMap { $0.isEmpty ? nil : $0 } ?? environment["no_proxy"] ?? "")
        else { return nil }
        return try KubeProxy(url: value, source: "environment", field: "$" + name, lenient: true)
    }

    /// Whether a request to `host`:`port` goes direct: localhost and loopback always (Go never proxies
    /// them), and whatever `$NO_PROXY` names: `*`; an IP, optionally with a port; a CIDR; a domain, which
    /// matches itself and its subdomains (`.domain` and `*.domain` match subdomains only), optionally with a port.
    static func bypasses(host rawHost: String, port: Int, noProxy: String) -> Bool {
        let host = rawHost.lowercased()
        let ip = ProxyIP(host)
        if host == "localhost" { return true }
        if let ip, isLoopback(ip) { return true }
        for rawEntry in noProxy.split(separator: ",") {
            let entry = String(rawEntry).trimmingSpaces.lowercased()
            if entry.isEmpty { continue }
            if entry == "*" { return true }
            if entry.contains("/") {
                if let ip, ProxyIP.cidr(entry, contains: ip) { return true }
                continue
            }
            let (pattern, entryPort) = splitPort(entry)
            if let entryPort, entryPort != port { continue }
            if let patternIP = ProxyIP(pattern) {
                if patternIP == ip { return true }
                continue
            }
            // A domain never matches an IP address.
            guard ip == nil, !pattern.isEmpty else { continue }
            var suffix = pattern.hasPrefix("*.") ? String(pattern.dropFirst()) : pattern
            let matchesItself = !suffix.hasPrefix(".")
            if matchesItself { suffix = "." + suffix }
            if host.hasSuffix(suffix) || (matchesItself && host == suffix.dropFirst()) { return true }
        }
        return false
    }

    /// 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6 (::ffff:127.0.0.1), as Go's IP.IsLoopback.
    static func isLoopback(_ ip: ProxyIP) -> Bool {
        ip.isV6 ? ip.value == 1 || ip.value >> 24 == 0xffff_7f : ip.value >> 24 == 127
    }

    /// `host[:port]` or `[v6]:port`, the brackets removed; an IPv6 address alone keeps all its colons.
    static func splitPort(_ entry: String) -> (String, Int?) {
        if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
            let host = String(entry[entry.index(after: entry.startIndex)..<close])
            let rest = entry[entry.index(after: close)...]
            return (host, rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil)
        }
        if entry.filter({ $0 == ":" }).count == 1, let colon = entry.lastIndex(of: ":"),
            let port = Int(entry[entry.index(after: colon)...])
        {
            return (String(entry[..<colon]), port)
        }
        return (entry, nil)
    }

    /// The host (without brackets) and port of `https://host:port/...`.
    static func hostAndPort(of server: String, defaultPort: Int) -> (String, Int)? {
        guard let scheme = server.range(of: "://") else { return nil }
        var authority = server[scheme.upperBound...].prefix { $0 != "/" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let (host, port) = splitPort(String(authority))
        return host.isEmpty ? nil : (host, port ?? defaultPort)
    }

    /// The URL with any password replaced, for error messages.
    static func redacted(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].lastIndex(of: "@") else {
            return text
        }
        let userinfo = text[scheme.upperBound..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":REDACTED" + String(text[at...])
    }

    /// async-http-client's form of this proxy.
    var configuration: HTTPClient.Configuration.Proxy {
        switch kind {
        case .socks5:
            return .socksServer(host: host, port: port)
        case .http:
            let authorization = username.map { HTTPClient.Authorization.basic(username: $0, password: password ?? "") }
            return .server(host: host, port: port, authorization: authorization)
        }
    }
}

/// An IPv4 or IPv6 address in `$NO_PROXY` or a server's host, as the C library's `inet_pton` reads it:
/// dotted-quad IPv4 without leading zeros, RFC 4291 IPv6 (`::`, an IPv4 tail); the value in the low bits.
struct ProxyIP: Equatable {
    var isV6: Bool
    var value: UInt128

    init?(_ text: some StringProtocol) {
        let text = String(text)
        if text.contains(":") {
            var a = in6_addr()
            guard inet_pton(AF_INET6, text, &a) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: a) { Array($0) }
            (isV6, value) = (true, bytes.reduce(0) { $0 << 8 | UInt128($1) })
        } else {
            var a = in_addr()
            guard inet_pton(AF_INET, text, &a) == 1 else { return nil }
            (isV6, value) = (false, UInt128(UInt32(bigEndian: a.s_addr)))
        }
    }

    /// Whether the CIDR `entry` (`10.0.0.0/8`, `fd00::/8`; a bare address is a host prefix) holds `ip`;
    /// false when `entry` does not read.
    static func cidr(_ entry: String, contains ip: ProxyIP) -> Bool {
        let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let network = ProxyIP(parts[0]) else { return false }
        let width = network.isV6 ? 128 : 32
        var length = width
        if parts.count == 2 {
            let digits = parts[1].utf8
            guard (1...3).contains(digits.count), digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let n = Int(parts[1]), n <= width
            else { return false }
            length = n
        }
        guard ip.isV6 == network.isV6 else { return false }
        if length == 0 { return true }
        let shift = UInt128(width - length)
        return ip.value >> shift == network.value >> shift
    }
}
