use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub imp_uid: String,
    pub merchant_id: i64,
    pub merchant_uid: String,
    /// KCP `ordr_idxx` of this attempt.
    pub order_no: String,
    pub status: String,
    pub pay_method: String,
    pub channel: String,
    pub pg_provider: String,
    pub pg_id: String,
    pub pg_tid: Option<String>,
    pub amount: i64,
    pub cancel_amount: i64,
    pub currency: String,
    pub name: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    pub custom_data: Option<String>,
    /// JSON array of URLs.
    pub notice_url: Option<String>,
    pub user_agent: Option<String>,
    pub card_code: Option<String>,
    pub card_name: Option<String>,
    /// Masked only.
    pub card_number: Option<String>,
    pub card_type: Option<i32>,
    pub card_quota: i32,
    pub apply_num: Option<String>,
    pub fail_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub sandbox: bool,
    pub customer_uid: Option<String>,
    pub customer_uid_usage: Option<String>,
    pub started_at: i64,
    pub paid_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub updated_at: i64,
    pub emb_pg_provider: Option<String>,
    pub escrow: bool,
    pub bank_code: Option<String>,
    pub bank_name: Option<String>,
    pub vbank_code: Option<String>,
    pub vbank_name: Option<String>,
    pub vbank_num: Option<String>,
    pub vbank_holder: Option<String>,
    pub vbank_date: Option<i64>,
    pub vbank_issued_at: Option<i64>,
    /// Escrow delivery registration (`/escrows/logis`) as JSON.
    pub escrow_logis: Option<String>,
    /// The buyer asked KCP's window for a cash receipt (`cash_yn` `Y`) of a bank transfer or a
    /// virtual account, which KCP issues with the money: see [`Model::cash_receipt_issued`].
    pub cash_receipt: bool,
    /// KCP's `partcanc_yn` of the card approval (spec/kcp.md §2.4): `Some(false)` refuses a
    /// partial cancel before `STPC` is sent; None where KCP said nothing.
    pub partial_cancel_allowed: Option<bool>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// What is left to cancel: the amount paid less every cancel recorded so far (iamport's
    /// `amount - cancel_amount`, KCP's `rem_mny` before the next cancel).
    pub fn balance(&self) -> i64 {
        self.amount - self.cancel_amount
    }

    /// iamport's `cash_receipt_issued`: a receipt the buyer asked KCP's window for, once the money
    /// is in (at approval for a bank transfer, at the deposit for a virtual account: KCP issues
    /// it for cash received; a revoked account received none).
    pub fn cash_receipt_issued(&self) -> bool {
        self.cash_receipt && self.paid_at.is_some_and(|t| t > 0)
    }

    /// iamport's `receipt_url`: KCP's slip, which exists once money moved: paid, or cancelled
    /// after it was paid (a revoked virtual account was never paid).
    pub fn receipt_url(&self) -> Option<String> {
        use crate::domain::payment::{receipt_url, PaymentStatus};
        match (
            &self.pg_tid,
            PaymentStatus::from_db(&self.status),
            self.paid_at,
        ) {
            (Some(tno), PaymentStatus::Paid | PaymentStatus::Cancelled, Some(_)) => receipt_url(
                &self.pay_method,
                tno,
                &self.order_no,
                self.amount,
                self.sandbox,
            ),
            _ => None,
        }
    }

    /// The slip of one cancellation (`cancel_history[].receipt_url`, `cancel_receipt_urls`):
    /// KCP keeps no document per cancel; its slip of the trade the cancel was made on
    /// (`cancel_pg_tid`: a point payment's partial cancel re-approves under a new `tno`) shows
    /// the cancelled amounts. None where the payment has no slip at all.
    pub fn cancel_receipt_url(&self, cancel_pg_tid: &str) -> Option<String> {
        self.paid_at?;
        crate::domain::payment::receipt_url(
            &self.pay_method,
            cancel_pg_tid,
            &self.order_no,
            self.amount,
            self.sandbox,
        )
    }
}
