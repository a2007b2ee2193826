//! Order fields shared by every charge request, parsed into the service's `ChargeOrder`.
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::PlainJson;
use super::error::{ApiError, ApiResult};
use super::extract::de;
use crate::domain;
use crate::domain::payment::{check_notice_urls, TAX_FREE_UNSUPPORTED};
use crate::service::pay::ChargeOrder;

/// The order fields every charge request shares (onetime, again, each schedule, vbanks, Benepia).
/// Free text (`name`, `buyer_*`) is cut to KCP's byte limits; text with script in it
/// (`<script`, `javascript:`, `eval(`) is refused with HTTP 400.
#[derive(Deserialize, ToSchema, Default, Clone)]
pub struct OrderFields {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = r"\S", max_length = 80)]
    pub merchant_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 999_999_999_999i64)]
    pub amount: Option<i64>,
    /// KRW only (any case); absent or empty is KRW.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = Option<String>, pattern = "^([Kk][Rr][Ww])?$")]
    pub currency: Option<String>,
    /// At most 100 bytes reach KCP.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    /// At most 30 bytes reach KCP.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_name: Option<String>,
    /// At most 50 bytes reach KCP.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_email: Option<String>,
    /// Its digits reach KCP (at most 20 bytes).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_tel: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_addr: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub buyer_postcode: Option<String>,
    /// Instalment months: 0 or 1 is a lump sum.
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 36)]
    pub card_quota: Option<i64>,
    /// Any JSON value: a string is kept as it is, anything else as its JSON text (iamport returns
    /// `custom_data` as a string, spec/iamport-v1.md §3).
    #[serde(default, deserialize_with = "de::opt_json_string")]
    #[schema(value_type = PlainJson, required = false)]
    pub custom_data: Option<String>,
    /// One http(s) URL or a list of at most 10, each at most 2,048 characters (HTTP 400
    /// otherwise); when given, the merchant's default webhook URL is not called.
    #[serde(default, deserialize_with = "de::string_list")]
    #[schema(schema_with = super::doc::notice_urls)]
    pub notice_url: Vec<String>,
    /// 0 or absent: openport does not make mixed-tax (KCP `TG03`) payments, and refuses a tax-free
    /// part (HTTP 400) rather than charge it as taxable.
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 0)]
    pub tax_free: Option<i64>,
    /// From 0 to `amount` (HTTP 400 otherwise); not sent: KCP computes the VAT itself.
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 999_999_999_999i64)]
    pub vat_amount: Option<i64>,
}

pub(crate) fn order(f: OrderFields) -> ApiResult<ChargeOrder> {
    let merchant_uid = merchant_uid(f.merchant_uid)?;
    let amount = amount(f.amount, 1)?;
    let currency = currency(f.currency)?.unwrap_or_else(|| "KRW".into());
    tax_fields(f.tax_free, f.vat_amount, Some(amount))?;
    check_notice_urls(&f.notice_url).map_err(ApiError::bad_request)?;
    // iamport: only 2 months and more is an instalment; 0 and 1 both mean a lump sum, which KCP
    // knows only as quota "00" (it reads "01" as an instalment).
    let card_quota = match f.card_quota.unwrap_or(0) {
        0 | 1 => 0,
        q @ 2..=36 => q as u8,
        _ => return Err(ApiError::bad_request("card_quota는 0~36 사이여야 합니다.")),
    };
    Ok(ChargeOrder {
        merchant_uid,
        amount,
        currency,
        card_quota,
        name: f.name,
        buyer_name: f.buyer_name,
        buyer_email: f.buyer_email,
        buyer_tel: f.buyer_tel,
        buyer_addr: f.buyer_addr,
        buyer_postcode: f.buyer_postcode,
        custom_data: f.custom_data,
        notice_url: f.notice_url,
        ..ChargeOrder::default()
    })
}

/// A merchant_uid as every order takes it, charges and prepared amounts alike (the browser
/// checkout's too): [`domain::order::merchant_uid`].
pub(crate) fn merchant_uid(given: Option<String>) -> ApiResult<String> {
    domain::order::merchant_uid(given).map_err(refused)
}

/// An order amount, from `min` to `MAX_AMOUNT`: [`domain::order::amount`].
pub(crate) fn amount(given: Option<i64>, min: i64) -> ApiResult<i64> {
    domain::order::amount(given, min).map_err(refused)
}

/// KRW only, upper-cased; None when absent or empty: [`domain::order::currency`].
pub(crate) fn currency(given: Option<String>) -> ApiResult<Option<String>> {
    domain::order::currency(given).map_err(refused)
}

fn refused(e: domain::order::OrderFieldError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// The mixed-tax fields of a charge or a cancel (spec/iamport-v1.md §4.2, §4.4). KCP splits an
/// amount into taxable, VAT and tax-free parts only for sites contracted for mixed tax
/// (`tax_flag=TG03` with `comm_tax_mny`/`comm_vat_mny`/`comm_free_mny`, spec/kcp.md), which
/// openport does not send. A tax-free part it dropped would be charged (or refunded) as taxable,
/// which has tax consequences for the merchant: a nonzero `tax_free` is refused. `vat_amount` is
/// checked (0 to `amount`) and not sent: on other sites KCP computes the VAT itself (docs/api.md).
pub(crate) fn tax_fields(
    tax_free: Option<i64>,
    vat_amount: Option<i64>,
    amount: Option<i64>,
) -> ApiResult<()> {
    if tax_free.is_some_and(|t| t != 0) {
        return Err(ApiError::bad_request(TAX_FREE_UNSUPPORTED));
    }
    if vat_amount.is_some_and(|v| v < 0 || amount.is_some_and(|a| v > a)) {
        return Err(ApiError::bad_request(
            "vat_amount는 0 이상 amount 이하의 정수여야 합니다.",
        ));
    }
    Ok(())
}
