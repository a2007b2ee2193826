use sea_orm::entity::prelude::*;

/// One `IMP.request_pay`: the KCP window it opened and how to answer the browser at the end.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkout_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The hex SHA-256 of the session's token (random, unguessable), which the hand-off URL and
    /// the cancel call carry: the token itself is never stored (`secrets::token_digest`).
    pub token: String,
    pub payment_id: i64,
    pub merchant_id: i64,
    pub imp_uid: String,
    /// iamport pay_method (card, trans, vbank, …).
    pub method: String,
    /// KCP window pay_method (CARD, BANK, …) and ActionResult (card, acnt, …).
    pub kcp_pay_method: String,
    pub action_result: String,
    pub van_code: Option<String>,
    pub approval_key: Option<String>,
    pub trace_no: Option<String>,
    pub pay_url: Option<String>,
    pub mobile: bool,
    pub redirect_url: Option<String>,
    pub confirm_url: Option<String>,
    /// The window fields and the merchant page origin, as JSON.
    pub params: String,
    /// `open`, `completed`, `cancelled`.
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
