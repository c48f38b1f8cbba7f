import WGMeshCore

/// The configuration file format of wg(8) (`wg setconf`, `wg showconf`), read into a `DeviceConfig`
/// with `wg setconf`'s meaning: the peers listed replace all peers, and each peer's allowed IPs replace its own.
enum WireGuardConfigFile {
    static func parse(_ text: String) throws(ConfigFileError) -> DeviceConfig {
        var text = text
        return try text.withUTF8 { bytes in Result { () throws(ConfigFileError) in try parse(utf8: bytes) } }.get()
    }

    private enum Section: String { case none = "(none)", interface = "[interface]", peer = "[peer]" }
    private enum Key: String, CaseIterable {
        case privateKey = "privatekey", listenPort = "listenport", firewallMark = "fwmark"
        case publicKey = "publickey", presharedKey = "presharedkey", endpoint = "endpoint"
        case persistentKeepalive = "persistentkeepalive", allowedIPs = "allowedips"
        var section: Section {
            switch self {
            case .privateKey, .listenPort, .firewallMark: return .interface
            case .publicKey, .presharedKey, .endpoint, .persistentKeepalive, .allowedIPs: return .peer
            }
        }
    }

    /// The parser proper, on the file's bytes: lines, keys and values are byte ranges, and a String is
    /// made only for an error message (String slicing made parsing most of a large `setconf`'s time).
    static func parse(utf8 b: UnsafeBufferPointer<UInt8>) throws(ConfigFileError) -> DeviceConfig {
        var config = DeviceConfig(replacePeers: true)
        var section = Section.none
        var peer: PeerConfig?
        func text(_ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0d }
        func trimmed(_ r: Range<Int>) -> Range<Int> {
            var lo = r.lowerBound
            var hi = r.upperBound
            while lo < hi, isSpace(b[lo]) { lo += 1 }
            while hi > lo, isSpace(b[hi - 1]) { hi -= 1 }
            return lo..<hi
        }
        /// ASCII case-insensitive comparison with a lower-case word.
        func matches(_ r: Range<Int>, _ word: String) -> Bool {
            guard r.count == word.utf8.count else { return false }
            return zip(b[r], word.utf8).allSatisfy { c, w in (c >= 0x41 && c <= 0x5a ? c | 0x20 : c) == w }
        }
        var lineStart = 0
        var lineNumber = 0
        while lineStart < b.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < b.count, b[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            var contentEnd = lineStart
            while contentEnd < lineEnd, b[contentEnd] != UInt8(ascii: "#") { contentEnd += 1 }
            let line = trimmed(lineStart..<contentEnd)
            if line.isEmpty { continue }
            if b[line.lowerBound] == UInt8(ascii: "[") {
                if let p = peer {
                    config.peers.append(p)
                    peer = nil
                }
                if matches(line, Section.peer.rawValue) {
                    section = .peer
                } else if matches(line, Section.interface.rawValue) {
                    section = .interface
                } else {
                    throw .unknownSection(line: lineNumber, text(line))
                }
                continue
            }
            guard let eq = b[line].firstIndex(of: UInt8(ascii: "=")) else {
                throw .malformedLine(line: lineNumber, text(line))
            }
            let keyRange = trimmed(line.lowerBound..<eq)
            let valueRange = trimmed(eq + 1..<line.upperBound)
            let value = b[valueRange]
            guard let key = Key.allCases.first(where: { matches(keyRange, $0.rawValue) }), key.section == section else {
                throw .unknownKey(line: lineNumber, section: section.rawValue, text(keyRange).lowercased())
            }
            func bad(_ detail: String? = nil) -> ConfigFileError {
                .badValue(line: lineNumber, key: key.rawValue, detail ?? text(valueRange))
            }
            func number<N: FixedWidthInteger>(_ radix: Int = 10, dropping prefix: Int = 0) throws(ConfigFileError) -> N
            {
                guard let n = N(text(valueRange.dropFirst(prefix)), radix: radix) else { throw bad() }
                return n
            }
            func isOff() -> Bool { matches(valueRange, "off") }
            if section == .peer, key != .publicKey, peer == nil { throw .peerWithoutKey(line: lineNumber) }
            do {
                switch key {
                case .privateKey: config.privateKey = try WireGuardKey(base64UTF8: value)
                case .listenPort: config.listenPort = try number()
                case .firewallMark:
                    config.firewallMark =
                        isOff() ? 0 : matches(valueRange.prefix(2), "0x") ? try number(16, dropping: 2) : try number()
                case .publicKey:
                    if let p = peer, p.publicKey != WireGuardKey.zero {
                        throw ConfigFileError.badValue(
                            line: lineNumber, key: "PublicKey (second one in one [Peer])", text(valueRange))
                    }
                    var p = peer ?? PeerConfig(publicKey: .zero, replaceAllowedIPs: true)
                    p.publicKey = try WireGuardKey(base64UTF8: value)
                    peer = p
                case .presharedKey: peer!.presharedKey = try WireGuardKey(base64UTF8: value)
                case .endpoint: peer!.endpoint = try Endpoint.parse(utf8: value)
                case .persistentKeepalive: peer!.persistentKeepalive = isOff() ? 0 : try number()
                case .allowedIPs:
                    var start = valueRange.lowerBound
                    while start <= valueRange.upperBound {
                        var end = start
                        while end < valueRange.upperBound, b[end] != UInt8(ascii: ",") { end += 1 }
                        let item = trimmed(start..<end)
                        if !item.isEmpty { peer!.allowedIPs.append(try IPPrefix.parse(utf8: b[item])) }
                        start = end + 1
                    }
                }
            } catch let e as ConfigFileError {
                throw e
            } catch {
                throw bad("\(error)")
            }
        }
        if let p = peer { config.peers.append(p) }
        return config
    }
}

/// Why a wg(8) configuration file was rejected.
enum ConfigFileError: Error, Equatable, CustomStringConvertible {
    case unknownSection(line: Int, String)
    case malformedLine(line: Int, String)
    case unknownKey(line: Int, section: String, String)
    case badValue(line: Int, key: String, String)
    case peerWithoutKey(line: Int)

    var description: String {
        switch self {
        case .unknownSection(let l, let s): return "line \(l): unknown section \(s): use [Interface] or [Peer]"
        case .malformedLine(let l, let s): return "line \(l): \"\(s)\" is not Key = Value"
        case .unknownKey(let l, let section, let k):
            return "line \(l): \(k) is not a key of \(section) (see wg(8), CONFIGURATION FILE FORMAT)"
        case .badValue(let l, let k, let v): return "line \(l): bad value for \(k): \(v)"
        case .peerWithoutKey(let l): return "line \(l): a [Peer] must start with its PublicKey"
        }
    }
}
