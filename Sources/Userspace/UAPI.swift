import WGMeshCore

/// WireGuard's cross-platform configuration protocol (wireguard.com/xplatform), as `wireguard-go`
/// speaks it on `/var/run/wireguard/NAME.sock`: `key=value` lines, keys in lowercase hex, a blank line
/// to end a request, and `errno=N` to end every answer. Same meaning as the generic-netlink messages.
enum UAPI {
    /// The `set=1` request for `config`.
    static func setRequest(_ config: DeviceConfig) -> String {
        var out = "set=1\n"
        if let k = config.privateKey { out += "private_key=\(hex(k))\n" }
        if let p = config.listenPort { out += "listen_port=\(p)\n" }
        if let m = config.firewallMark { out += "fwmark=\(m)\n" }
        if config.replacePeers { out += "replace_peers=true\n" }
        for peer in config.peers {
            out += "public_key=\(hex(peer.publicKey))\n"
            if peer.remove {
                out += "remove=true\n"
                continue
            }
            if peer.updateOnly { out += "update_only=true\n" }
            if let psk = peer.presharedKey { out += "preshared_key=\(hex(psk))\n" }
            if let e = peer.endpoint { out += "endpoint=\(e)\n" }
            if let k = peer.persistentKeepalive { out += "persistent_keepalive_interval=\(k)\n" }
            if peer.replaceAllowedIPs { out += "replace_allowed_ips=true\n" }
            for ip in peer.allowedIPs { out += "allowed_ip=\(ip.canonical)\n" }
        }
        return out + "\n"
    }

    /// The `get=1` request.
    static let getRequest = "get=1\n\n"

    /// Why an answer could not be read, or what the implementation refused.
    struct Failure: Error, Equatable, CustomStringConvertible {
        var errno: Int32?
        var message: String
        var description: String { errno.map { "\(message) (errno \($0))" } ?? message }
    }

    /// The errno an answer ends with (0: success).
    static func errno(of answer: String) throws(Failure) -> Int32 {
        guard let line = answer.split(separator: "\n").last(where: { $0.hasPrefix("errno=") }),
            let n = Int32(line.dropFirst(6))
        else {
            throw Failure(errno: nil, message: "the answer has no errno= line")
        }
        return n
    }

    /// The device from a `get=1` answer.
    static func device(named name: String, from answer: String) throws(Failure) -> DeviceState {
        var device = DeviceState(name: name)
        var peer: PeerState?
        func finish() { if let p = peer { device.peers.append(p) } }
        for line in answer.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else {
                throw Failure(errno: nil, message: "line \"\(line)\" is not key=value")
            }
            let key = line[..<eq]
            let value = line[line.index(after: eq)...]
            func bad() -> Failure { Failure(errno: nil, message: "\(key)=\(value) cannot be read") }
            switch key {
            case "errno":
                guard let n = Int32(value) else { throw bad() }
                if n != 0 { throw Failure(errno: n, message: "get refused") }
            case "private_key":
                guard let k = key32(value) else { throw bad() }
                device.privateKey = k.isZero ? nil : k
                device.publicKey = k.isZero ? nil : try? WireGuardKeyPair(privateKey: k).publicKey
            case "listen_port":
                guard let p = UInt16(value) else { throw bad() }
                device.listenPort = p
            case "fwmark":
                guard let m = UInt32(value) else { throw bad() }
                device.firewallMark = m
            case "public_key":
                finish()
                guard let k = key32(value) else { throw bad() }
                peer = PeerState(publicKey: k)
            default:
                guard peer != nil else { continue }  // device keys this code does not use
                switch key {
                case "preshared_key":
                    guard let k = key32(value) else { throw bad() }
                    peer!.presharedKey = k.isZero ? nil : k
                case "endpoint":
                    guard let e = try? Endpoint(value) else { throw bad() }
                    peer!.endpoint = e
                case "persistent_keepalive_interval":
                    guard let k = UInt16(value) else { throw bad() }
                    peer!.persistentKeepalive = k
                case "allowed_ip":
                    guard let ip = try? IPPrefix(value) else { throw bad() }
                    peer!.allowedIPs.append(ip)
                case "last_handshake_time_sec":
                    guard let s = Int64(value) else { throw bad() }
                    peer!.lastHandshakeSeconds = s
                case "last_handshake_time_nsec":
                    guard let n = Int64(value) else { throw bad() }
                    peer!.lastHandshakeNanoseconds = n
                case "rx_bytes":
                    guard let b = UInt64(value) else { throw bad() }
                    peer!.receivedBytes = b
                case "tx_bytes":
                    guard let b = UInt64(value) else { throw bad() }
                    peer!.transmittedBytes = b
                case "protocol_version":
                    guard let v = UInt32(value) else { throw bad() }
                    peer!.protocolVersion = v
                default:
                    continue  // newer keys are skipped, as wg(8) does
                }
            }
        }
        finish()
        return device
    }

    static func hex(_ key: WireGuardKey) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in key.bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func key32(_ text: Substring) -> WireGuardKey? {
        let u = Array(text.utf8)
        guard u.count == 64 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexValue(u[i]), let lo = hexValue(u[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
        }
        return try? WireGuardKey(bytes: bytes)
    }

    /// The value of one hex digit, either case.
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
