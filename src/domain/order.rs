//! The rules of an order's identifying fields (merchant_uid, customer_uid, amount, currency), one
//! set for every way an order arrives: the REST API's charges and prepared amounts
//! (`api::order`) and the browser checkout's `request_pay` (`checkout`). A payment the REST API
//! could not have opened must not come in through the browser either: the merchant could not
//! address it afterwards (`GET /payments/find/{merchant_uid}`), and KCP would refuse its amount
//! only after the payment was written.
use super::payment::{MAX_AMOUNT, MERCHANT_UID_MAX_CHARS};
use super::text::is_refused_control;

/// The longest customer_uid (billing key name) openport takes, in characters, as every REST call
/// that names one (`/subscribe/customers/{customer_uid}`, `onetime`, `again`).
pub const CUSTOMER_UID_MAX_CHARS: usize = 80;

/// Why an order field is refused; the text is iamport-style Korean, shown to the merchant (HTTP
/// 400) or to the buyer (the checkout's `rsp.error_msg`). It never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderFieldError {
    #[error("merchant_uid 파라메터가 누락되었습니다.")]
    MerchantUidMissing,
    #[error("merchant_uid는 {MERCHANT_UID_MAX_CHARS}자 이하여야 합니다.")]
    MerchantUidTooLong,
    #[error("customer_uid는 1~{CUSTOMER_UID_MAX_CHARS}자여야 합니다.")]
    CustomerUid,
    #[error("amount 파라메터가 누락되었습니다.")]
    AmountMissing,
    #[error("amount는 0보다 큰 정수여야 합니다.")]
    AmountNotPositive,
    #[error("amount는 0 이상이어야 합니다.")]
    AmountNegative,
    #[error("amount는 {MAX_AMOUNT} 이하여야 합니다.")]
    AmountTooLarge,
    #[error("지원하지 않는 통화입니다. (KRW만 지원)")]
    Currency,
    /// The REST API's wording for the same refusal (`api::extract`), naming the field.
    #[error("{}", crate::domain::text::control_character_message(.0))]
    ControlCharacter(&'static str),
}

/// A merchant_uid: given, not blank, at most [`MERCHANT_UID_MAX_CHARS`], without a control
/// character ([`is_refused_control`]).
pub fn merchant_uid(given: Option<String>) -> Result<String, OrderFieldError> {
    let uid = given
        .filter(|s| !s.trim().is_empty())
        .ok_or(OrderFieldError::MerchantUidMissing)?;
    if uid.chars().count() > MERCHANT_UID_MAX_CHARS {
        return Err(OrderFieldError::MerchantUidTooLong);
    }
    no_controls("merchant_uid", &uid)?;
    Ok(uid)
}

/// A customer_uid: not blank, at most [`CUSTOMER_UID_MAX_CHARS`], without a control character.
pub fn customer_uid(given: String) -> Result<String, OrderFieldError> {
    if given.trim().is_empty() || given.chars().count() > CUSTOMER_UID_MAX_CHARS {
        return Err(OrderFieldError::CustomerUid);
    }
    no_controls("customer_uid", &given)?;
    Ok(given)
}

/// An order amount, from `min` to [`MAX_AMOUNT`] (KCP's 12 digits): the same ceiling for what is
/// charged, what is prepared and what a window shows, so no amount can be prepared or opened that
/// no charge could take.
pub fn amount(given: Option<i64>, min: i64) -> Result<i64, OrderFieldError> {
    let amount = given.ok_or(OrderFieldError::AmountMissing)?;
    if amount < min {
        return Err(if min > 0 {
            OrderFieldError::AmountNotPositive
        } else {
            OrderFieldError::AmountNegative
        });
    }
    if amount > MAX_AMOUNT {
        return Err(OrderFieldError::AmountTooLarge);
    }
    Ok(amount)
}

/// KRW only, in any case, upper-cased (a prepared currency must compare equal to a charge's,
/// spec §4.3); None when absent or empty.
pub fn currency(given: Option<String>) -> Result<Option<String>, OrderFieldError> {
    let Some(currency) = given.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let currency = currency.to_ascii_uppercase();
    if currency != "KRW" {
        return Err(OrderFieldError::Currency);
    }
    Ok(Some(currency))
}

fn no_controls(field: &'static str, value: &str) -> Result<(), OrderFieldError> {
    if value.chars().any(is_refused_control) {
        return Err(OrderFieldError::ControlCharacter(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merchant_uid_is_given_not_blank_short_enough_and_free_of_control_characters() {
        assert_eq!(
            merchant_uid(Some("order-1".into())).as_deref(),
            Ok("order-1")
        );
        assert_eq!(
            merchant_uid(Some("   ".into())),
            Err(OrderFieldError::MerchantUidMissing)
        );
        assert_eq!(merchant_uid(None), Err(OrderFieldError::MerchantUidMissing));
        assert_eq!(
            merchant_uid(Some("가".repeat(81))),
            Err(OrderFieldError::MerchantUidTooLong)
        );
        assert!(merchant_uid(Some("가".repeat(80))).is_ok());
        assert_eq!(
            merchant_uid(Some("a\u{1}b".into())),
            Err(OrderFieldError::ControlCharacter("merchant_uid"))
        );
        assert!(merchant_uid(Some("a\tb".into())).is_ok(), "tab is text");
    }

    #[test]
    fn an_amount_runs_from_its_minimum_to_kcps_twelve_digits() {
        assert_eq!(amount(Some(1), 1), Ok(1));
        assert_eq!(amount(Some(0), 0), Ok(0));
        assert_eq!(amount(Some(0), 1), Err(OrderFieldError::AmountNotPositive));
        assert_eq!(amount(Some(-1), 0), Err(OrderFieldError::AmountNegative));
        assert_eq!(amount(Some(MAX_AMOUNT), 1), Ok(MAX_AMOUNT));
        assert_eq!(
            amount(Some(MAX_AMOUNT + 1), 1),
            Err(OrderFieldError::AmountTooLarge)
        );
        assert_eq!(
            amount(Some(i64::MAX), 0),
            Err(OrderFieldError::AmountTooLarge)
        );
        assert_eq!(amount(None, 1), Err(OrderFieldError::AmountMissing));
    }

    #[test]
    fn a_customer_uid_is_one_to_eighty_characters_of_text() {
        assert!(customer_uid("user-42".into()).is_ok());
        assert_eq!(customer_uid(" ".into()), Err(OrderFieldError::CustomerUid));
        assert_eq!(
            customer_uid("x".repeat(81)),
            Err(OrderFieldError::CustomerUid)
        );
        assert_eq!(
            customer_uid("u\u{7}".into()),
            Err(OrderFieldError::ControlCharacter("customer_uid"))
        );
    }
}
