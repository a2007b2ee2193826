//! KCP result codes (`res_cd`) → openport's [`DeclineReason`]: spec/kcp.md §4.
//!
//! Only the category is ours; the code and KCP's `res_msg` travel unchanged in
//! [`PgError::Declined`] so merchants see what KCP said.

use crate::pg::{DeclineReason, PgError};

/// `res_cd` of a successful call (spec/kcp.md §1).
pub const SUCCESS: &str = "0000";

/// "No such trade" for the tno / order number asked about: an inquiry's "no approval exists", a
/// cancel's refusal of a trade KCP does not know. spec/kcp.md names no code for it; this is the
/// sandbox's (docs/sandbox.md §4), a documented assumption to confirm against real KCP (docs/kcp.md).
pub const NO_SUCH_TRADE: &str = "8201";

/// Already cancelled (spec/kcp.md §2.9).
pub const ALREADY_CANCELLED: &str = "8133";

/// The batch key was deleted (charge or second delete). KCP's code for this is not public; this
/// is the sandbox's (docs/sandbox.md), and a deployment against real KCP should confirm it.
pub const BATCH_KEY_DELETED: &str = "8303";

/// No such batch key in this site and group (charge or delete). KCP's code for this is not
/// public either; this is the sandbox's (docs/sandbox.md), to be confirmed against real KCP.
pub const BATCH_KEY_NOT_FOUND: &str = "8302";

/// A shipping start (`STE1`) on a transaction that already has one. KCP's code for this is not
/// public; this is the sandbox's (docs/sandbox.md §4), and a deployment against real KCP should
/// confirm it: the service reads it as "KCP holds a shipment", not as a refusal (docs/kcp.md §9.4).
pub const ESCROW_ALREADY_SHIPPED: &str = "8502";

/// A cancel or close of a virtual account holding deposits that names no account to refund them
/// to. KCP's code for this is not public; this is the sandbox's (docs/sandbox.md §4), to be
/// confirmed against real KCP: the service reads it as "the account holds money", never as a
/// reason to close it another way (docs/kcp.md §9.5).
pub const HOLDS_DEPOSITS: &str = "8508";

/// The code our connector uses when it refuses to send a request itself (malformed input); never
/// returned by KCP, so it cannot be confused with one of KCP's four-digit codes.
pub const LOCAL_INVALID_REQUEST: &str = "invalid_request";

/// Categorises a non-success `res_cd`.
///
/// - 8101, 8107–8110: KCP could not accept the card data (card, card number, expiry, birth date /
///   business number): the card data was refused.
/// - 8103–8106 (transaction type, pay method, amount, instalment) say nothing about the card: the
///   payment simply failed with KCP's message, rather than telling the merchant the card data
///   was wrong.
/// - 8102 (card not allowed for this merchant), 8186/8188 (daily / monthly limit), 8187 (limit
///   exceeded, the sandbox's `INSUFFICIENT_LIMIT` card), and the issuer
///   refusals KCP relays as `CCxx` / `ACxx` (limit exceeded, insufficient funds — public KCP decline
///   guides list CC07, CC08, CC09, CC10, CC61, CC88, AC25): the card was declined.
/// - 8133: already cancelled; 8201: no such trade; 8302: no such batch key; 8303: batch key
///   deleted; 8502: escrow shipping already started; 8508: a virtual account holding deposits.
/// - Anything else (3001 user cancel, 8059 amount mismatch, 8178 cannot cancel, system errors).
pub fn decline_reason(res_cd: &str) -> DeclineReason {
    match res_cd {
        "8101" | "8107" | "8108" | "8109" | "8110" => DeclineReason::CardRejected,
        "8102" | "8186" | "8187" | "8188" => DeclineReason::CardDeclined,
        ALREADY_CANCELLED => DeclineReason::AlreadyCancelled,
        NO_SUCH_TRADE => DeclineReason::NoSuchTrade,
        BATCH_KEY_DELETED => DeclineReason::BatchKeyDeleted,
        BATCH_KEY_NOT_FOUND => DeclineReason::BatchKeyNotFound,
        ESCROW_ALREADY_SHIPPED => DeclineReason::AlreadyShipped,
        HOLDS_DEPOSITS => DeclineReason::HoldsDeposits,
        code if is_issuer_refusal(code) => DeclineReason::CardDeclined,
        _ => DeclineReason::Other,
    }
}

/// KCP relays the card company's own refusal as `CC` + two characters (and `AC` for account-side
/// refusals of check cards).
fn is_issuer_refusal(code: &str) -> bool {
    code.len() == 4 && (code.starts_with("CC") || code.starts_with("AC")) && code.is_ascii()
}

/// Builds the [`PgError::Declined`] for a KCP refusal, keeping KCP's message verbatim. An empty
/// message is replaced so the API never shows a blank reason.
pub fn declined(res_cd: &str, res_msg: &str) -> PgError {
    let message = if res_msg.trim().is_empty() {
        format!("KCP refused the request (res_cd {res_cd})")
    } else {
        res_msg.trim().to_owned()
    };
    PgError::Declined {
        code: res_cd.to_owned(),
        message,
        reason: decline_reason(res_cd),
    }
}

/// A request the connector refused to send (nothing reached KCP, so a definite refusal).
pub fn invalid_request(message: impl Into<String>, reason: DeclineReason) -> PgError {
    PgError::Declined {
        code: LOCAL_INVALID_REQUEST.to_owned(),
        message: message.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_format_errors_are_card_rejected() {
        for code in ["8101", "8107", "8108", "8109", "8110"] {
            assert_eq!(decline_reason(code), DeclineReason::CardRejected, "{code}");
        }
    }

    #[test]
    fn request_format_errors_that_are_not_about_the_card_are_other() {
        for code in ["8103", "8104", "8105", "8106"] {
            assert_eq!(decline_reason(code), DeclineReason::Other, "{code}");
        }
    }

    #[test]
    fn limit_and_merchant_refusals_are_card_declined() {
        for code in ["8102", "8186", "8187", "8188", "CC07", "CC61", "AC25"] {
            assert_eq!(decline_reason(code), DeclineReason::CardDeclined, "{code}");
        }
    }

    #[test]
    fn codes_that_name_a_state_at_kcp_have_their_own_reason() {
        assert_eq!(decline_reason("8133"), DeclineReason::AlreadyCancelled);
        assert_eq!(decline_reason("8201"), DeclineReason::NoSuchTrade);
        assert_eq!(decline_reason("8303"), DeclineReason::BatchKeyDeleted);
        assert_eq!(decline_reason("8302"), DeclineReason::BatchKeyNotFound);
        assert_eq!(decline_reason("8502"), DeclineReason::AlreadyShipped);
        assert_eq!(decline_reason("8508"), DeclineReason::HoldsDeposits);
    }

    #[test]
    fn other_codes_are_other() {
        for code in ["3001", "8059", "8178", "9562", "8111", "8100", ""] {
            assert_eq!(decline_reason(code), DeclineReason::Other, "{code}");
        }
    }

    #[test]
    fn declined_keeps_kcp_message_and_code() {
        let PgError::Declined {
            code,
            message,
            reason,
        } = declined("8186", "일한도 초과")
        else {
            panic!("not declined")
        };
        assert_eq!(
            (code.as_str(), message.as_str(), reason),
            ("8186", "일한도 초과", DeclineReason::CardDeclined)
        );
    }

    #[test]
    fn an_empty_kcp_message_gets_a_readable_one() {
        let PgError::Declined { message, .. } = declined("9999", " ") else {
            panic!("not declined")
        };
        assert!(message.contains("9999"));
    }
}
