use sea_orm::entity::prelude::*;

/// A `ready` virtual account the resolver asks KCP about on a schedule
/// (service/vbank_checks.rs): when it is next asked.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "vbank_checks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: i64,
    pub check_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
