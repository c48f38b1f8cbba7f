import CNftables
import Synchronization
import WGMeshCore

/// wgmesh's nftables table, written through libnftables: a whole ruleset in one transaction, as
/// kube-proxy's nftables mode does, so the kernel never holds half of it.
public protocol PacketFilter: Sendable {
    /// Replaces wgmesh's table with `ruleset` (`nft -f` syntax) atomically.
    func apply(_ ruleset: String) throws
    /// Removes wgmesh's table if it exists.
    func remove() throws
    /// Packets and bytes counted as about to leave unencrypted; nil when the table is not there.
    func unencrypted() throws -> (packets: UInt64, bytes: UInt64)?
}

/// Why nftables refused a command.
public struct NFTablesError: Error, CustomStringConvertible {
    public var operation: String
    public var message: String
    public var description: String { "nftables: \(operation) failed: \(message)" }
}

/// libnftables in this process's network namespace (the agent runs in the host's).
public final class NFTables: PacketFilter {
    // libnftables keeps global state per context and is not documented as thread-safe: one call at a time.
    private let lock = Mutex(())

    public init() {}

    public func apply(_ ruleset: String) throws {
        _ = try run(ruleset, json: false, operation: "replace table inet \(FirewallRuleset.table)")
    }

    public func remove() throws {
        _ = try run(FirewallRuleset.removal, json: false, operation: "delete table inet \(FirewallRuleset.table)")
    }

    public func unencrypted() throws -> (packets: UInt64, bytes: UInt64)? {
        let listing = "list counter inet \(FirewallRuleset.table) \(FirewallRuleset.counterName)"
        guard let out = try? run(listing, json: true, operation: listing) else { return nil }
        return FirewallRuleset.counter(fromJSON: out)
    }

    /// Runs one `nft` input and returns its output; a failure carries nftables' own message.
    func run(_ input: String, json: Bool, operation: String) throws -> String {
        try lock.withLock { _ throws(NFTablesError) -> String in
            guard let ctx = nft_ctx_new(0) else {
                throw NFTablesError(operation: operation, message: "cannot create a libnftables context")
            }
            defer { nft_ctx_free(ctx) }
            if json { nft_ctx_output_set_flags(ctx, UInt32(NFT_CTX_OUTPUT_JSON)) }
            _ = nft_ctx_buffer_output(ctx)
            _ = nft_ctx_buffer_error(ctx)
            let rc = nft_run_cmd_from_buffer(ctx, input)
            let output = nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
            if rc != 0 {
                let error = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? ""
                throw NFTablesError(
                    operation: operation, message: error.isEmpty ? "exit status \(rc)" : error.trimmingLastNewline)
            }
            return output
        }
    }
}

extension String {
    var trimmingLastNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
