/// The configuration file format of wg(8) (`wg setconf`, `wg showconf`), read into a `DeviceConfig`
/// with `wg setconf`'s meaning: the peers listed replace all peers, and each peer's allowed IPs replace its own.
public enum WireGuardConfigFile {
    public static func parse(_ text: String) throws(ConfigFileError) -> DeviceConfig {
        var config = DeviceConfig(replacePeers: true)
        var section = ""
        var peer: PeerConfig?
        func finishPeer() throws(ConfigFileError) {
            guard let p = peer else { return }
            config.peers.append(p)
            peer = nil
        }
        // Lines and comments are found on UTF-8 bytes: Character-level splitting is ten times slower.
        for (number, bytes) in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let content = bytes.firstIndex(of: UInt8(ascii: "#")).map { bytes[..<$0] } ?? bytes
            let line = Substring(content).trimmingWhitespace
            if line.isEmpty { continue }
            let lineNumber = number + 1
            if line.hasPrefix("[") {
                try finishPeer()
                section = line.lowercased()
                guard section == "[interface]" || section == "[peer]" else { throw .unknownSection(line: lineNumber, line) }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { throw .malformedLine(line: lineNumber, line) }
            let key = String(line[..<eq]).trimmingWhitespace.lowercased()
            let value = String(line[line.index(after: eq)...]).trimmingWhitespace
            do {
                switch (section, key) {
                case ("[interface]", "privatekey"): config.privateKey = try WireGuardKey(base64: value)
                case ("[interface]", "listenport"): config.listenPort = try number16(value)
                case ("[interface]", "fwmark"):
                    if value == "off" { config.firewallMark = 0 } else {
                        guard let m = value.hasPrefix("0x") ? UInt32(value.dropFirst(2), radix: 16) : UInt32(value) else { throw ConfigFileError.badValue(line: lineNumber, key: key, value) }
                        config.firewallMark = m
                    }
                case ("[peer]", "publickey"):
                    if let p = peer, p.publicKey != WireGuardKey.zero { throw ConfigFileError.badValue(line: lineNumber, key: "PublicKey (second one in one [Peer])", value) }
                    var p = peer ?? PeerConfig(publicKey: .zero, replaceAllowedIPs: true)
                    p.publicKey = try WireGuardKey(base64: value)
                    peer = p
                case ("[peer]", _) where peer == nil:
                    throw ConfigFileError.peerWithoutKey(line: lineNumber)
                case ("[peer]", "presharedkey"): peer!.presharedKey = try WireGuardKey(base64: value)
                case ("[peer]", "endpoint"): peer!.endpoint = try Endpoint(value)
                case ("[peer]", "persistentkeepalive"): peer!.persistentKeepalive = value == "off" ? 0 : try number16(value)
                case ("[peer]", "allowedips"):
                    for item in value.split(separator: ",") where !item.trimmingWhitespace.isEmpty {
                        peer!.allowedIPs.append(try IPPrefix(item.trimmingWhitespace))
                    }
                default:
                    throw ConfigFileError.unknownKey(line: lineNumber, section: section.isEmpty ? "(none)" : section, key)
                }
            } catch let e as ConfigFileError {
                throw e
            } catch {
                throw .badValue(line: lineNumber, key: key, "\(error)")
            }
            func number16(_ s: String) throws(ConfigFileError) -> UInt16 {
                guard let n = UInt16(s) else { throw .badValue(line: lineNumber, key: key, s) }
                return n
            }
        }
        try finishPeer()
        return config
    }
}

/// Why a wg(8) configuration file was rejected.
public enum ConfigFileError: Error, Equatable, CustomStringConvertible {
    case unknownSection(line: Int, String)
    case malformedLine(line: Int, String)
    case unknownKey(line: Int, section: String, String)
    case badValue(line: Int, key: String, String)
    case peerWithoutKey(line: Int)

    public var description: String {
        switch self {
        case .unknownSection(let l, let s): return "line \(l): unknown section \(s): use [Interface] or [Peer]"
        case .malformedLine(let l, let s): return "line \(l): \"\(s)\" is not Key = Value"
        case .unknownKey(let l, let section, let k): return "line \(l): \(k) is not a key of \(section) (see wg(8), CONFIGURATION FILE FORMAT)"
        case .badValue(let l, let k, let v): return "line \(l): bad value for \(k): \(v)"
        case .peerWithoutKey(let l): return "line \(l): a [Peer] must start with its PublicKey"
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing ASCII whitespace.
    var trimmingWhitespace: String {
        let s = Substring(self)
        let u = s.utf8
        func space(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0d || c == 0x0a }
        var start = u.startIndex, end = u.endIndex
        while start < end, space(u[start]) { start = u.index(after: start) }
        while end > start, space(u[u.index(before: end)]) { end = u.index(before: end) }
        return String(s[start..<end])
    }
}
