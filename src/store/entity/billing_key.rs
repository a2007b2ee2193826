use sea_orm::entity::prelude::*;

/// A customer's card stored as a KCP batch key (iamport `customer_uid`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "billing_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub merchant_id: i64,
    pub customer_uid: String,
    /// `pending` (issued for the key-in charge `payment_id`, the customer's only once that payment
    /// is paid: service/kept_cards.rs), `active`, `replaced` or `deleted`.
    pub status: String,
    /// The KCP batch key, sealed with the master key. Never returned, never logged. Empty once
    /// KCP has deleted the key (`pg_deleted_at`): nothing is kept of a key KCP no longer holds.
    pub batch_key_sealed: String,
    pub group_id: String,
    pub pg_id: String,
    pub card_code: Option<String>,
    pub card_name: Option<String>,
    pub card_number: Option<String>,
    pub card_type: Option<i32>,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_tel: Option<String>,
    pub customer_email: Option<String>,
    pub customer_addr: Option<String>,
    pub customer_postcode: Option<String>,
    pub sandbox: bool,
    pub inserted_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    /// When KCP confirmed the key deleted (`tx_type 10005010`, or "already deleted").
    pub pg_deleted_at: Option<i64>,
    /// When the deletion of a retired key at KCP is tried next; None when none is pending (an
    /// active key, one KCP deleted, or one whose tries ran out).
    pub pg_delete_next_at: Option<i64>,
    /// Deletion calls made to KCP for this retired key.
    pub pg_delete_tries: i32,
    /// The lease of the instance calling KCP to delete it now (0: nobody).
    pub pg_delete_lease_until: i64,
    /// The key-in charge (`onetime` with `customer_uid`) this key's card was issued for; None for a
    /// key registered on its own.
    pub payment_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
