//! Prepared currencies in upper case.
//!
//! Charges compare their currency, upper-cased, with the prepared one (`krw` is KRW). Prepare
//! itself upper-cases only since 2026-12-02, so a `krw` prepared before that refused its own
//! charge. The stored values are upper-cased once here, which keeps the comparison a plain `=`
//! on both databases (PostgreSQL compares it in SQL, `store::payments::open_charge`).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_query::{Expr, Func};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000009_prepared_currency_upper"
    }
}

#[derive(DeriveIden)]
enum Prepares {
    Table,
    Currency,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::update()
                    .table(Prepares::Table)
                    .value(
                        Prepares::Currency,
                        Func::upper(Expr::col(Prepares::Currency)),
                    )
                    .and_where(Expr::col(Prepares::Currency).is_not_null())
                    .to_owned(),
            )
            .await
    }

    /// Nothing to undo: the lower-case spelling meant the same currency.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
