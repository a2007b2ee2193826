//! Pure types and rules of the payment domain. No I/O here.
pub mod card;
pub mod checkout;
pub mod codes;
pub mod escrow;
pub mod ids;
pub mod kcp_origin;
pub mod order;
pub mod payment;
pub mod pg;
pub mod redirect_origins;
pub mod schedule;
pub mod text;
pub mod unix_secs;
pub mod vbank;

/// The last second of the year 9999 (UTC) in Unix seconds: the latest time openport takes or
/// lists, as iamport prints dates with four-digit years. A larger "time" is a mistake, mostly
/// milliseconds (JavaScript's `Date.now()`), or "no upper bound" (Java's `Long.MAX_VALUE`).
pub const LAST_UNIX_SECS: i64 = 253_402_300_799;

/// Korea Standard Time (UTC+9, no daylight saving), the clock of everything KCP and the Korean
/// banks and carriers date: KCP's time fields, card expiry months, deposit deadlines, a phone
/// payment's month, a bank transfer's payment date.
pub const KST: chrono::FixedOffset = match chrono::FixedOffset::east_opt(9 * 3600) {
    Some(kst) => kst,
    None => panic!("UTC+9 is a valid offset"),
};
