//! Pure types and rules of the payment domain. No I/O here.
pub mod card;
pub mod checkout;
pub mod codes;
pub mod escrow;
pub mod ids;
pub mod kcp_origin;
pub mod order;
pub mod payment;
pub mod schedule;
pub mod text;
pub mod vbank;

/// The last second of the year 9999 (UTC) in Unix seconds: the latest time openport takes or
/// lists, as iamport prints dates with four-digit years. A larger "time" is a mistake, mostly
/// milliseconds (JavaScript's `Date.now()`), or "no upper bound" (Java's `Long.MAX_VALUE`).
pub const LAST_UNIX_SECS: i64 = 253_402_300_799;
