import ArgumentParser
import WGMeshCore
#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The flags the commands share, parsed one way.
enum Flags {
    /// The outside peers' address ranges when `--peer-cidr` is not given: inside neither the default cluster
    /// CIDR (10.244.0.0/16) nor kubeadm's default Service CIDR (10.96.0.0/12).
    static let defaultPeerCIDRs = "10.250.0.0/16"

    /// `--peer-cidr` values: at most one range per family, outside the cluster CIDRs; an empty value gives none.
    static func peerCIDRs(_ values: [String], clusterCIDRs: [IPPrefix]) throws -> [IPPrefix] {
        let ranges = try self.clusterCIDRs(values.filter { !$0.isEmpty }, flag: "--peer-cidr")
        do { _ = try PeerIssuance(peerCIDRs: ranges, clusterCIDRs: clusterCIDRs) } catch {
            throw ValidationError("\(error)")
        }
        return ranges
    }

    /// `--cluster-cidr` (or `--peer-cidr`) values, each one CIDR or several separated by commas, none with host
    /// bits set.
    static func clusterCIDRs(_ values: [String], flag: String = "--cluster-cidr") throws -> [IPPrefix] {
        var cidrs: [IPPrefix] = []
        for text in values {
            let listed: [IPPrefix]
            do { listed = try IPPrefix.list(text) } catch { throw ValidationError("\(flag) \(text): \(error)") }
            for cidr in listed where !cidr.isCanonical {
                throw ValidationError("\(flag) \(text): \(cidr) has host bits set; write \(cidr.canonical)")
            }
            cidrs += listed
        }
        return cidrs
    }

    /// `10s`, `5m`, `720h`, `1h30m`, or plain seconds.
    static func seconds(_ text: String, flag: String, allowZero: Bool = false) throws -> TimeInterval {
        if let plain = Double(text), plain >= 0, plain > 0 || allowZero { return plain }
        var total = 0.0
        var number = ""
        for c in text {
            if c.isNumber || c == "." {
                number.append(c)
                continue
            }
            let unit: Double
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            default: throw ValidationError("\(flag) \(text): use a duration such as 10s, 5m or 720h")
            }
            guard let n = Double(number) else {
                throw ValidationError("\(flag) \(text): use a duration such as 10s, 5m or 720h")
            }
            total += n * unit
            number = ""
        }
        guard number.isEmpty, total > 0 || (allowZero && total == 0 && !text.isEmpty) else {
            throw ValidationError("\(flag) \(text): use a duration such as 10s, 5m or 720h")
        }
        return total
    }

    /// `:9586` (host nil: every address), `127.0.0.1:9586`, `[::1]:9586`.
    static func bindAddress(_ text: String, flag: String = "--metrics-bind-address", example: Int = 9586) throws -> (
        String?, Int
    ) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ValidationError("\(flag) \(text): use host:port, for example :\(example) or 127.0.0.1:\(example)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? nil : host, port)
    }
}

/// `--backend`: the WireGuard backend the agent uses, or the one `wgmesh userspace-device` provides for it.
enum Backend: String, ExpressibleByArgument, CaseIterable, Sendable {
    case auto, kernel, userspace

    /// The flag's value, refused with the values it may take.
    static func parse(_ text: String) throws -> Backend {
        guard let backend = Backend(rawValue: text) else {
            throw ValidationError("--backend \(text) is not one of auto, kernel, userspace")
        }
        return backend
    }
}
