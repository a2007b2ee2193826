//! A write that must not be given up on its first failure, tried again a few times a second
//! apart: the approval KCP gave ([`Gateway::record_paid`](super::Gateway::record_paid)), the end
//! of a billing-key issuance (service/key_issuances.rs). One failed write is not "the database
//! cannot record it": a PostgreSQL pool that cannot open a connection in time (the server at its
//! `max_connections` while a loaded host holds every connection longer, or its backends being
//! killed) fails the write only after its 30 s acquire timeout, or at once on a connection reset,
//! and the writes a moment later go through.

/// How many times such a write is tried. For an approval, before it is net-cancelled as one that
/// cannot be recorded: the buyer's approved charge, a subscription's among them, was cancelled
/// and its schedule left failed for want of one statement.
pub(crate) const RECORD_TRIES: u32 = 3;

/// The pause before a write is tried again: a brief outage (a connection reset, a server
/// restarting) is over, and a lease the retry renews is a later one than the failed try held
/// (leases are whole seconds).
pub(crate) const RECORD_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Tries `write` until it succeeds, at most [`RECORD_TRIES`] times, [`RECORD_RETRY_PAUSE`]
/// apart; `retrying` is told of each failure that is tried again (the next try's number and the
/// error), for the caller's WARN. The first success, or the last failure, with the `state` the
/// tries handed on. Each try is given the state the one before handed back, and its number (from
/// 1): `write` decides what a later try does differently (renew a lease first, keeping the
/// renewed one as the state) and what ends the tries with an answer of its own (`Ok`).
pub(crate) async fn retry_write<S, T, E, Try>(
    mut state: S,
    mut write: impl FnMut(S, u32) -> Try,
    mut retrying: impl FnMut(u32, &E),
) -> (S, Result<T, E>)
where
    Try: std::future::Future<Output = (S, Result<T, E>)>,
{
    let mut try_no = 1;
    loop {
        let (handed_on, result) = write(state, try_no).await;
        state = handed_on;
        match result {
            Ok(done) => return (state, Ok(done)),
            Err(e) if try_no >= RECORD_TRIES => return (state, Err(e)),
            Err(e) => {
                try_no += 1;
                retrying(try_no, &e);
                tokio::time::sleep(RECORD_RETRY_PAUSE).await;
            }
        }
    }
}
