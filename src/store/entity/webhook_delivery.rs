use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue, Set};

/// One webhook to one URL (spec/iamport-v1.md §5), written in the transaction of the payment
/// change it reports and delivered by the outbox worker.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The Standard Webhooks `webhook-id`: random ([`new_message_id`]), written with the row and
    /// never changed, so every retry and every operator resend of this delivery carries it.
    /// Rows written before it was stored have `msg_<id>`, the id they were sent with then.
    pub message_id: String,
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

/// Characters of a [`new_message_id`] after `msg_`: 26 of Crockford's base32 (ULID's length and
/// alphabet), 130 random bits.
pub const MESSAGE_ID_CHARS: usize = 26;

/// A fresh `webhook-id`: `msg_` + [`MESSAGE_ID_CHARS`] random Crockford base32 characters.
///
/// Not derived from the row id: ids come from a sequence that starts again on another database,
/// and runs again over ids already sent after a backup is restored or a sequence is reset. A
/// receiver that deduplicates on `webhook-id`, as Standard Webhooks invites ("used as an
/// idempotency key"), then dropped a new event as one it had seen (review r4, finding 1). 130
/// random bits from the thread's CSPRNG repeat with no practical chance, on any database.
pub fn new_message_id() -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(4 + MESSAGE_ID_CHARS);
    id.push_str("msg_");
    for _ in 0..MESSAGE_ID_CHARS {
        id.push(char::from(CROCKFORD[rng.gen_range(0..CROCKFORD.len())]));
    }
    id
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    /// Every new row has its own [`new_message_id`], also when built with
    /// `..Default::default()` (sea-orm's `Default` calls this) and inserted as SQL text
    /// (`store::payments::conclude_charge` writes the `Set` columns).
    fn new() -> Self {
        Self {
            message_id: Set(new_message_id()),
            ..<Self as ActiveModelTrait>::default()
        }
    }

    /// The id is the delivery's for good: an update built on `Default` (a fresh id) leaves it.
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if !insert {
            self.message_id = ActiveValue::NotSet;
        }
        Ok(self)
    }
}
