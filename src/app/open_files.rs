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

/// What the default assumes when the open-file limit cannot be read: the common soft limit.
const ASSUMED_LIMIT: u64 = 1024;

/// Raises the open-file soft limit to the hard limit (as most servers do at start: the soft
/// limit's common default, 1,024, is far below what a public server needs) and returns the soft
/// limit now in force; `None` when it can be neither raised nor read (warned).
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit ({e})");
            match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                Ok((soft, _)) => Some(soft),
                Err(e) => {
                    tracing::warn!("cannot read the open-file limit ({e})");
                    None
                }
            }
        }
    }
}

/// Descriptors needed besides the gateway's client connections: [`RESERVED`], and the embedded
/// sandbox's connections when it runs.
fn reserved(embedded_sandbox: bool) -> u64 {
    if embedded_sandbox {
        RESERVED + EMBEDDED_SANDBOX_CONNECTIONS as u64
    } else {
        RESERVED
    }
}

/// Raises the open-file limit ([`raise_nofile_limit`]) and returns the default connection cap it
/// leaves: the limit minus [`reserved`], within [`FLOOR`] and [`CEILING`] (1,024 is assumed for
/// a limit that cannot be read).
pub fn default_max_connections(embedded_sandbox: bool) -> usize {
    default_within(raise_nofile_limit(), embedded_sandbox)
}

fn default_within(limit: Option<u64>, embedded_sandbox: bool) -> usize {
    let limit = limit.unwrap_or_else(|| {
        tracing::warn!("assuming an open-file limit of {ASSUMED_LIMIT}");
        ASSUMED_LIMIT
    });
    let cap = limit
        .saturating_sub(reserved(embedded_sandbox))
        .min(CEILING);
    usize::try_from(cap).unwrap_or(FLOOR).max(FLOOR)
}

/// The gateway's connection cap: `configured`, or the default. The open-file limit is raised
/// either way: a configured cap once skipped the raise, so under systemd's soft 1,024 a cap of
/// 10,000 let clients take the descriptors the database, KCP and webhooks need, below the cap and
/// without a word. A configured cap the raised limit cannot hold besides [`reserved`] refuses to
/// start (only a limit that cannot be read lets it pass, as then nothing is known).
pub fn max_connections(
    configured: Option<usize>,
    embedded_sandbox: bool,
) -> Result<usize, TooFewOpenFiles> {
    let limit = raise_nofile_limit();
    match (configured, limit) {
        (None, limit) => Ok(default_within(limit, embedded_sandbox)),
        (Some(cap), Some(limit)) => {
            check_fits(cap, limit, embedded_sandbox)?;
            Ok(cap)
        }
        (Some(cap), None) => Ok(cap),
    }
}

/// A configured connection cap the open-file limit cannot hold.
#[derive(Debug, thiserror::Error)]
#[error(
    "OPENPORT_HTTP__MAX_CONNECTIONS ({cap}) needs {needed} open files with the {reserved} openport \
     keeps for {kept_for}, but the open-file limit is {limit}, raised to the hard limit: raise \
     the hard limit (systemd LimitNOFILE=, Docker --ulimit nofile=, ulimit -Hn) to at least \
     {needed}, or lower OPENPORT_HTTP__MAX_CONNECTIONS (this limit leaves room for {room} \
     connections; unset, it is what the limit leaves)"
)]
pub struct TooFewOpenFiles {
    cap: usize,
    needed: u64,
    reserved: u64,
    kept_for: &'static str,
    limit: u64,
    room: u64,
}

fn check_fits(cap: usize, limit: u64, embedded_sandbox: bool) -> Result<(), TooFewOpenFiles> {
    let reserved = reserved(embedded_sandbox);
    let needed = u64::try_from(cap)
        .unwrap_or(u64::MAX)
        .saturating_add(reserved);
    if needed <= limit {
        return Ok(());
    }
    Err(TooFewOpenFiles {
        cap,
        needed,
        reserved,
        kept_for: if embedded_sandbox {
            "the database, outgoing calls, files and the embedded sandbox's server"
        } else {
            "the database, outgoing calls and files"
        },
        limit,
        room: limit.saturating_sub(reserved),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests change and read this process's open-file limit: one at a time.
    static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn nofile() -> (u64, u64) {
        rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap()
    }

    #[test]
    fn the_default_leaves_room_for_the_sandbox_and_the_rest_and_never_falls_below_the_floor() {
        let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let with_sandbox = default_max_connections(true);
        let without = default_max_connections(false);
        assert!(with_sandbox >= FLOOR && without >= FLOOR);
        assert!(without as u64 <= CEILING);
        assert!(with_sandbox <= without);
        let (soft, _) = nofile();
        assert!(
            without as u64 + RESERVED <= soft.max(FLOOR as u64 + RESERVED),
            "{without} connections fit the open-file limit {soft}"
        );
    }

    /// Setting the cap once skipped the raise: under systemd's soft 1,024 a cap of 10,000 let
    /// clients take the descriptors the database, KCP and webhooks need.
    #[test]
    fn a_configured_cap_still_raises_the_open_file_soft_limit_to_the_hard_limit() {
        let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let (_, hard) = nofile();
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard - 1, hard).unwrap();
        assert_eq!(nofile(), (hard - 1, hard));
        assert_eq!(max_connections(Some(64), false).unwrap(), 64);
        assert_eq!(nofile(), (hard, hard), "raised to the hard limit");
    }

    #[test]
    fn a_configured_cap_the_open_file_limit_cannot_hold_refuses_to_start_naming_limitnofile() {
        // 512 descriptors are kept besides client connections, 1,024 more with the sandbox.
        assert!(check_fits(512, 1024, false).is_ok());
        assert!(check_fits(512, 2048, true).is_ok());
        for (cap, limit, sandbox) in [(513, 1024, false), (512, 2047, true), (10_000, 1024, false)]
        {
            let refused = check_fits(cap, limit, sandbox)
                .expect_err("more than the limit holds")
                .to_string();
            assert!(
                refused.contains("OPENPORT_HTTP__MAX_CONNECTIONS")
                    && refused.contains("LimitNOFILE=")
                    && refused.contains(&format!("open-file limit is {limit}")),
                "{cap} in {limit}: {refused}"
            );
        }

        let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let (_, hard) = nofile();
        let too_many = usize::try_from(hard).unwrap_or(usize::MAX);
        let refused = max_connections(Some(too_many), false).expect_err("the whole limit");
        assert!(refused.to_string().contains("LimitNOFILE="), "{refused}");
        assert!(
            max_connections(None, true).is_ok(),
            "the default always fits"
        );
    }
}
