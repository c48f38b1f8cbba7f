// The agent benchmark's driver (scripts/bench-agent.sh runs it; not shipped). It plays the cluster
// around one `wgmesh agent`: the other Nodes, the controller's keys for the agent's own Node, and a
// stream of annotation changes; and it reads the netlink capture (nlmon) of the agent's network
// namespace to tell when each change reached the kernel and how many messages it took.
//
//   BenchAgent populate KUBECONFIG COUNT CONF   COUNT peer Nodes, fully annotated, and the agent's own
//                                               Node; CONF gets the same peers as a `wg setconf` file
//   BenchAgent enroll KUBECONFIG                the agent's own keypair, sealed to its enrollment key
//   BenchAgent changes KUBECONFIG COUNT N OUT   N endpoint changes, one per second; OUT: "time node endpoint"
//   BenchAgent analyse PCAP CHANGES HUP OUT     per change: write → last netlink reply, requests; the
//                                               full pass after SIGHUP (sent at time HUP); OUT gets
//                                               "median_ms resync_ms" for the script's ratios
import Foundation
import Kube
import WGMeshCore

let localNode = "bench-node"
let arguments = Array(CommandLine.arguments.dropFirst())

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("BenchAgent: \(message)\n".utf8))
    exit(2)
}

func client(_ kubeconfig: String) throws -> KubeClient {
    try KubeClient(config: KubeConfig.load(kubeconfig: kubeconfig))
}

/// Peer i: its Pod CIDR in 10.0.0.0/8 (the agent's own is 10.255.255.0/24) and an endpoint in the
/// benchmarking range 198.18.0.0/15 (RFC 2544), never on any network.
func podCIDR(_ i: Int) -> String { "10.\(i >> 8).\(i & 255).0/24" }
func endpoint(_ i: Int, port: Int = 51820) -> String { "198.18.\(i >> 8).\(i & 255):\(port)" }
func annotations(_ object: KubeObject) -> [String: String] { object.metadata.annotations }
func now() -> Double { Date().timeIntervalSince1970 }

func node(_ name: String, address: String, annotations: [String: String]) -> JSON {
    .object([
        "apiVersion": "v1", "kind": "Node",
        "metadata": .object(["name": .string(name), "annotations": .object(annotations.mapValues { .string($0) })]),
        "status": .object(["addresses": .array([.object(["type": "InternalIP", "address": .string(address)])])]),
    ])
}

func populate(_ kubeconfig: String, count: Int, conf: String) async throws {
    let api = try client(kubeconfig)
    // The other nodes' sealed keys are never opened here: one sealed box of the real size stands for all.
    let stand = WireGuardKeyPair.generate()
    let sealed = try SealedKey.seal(
        WireGuardKeyPair.generate().privateKey, to: stand.publicKey, nodeName: "peer", generation: 1
    ).base64
    let issued = RFC3339.format(Date())
    var config = "[Interface]\nPrivateKey = \(WireGuardKeyPair.generate().privateKey.base64)\nListenPort = 51821\n"
    let started = now()
    _ = try await api.create(
        .nodes, namespace: nil,
        node(
            localNode, address: "192.0.2.1",
            annotations: [
                Annotation.podCIDRs: "10.255.255.0/24", Annotation.endpoint: "192.0.2.1:51820",
            ]))
    let keys = (0..<count).map { _ in WireGuardKeyPair.generate().publicKey }
    try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<count {
            if i >= 8 { try await group.next() }
            group.addTask {
                _ = try await api.create(
                    .nodes, namespace: nil,
                    node(
                        "peer-\(i)", address: "198.18.\(i >> 8).\(i & 255)",
                        annotations: [
                            Annotation.podCIDRs: podCIDR(i), Annotation.endpoint: endpoint(i),
                            Annotation.publicKey: keys[i].base64,
                            Annotation.sealedPrivateKey: sealed, Annotation.sealedTo: stand.publicKey.base64,
                            Annotation.keyGeneration: "1",
                            Annotation.keyIssuedAt: issued, Annotation.enrollmentKey: stand.publicKey.base64,
                            Annotation.appliedKeyGeneration: "1",
                        ]))
            }
        }
        try await group.waitForAll()
    }
    for i in 0..<count {
        config +=
            """
            \n[Peer]\nPublicKey = \(keys[i].base64)\nAllowedIPs = \(podCIDR(i))\nEndpoint = \
            \(endpoint(i))\nPersistentKeepalive = 25\n
            """
    }
    try config.write(toFile: conf, atomically: true, encoding: .utf8)
    print(String(format: "bench-agent: %d Nodes created in %.1f s", count + 1, now() - started))
    try await api.shutdown()
}

func enroll(_ kubeconfig: String) async throws {
    let api = try client(kubeconfig)
    var enrollment: WireGuardKey?
    while enrollment == nil {
        if let text = annotations(try await api.get(.nodes, namespace: nil, name: localNode))[Annotation.enrollmentKey]
        {
            enrollment = try WireGuardKey(base64: text)
        } else {
            try await Task.sleep(for: .milliseconds(200))
        }
    }
    let pair = WireGuardKeyPair.generate()
    let sealed = try SealedKey.seal(pair.privateKey, to: enrollment!, nodeName: localNode, generation: 1)
    _ = try await api.patch(
        .nodes, namespace: nil, name: localNode,
        .annotations([
            Annotation.publicKey: pair.publicKey.base64,
            Annotation.sealedPrivateKey: sealed.base64,
            Annotation.sealedTo: enrollment!.base64, Annotation.keyGeneration: "1",
            Annotation.keyIssuedAt: RFC3339.format(Date()),
        ]))
    try await api.shutdown()
}

func changes(_ kubeconfig: String, count: Int, changes: Int, out: String) async throws {
    let api = try client(kubeconfig)
    var lines = ""
    var next = now().rounded(.up) + 1
    for k in 0..<changes {
        try await Task.sleep(for: .milliseconds(Int64(max(0, next - now()) * 1000)))
        next += 1
        let i = (k * 997) % count
        let moved = endpoint(i, port: 52000 + k)
        let written = now()
        _ = try await api.patch(
            .nodes, namespace: nil, name: "peer-\(i)",
            .annotations([Annotation.endpoint: moved]))
        lines += String(format: "%.6f peer-%d %@\n", written, i, moved)
    }
    try lines.write(toFile: out, atomically: true, encoding: .utf8)
    try await api.shutdown()
}

/// One netlink message from the capture: when, whether userspace sent it (a request) or the kernel, its
/// sequence number and port ID (a reply carries its request's), and the endpoint ports it sets.
struct Captured {
    var time: Double
    var request: Bool
    var sequence: UInt32
    var portID: UInt32
    var endpointPorts: Set<Int>
}

/// The ports of the WireGuard endpoints a message sets: each WGPEER_A_ENDPOINT attribute (type 4) holds a
/// sockaddr_in (attribute length 20, family AF_INET 2) or sockaddr_in6 (length 32, family AF_INET6 10), its
/// port in network order. Found by their bytes, at the attributes' 4-byte alignment.
func endpointPorts(_ data: [UInt8], _ range: Range<Int>) -> Set<Int> {
    var ports: Set<Int> = []
    var at = range.lowerBound
    while at + 8 <= range.upperBound {
        let length = Int(data[at]) | Int(data[at + 1]) << 8
        let type = Int(data[at + 2]) | Int(data[at + 3]) << 8
        let family = Int(data[at + 4]) | Int(data[at + 5]) << 8
        if type == 4 && (length == 20 && family == 2 || length == 32 && family == 10) {
            ports.insert(Int(data[at + 6]) << 8 | Int(data[at + 7]))
        }
        at += 4
    }
    return ports
}

/// tcpdump's file on an nlmon device: pcap, link type NETLINK (253), each packet a 16-byte cooked
/// header and one or more netlink messages (a batch, as nftables sends, is several).
func readCapture(_ path: String) throws -> [Captured] {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    func u32(_ at: Int, little: Bool) -> UInt32 {
        let b = data[at..<at + 4].map(UInt32.init)
        return little ? b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24 : b[3] | b[2] << 8 | b[1] << 16 | b[0] << 24
    }
    guard data.count >= 24 else { fail("\(path): not a pcap file") }
    let magic = u32(0, little: true)
    let little = magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d
    let nanos = magic == 0xa1b2_3c4d || magic == 0x4d3c_b2a1
    guard little || magic == 0xd4c3_b2a1 || magic == 0x4d3c_b2a1 else { fail("\(path): not a pcap file") }
    guard u32(20, little: little) == 253 else {
        fail("\(path): link type \(u32(20, little: little)), not NETLINK (253)")
    }
    var out: [Captured] = []
    var at = 24
    while at + 16 <= data.count {
        let time = Double(u32(at, little: little)) + Double(u32(at + 4, little: little)) / (nanos ? 1e9 : 1e6)
        let length = Int(u32(at + 8, little: little))
        let packet = at + 16
        at = packet + length
        guard at <= data.count, length >= 16 else { break }
        // Netlink messages are host order (little endian here) after the cooked header.
        var m = packet + 16
        while m + 16 <= packet + length {
            let size = Int(u32(m, little: true))
            let flags = Int(data[m + 6]) | Int(data[m + 7]) << 8
            let end = min(m + max(size, 16), packet + length)
            out.append(
                Captured(
                    time: time, request: flags & 0x1 != 0, sequence: u32(m + 8, little: true),
                    portID: u32(m + 12, little: true), endpointPorts: endpointPorts(data, m + 16..<end)))
            guard size >= 16 else { break }
            m += (size + 3) & ~3
        }
    }
    return out
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func analyse(pcap: String, changesFile: String, hangup: Double, figures: String) throws {
    let messages = try readCapture(pcap)
    // Each line: the write's time, the node, the endpoint written (its port is the change's own).
    let writes: [(time: Double, port: Int)] = try String(contentsOfFile: changesFile, encoding: .utf8)
        .split(separator: "\n").compactMap {
            let fields = $0.split(separator: " ")
            guard fields.count == 3, let time = Double(fields[0]), let port = fields[2].split(separator: ":").last
            else { return nil }
            return Int(port).map { (time, $0) }
        }
    var latencies: [Double] = []
    var requests: [Int] = []
    var missed = 0
    for (written, port) in writes {
        // The change is in the kernel when the kernel answers the request that set its endpoint: the first
        // reply after it with its sequence number (and its port ID, where the request named one: userspace
        // usually leaves it 0, and the kernel's reply carries the socket's).
        let sets = { (m: Captured) in m.request && m.time >= written && m.endpointPorts.contains(port) }
        guard
            let set = messages.firstIndex(where: sets),
            let reply = messages[set...].first(where: {
                !$0.request && $0.sequence == messages[set].sequence
                    && (messages[set].portID == 0 || $0.portID == messages[set].portID)
            })
        else {
            missed += 1
            continue
        }
        latencies.append((reply.time - written) * 1000)
        // What the change cost: every request the agent sent from the write to that reply.
        requests.append(messages.filter { $0.request && $0.time >= written && $0.time <= reply.time }.count)
    }
    let pass = messages.filter { $0.time >= hangup }
    print(
        String(
            format:
                """
                bench-agent: changes: %d; API write → kernel (the reply to the request that set its endpoint): \
                median %.1f ms, max %.1f ms (goal: median ≤ 100 ms)%@
                """,
            writes.count, median(latencies), latencies.max() ?? .nan,
            missed > 0 ? " — \(missed) never set in the kernel (no request carried its endpoint port)" : ""))
    print(
        String(
            format: "bench-agent: netlink requests from a change's write to its reply: median %.0f, max %d (goal: 1)",
            median(requests.map(Double.init)), requests.max() ?? 0))
    if let end = pass.last {
        print(
            String(
                format:
                    "bench-agent: full resync (SIGHUP): %.0f ms to its last netlink reply, %d requests, %d messages",
                (end.time - hangup) * 1000, pass.filter(\.request).count, pass.count))
    } else {
        print("bench-agent: full resync (SIGHUP): no netlink traffic captured after the signal")
    }
    // For the script's table: median and max of a change, the full resync, the changes over 1 s or never in
    // the kernel, and the median requests per change.
    let late = latencies.filter { $0 > 1000 }.count + missed
    try String(
        format: "%.3f %.3f %.3f %d %.0f\n", median(latencies), latencies.max() ?? .nan,
        ((pass.last?.time ?? .nan) - hangup) * 1000, late, median(requests.map(Double.init))
    ).write(toFile: figures, atomically: true, encoding: .utf8)
}

do {
    switch (arguments.first, arguments.count) {
    case ("populate", 4): try await populate(arguments[1], count: Int(arguments[2]) ?? 5000, conf: arguments[3])
    case ("enroll", 2): try await enroll(arguments[1])
    case ("changes", 5):
        try await changes(
            arguments[1], count: Int(arguments[2]) ?? 5000, changes: Int(arguments[3]) ?? 60, out: arguments[4])
    case ("analyse", 5):
        try analyse(
            pcap: arguments[1], changesFile: arguments[2], hangup: Double(arguments[3]) ?? 0, figures: arguments[4])
    default: fail("usage: see the comment at the top of Sources/BenchAgent/main.swift")
    }
} catch {
    fail("\(error)")
}
