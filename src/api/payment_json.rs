//! The iamport Payment object (PaymentAnnotation, spec/iamport-v1.md §3): integer Unix seconds
//! with 0 when unset, custom_data as a JSON string, masked card number, `[]` for empty lists.
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::payment::PaymentStatus;
use crate::service::auth::Principal;
use crate::service::lookup::Page;
use crate::service::PaymentRecord;

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentCancelAnnotation {
    pub pg_tid: String,
    pub amount: i64,
    pub cancelled_at: i64,
    /// Always a string, `""` for a cancel made without one: iamport's OpenAPI lists it as
    /// required, so merchant code may read it without a null check.
    pub reason: String,
    pub receipt_url: Option<String>,
    pub cancellation_id: String,
}

/// iamport's card issuer and publisher codes (금융결제원 standard codes), which its OpenAPI says
/// only other PGs provide (Toss Payments, KSNET, …): always null for KCP. They are sent rather
/// than left out, so that merchant code indexing the object as a map (`p["card_issuer_code"]`)
/// finds them, as it does at iamport.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CardIssuerAnnotation {
    pub card_issuer_code: Option<String>,
    pub card_issuer_name: Option<String>,
    pub card_publisher_code: Option<String>,
    pub card_publisher_name: Option<String>,
}

/// iamport's promotion (`promotion-id-…` and its discount): an iamport feature openport has not,
/// so always null.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromotionAnnotation {
    pub id: String,
    pub discount: i64,
}

/// A deposit into a fixed, unlimited virtual account (iamport's `VbankDepositAnnotation`), which
/// KCP's accounts here are not: a `deposit_history` is always `[]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VbankDepositAnnotation {
    pub pg_tid: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub depositor_name: String,
    pub deposited_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAnnotation {
    pub imp_uid: String,
    pub merchant_uid: String,
    pub pay_method: String,
    pub channel: String,
    pub pg_provider: String,
    pub emb_pg_provider: Option<String>,
    pub pg_tid: Option<String>,
    pub pg_id: String,
    pub escrow: bool,
    pub apply_num: Option<String>,
    pub bank_code: Option<String>,
    pub bank_name: Option<String>,
    pub card_code: Option<String>,
    pub card_name: Option<String>,
    pub card_quota: i32,
    pub card_number: Option<String>,
    pub card_type: Option<i32>,
    #[serde(flatten)]
    pub card_issuer: CardIssuerAnnotation,
    pub vbank_code: Option<String>,
    pub vbank_name: Option<String>,
    pub vbank_num: Option<String>,
    pub vbank_holder: Option<String>,
    pub vbank_date: i64,
    pub vbank_issued_at: i64,
    pub name: Option<String>,
    pub amount: i64,
    pub cancel_amount: i64,
    pub currency: String,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    pub custom_data: Option<String>,
    pub user_agent: Option<String>,
    pub status: String,
    pub started_at: i64,
    pub paid_at: i64,
    pub failed_at: i64,
    pub cancelled_at: i64,
    pub fail_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub receipt_url: Option<String>,
    pub cancel_history: Vec<PaymentCancelAnnotation>,
    pub cancel_receipt_urls: Vec<String>,
    pub cash_receipt_issued: bool,
    pub customer_uid: Option<String>,
    pub customer_uid_usage: Option<String>,
    pub deposit_history: Vec<VbankDepositAnnotation>,
    pub promotion: Option<PromotionAnnotation>,
    pub sandbox: bool,
    /// openport's, for its operator token only: the merchant whose payment this is (the `id` of
    /// `GET /admin/merchants`), since the operator reads every merchant's payments. Absent from
    /// what a merchant's token is shown, which is iamport's object exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<i64>,
}

impl PaymentAnnotation {
    /// The payment as `who` is shown it: the operator also learns whose it is.
    pub fn shown_to(r: PaymentRecord, who: &Principal) -> Self {
        let merchant_id = r.payment.merchant_id;
        let mut shown = Self::from(r);
        if matches!(who, Principal::Admin) {
            shown.merchant_id = Some(merchant_id);
        }
        shown
    }
}

impl From<PaymentRecord> for PaymentAnnotation {
    fn from(r: PaymentRecord) -> Self {
        let p = r.payment;
        let status = PaymentStatus::from_db(&p.status);
        let receipt_url = p.receipt_url();
        let cash_receipt_issued = p.cash_receipt_issued();
        let cancel_history: Vec<PaymentCancelAnnotation> = r
            .cancellations
            .into_iter()
            .map(|c| PaymentCancelAnnotation {
                receipt_url: p.cancel_receipt_url(&c.pg_tid),
                pg_tid: c.pg_tid,
                amount: c.amount,
                cancelled_at: c.cancelled_at,
                reason: c.reason.unwrap_or_default(),
                cancellation_id: c.cancellation_id,
            })
            .collect();
        // One per cancel, in cancel_history's order, even where partial cancels of one trade share
        // KCP's slip: iamport's OpenAPI (PaymentAnnotation.cancel_receipt_urls) makes one per
        // cancel ("부분취소 횟수만큼 매출전표가 별도로 생성됨"), and merchant code pairs the two
        // lists by index or counts refunds by this one.
        let cancel_receipt_urls: Vec<String> = cancel_history
            .iter()
            .filter_map(|c| c.receipt_url.clone())
            .collect();
        Self {
            status: status.as_iamport().to_string(),
            imp_uid: p.imp_uid,
            merchant_uid: p.merchant_uid,
            pay_method: p.pay_method,
            channel: p.channel,
            pg_provider: p.pg_provider,
            emb_pg_provider: p.emb_pg_provider,
            pg_tid: p.pg_tid,
            pg_id: p.pg_id,
            escrow: p.escrow,
            apply_num: p.apply_num,
            bank_code: p.bank_code,
            bank_name: p.bank_name,
            card_code: p.card_code,
            card_name: p.card_name,
            card_quota: p.card_quota,
            card_number: p.card_number,
            card_type: p.card_type,
            card_issuer: CardIssuerAnnotation::default(),
            vbank_code: p.vbank_code,
            vbank_name: p.vbank_name,
            vbank_num: p.vbank_num,
            vbank_holder: p.vbank_holder,
            vbank_date: p.vbank_date.unwrap_or(0),
            vbank_issued_at: p.vbank_issued_at.unwrap_or(0),
            name: p.name,
            amount: p.amount,
            cancel_amount: p.cancel_amount,
            currency: p.currency,
            buyer_name: p.buyer_name,
            buyer_email: p.buyer_email,
            buyer_tel: p.buyer_tel,
            buyer_addr: p.buyer_addr,
            buyer_postcode: p.buyer_postcode,
            custom_data: p.custom_data,
            user_agent: p.user_agent,
            started_at: p.started_at,
            paid_at: p.paid_at.unwrap_or(0),
            failed_at: p.failed_at.unwrap_or(0),
            cancelled_at: p.cancelled_at.unwrap_or(0),
            fail_reason: p.fail_reason,
            cancel_reason: p.cancel_reason,
            receipt_url,
            cancel_history,
            cancel_receipt_urls,
            cash_receipt_issued,
            customer_uid: p.customer_uid,
            customer_uid_usage: p.customer_uid_usage,
            deposit_history: vec![],
            promotion: None,
            sandbox: p.sandbox,
            merchant_id: None,
        }
    }
}

/// iamport's paged shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub total: u64,
    pub previous: u64,
    pub next: u64,
    pub list: Vec<PaymentAnnotation>,
}

impl From<Page<PaymentRecord>> for PaymentPage {
    fn from(p: Page<PaymentRecord>) -> Self {
        Self {
            total: p.total,
            previous: p.previous,
            next: p.next,
            list: p.list.into_iter().map(Into::into).collect(),
        }
    }
}

impl PaymentPage {
    /// The page as `who` is shown it ([`PaymentAnnotation::shown_to`]).
    pub fn shown_to(p: Page<PaymentRecord>, who: &Principal) -> Self {
        Self {
            total: p.total,
            previous: p.previous,
            next: p.next,
            list: p
                .list
                .into_iter()
                .map(|r| PaymentAnnotation::shown_to(r, who))
                .collect(),
        }
    }
}
