//! How many client connections the gateway keeps open: bounded by the process's open-file limit,
//! which the clients share with everything else the process needs a descriptor for.
//!
//! Without a cap, clients holding connections open (slow ones until their timeouts, or simply many
//! of them) could take every descriptor: then the database pool cannot reconnect, KCP cannot be
//! called and webhooks cannot be sent, for every merchant. With the cap, the surplus waits in the
//! kernel's listen backlog while everything already accepted keeps working.

/// Connections the embedded KCP sandbox's server keeps open at most: its only clients are this
/// process's KCP client and, in tests, the harness.
pub const EMBEDDED_SANDBOX_CONNECTIONS: usize = 1024;

/// Descriptors kept for what is not a client connection: the database pool, the KCP and webhook
/// clients' connections, SQLite's files, the listeners, the log.
const RESERVED: u64 = 512;

/// The fewest connections the default allows, however low the open-file limit: a gateway that
/// serves fewer is not worth starting, and a limit that low is a configuration to fix
/// (docs/operations.md).
const FLOOR: usize = 64;

/// The default is never more than this: each open connection costs memory too.
const CEILING: u64 = 100_000;

/// Raises the open-file soft limit to the hard limit (as most servers do at start: the soft
/// limit's common default, 1,024, is far below what a public server needs) and returns the
/// default connection cap it leaves: the limit minus the embedded sandbox's connections (when it
/// runs) and [`RESERVED`].
pub fn default_max_connections(embedded_sandbox: bool) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit ({e}); assuming 1024");
            1024
        }
    };
    let sandbox = if embedded_sandbox {
        EMBEDDED_SANDBOX_CONNECTIONS as u64
    } else {
        0
    };
    let cap = limit.saturating_sub(sandbox + RESERVED).min(CEILING);
    usize::try_from(cap).unwrap_or(FLOOR).max(FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_room_for_the_sandbox_and_the_rest_and_never_falls_below_the_floor() {
        let with_sandbox = default_max_connections(true);
        let without = default_max_connections(false);
        assert!(with_sandbox >= FLOOR && without >= FLOOR);
        assert!(without as u64 <= CEILING);
        assert!(with_sandbox <= without);
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert!(
            without as u64 + RESERVED <= soft.max(FLOOR as u64 + RESERVED),
            "{without} connections fit the open-file limit {soft}"
        );
    }
}
