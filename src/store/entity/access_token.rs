use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_tokens")]
pub struct Model {
    /// Hex SHA-256 of the token: how a presented token is found (migration
    /// `m20261203_000008_tokens_at_rest`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_sha256: String,
    /// The token sealed under the master key, so getToken can hand out the same one again.
    pub token_sealed: String,
    pub merchant_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// The merchant's id on the token getToken hands out, NULL on any other; unique, so a
    /// merchant has at most one (migration `m20261202_000007_one_live_token`).
    pub live_slot: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
