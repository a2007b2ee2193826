use sea_orm::entity::prelude::*;

/// One webhook to one URL (spec/iamport-v1.md §5), written in the transaction of the payment
/// change it reports and delivered by the outbox worker.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub merchant_id: i64,
    pub imp_uid: String,
    pub merchant_uid: String,
    /// The payment status the webhook announces (`paid`, `ready`, `failed`, `cancelled`).
    pub status: String,
    pub cancellation_id: Option<String>,
    /// Resolved when the event happened: the payment's notice_url, else the merchant's default.
    pub url: String,
    /// True when `url` is the merchant's configured `webhook_url` (not a `notice_url` only,
    /// which a buyer's browser can set): the worker keeps a slot for these (jobs/webhooks.rs).
    pub to_merchant_url: bool,
    /// `json` or `form`, the merchant's setting when the event happened.
    pub content_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// HTTP attempts made so far (reset by an operator's resend).
    pub attempts: i32,
    /// Unix seconds on the gateway clock.
    pub next_attempt_at: i64,
    /// A worker owns the row until then (Unix seconds); 0 = free.
    pub lease_until: i64,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
