//! Identifier shapes openport hands out.
use rand::Rng;

/// `imp_` + 12 digits, iamport's shape (spec/iamport-v1.md §3).
pub fn new_imp_uid() -> String {
    format!(
        "imp_{:012}",
        rand::thread_rng().gen_range(0..1_000_000_000_000u64)
    )
}

/// KCP `ordr_idxx` for one attempt: letters and digits only, ≤ 40 (spec/kcp.md §2.1). Derived from
/// the imp_uid so that an operator can match KCP's admin screens to openport's records.
pub fn order_no_for(imp_uid: &str) -> String {
    format!("OP{}", imp_uid.trim_start_matches("imp_"))
}

/// A merchant_uid for a `request_pay` that gave none: iamport makes one up then (its manual's
/// default "random"). `mid_` + Unix milliseconds + 8 random hex digits: unique without a lookup,
/// and sortable by time for an operator.
pub fn new_merchant_uid(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("mid_{}_{}", now.timestamp_millis(), random_hex(4))
}

/// Opaque random token (hex), used for access tokens and cancellation ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    hex::encode(buf)
}
