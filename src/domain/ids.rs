//! Identifier shapes openport hands out.
use rand::Rng;

/// `imp_` + 12 digits, iamport's shape (spec/iamport-v1.md §3).
pub fn new_imp_uid() -> String {
    format!("imp_{:012}", twelve_digits())
}

/// `imps_` + 12 digits: iamport names the payments its scheduler makes this way (spec/iamport-v1.md
/// §3, "scheduled ones observed as `imps_...`"), and merchants who tell them apart by it keep doing so.
pub fn new_scheduled_imp_uid() -> String {
    format!("imps_{:012}", twelve_digits())
}

fn twelve_digits() -> u64 {
    rand::thread_rng().gen_range(0..1_000_000_000_000u64)
}

/// KCP `ordr_idxx` for one attempt: letters and digits only, ≤ 40 (spec/kcp.md §2.1). Derived from
/// the imp_uid so that an operator can match KCP's admin screens to openport's records: `OP` +
/// the digits, `OPS` + the digits for a scheduled payment (so `imp_1…` and `imps_1…` never share
/// one).
pub fn order_no_for(imp_uid: &str) -> String {
    match imp_uid.strip_prefix("imps_") {
        Some(digits) => format!("OPS{digits}"),
        None => format!("OP{}", imp_uid.trim_start_matches("imp_")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_imp_uid_has_imps_and_twelve_digits() {
        let uid = new_scheduled_imp_uid();
        let digits = uid.strip_prefix("imps_").unwrap();
        assert_eq!(digits.len(), 12);
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn order_numbers_are_letters_and_digits_and_differ_for_scheduled_payments() {
        assert_eq!(order_no_for("imp_000000000042"), "OP000000000042");
        assert_eq!(order_no_for("imps_000000000042"), "OPS000000000042");
        for uid in [new_imp_uid(), new_scheduled_imp_uid()] {
            assert!(order_no_for(&uid)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
