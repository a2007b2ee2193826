use sea_orm::entity::prelude::*;

/// One billing-key issuance asked of KCP through the API (spec/kcp.md §2.5), recorded (state
/// `pending`) and committed before the call: KCP has no inquiry for an issuance, so this row is
/// all that says a key may exist at KCP under `order_no` (migration 000033,
/// service/key_issuances.rs). Never card data, never the key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_issuances")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub merchant_id: i64,
    pub customer_uid: String,
    /// What asked for it: `customer` (`POST /subscribe/customers/{uid}`), `schedule` (a schedule
    /// with card data for a customer_uid without a key), `onetime` (a key-in charge keeping its
    /// card).
    pub kind: String,
    /// The `ordr_idxx` KCP was asked under (`BK…`): what to search KCP's admin for.
    pub order_no: String,
    /// `pending` (the call is being made, or its request died), `unknown` (its answer was lost),
    /// `issued` (the key stored, in the same transaction), `refused`, `not_sent`, `discarded` (an
    /// issued key that could not be stored: recorded for its deletion at KCP, or deleted there),
    /// `reconciled` (an operator looked it up in KCP's admin). Only `pending` and `unknown` are
    /// open.
    pub state: String,
    /// Why it is in its state: KCP's refusal, the error of a lost answer, the operator's note.
    pub note: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
