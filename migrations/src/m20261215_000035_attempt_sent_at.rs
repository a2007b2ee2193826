//! An attempt remembers when its last KCP call with an effect was sent (`sent_at`), and the settle
//! delay counts from it (service/resolve.rs `Gateway::settled`), no longer from the attempt's
//! creation.
//!
//! One attempt can carry more than one call, sent at different times: an escrow cancel KCP refuses
//! is sent again as `STSC` after a lease renewal, a virtual account's revocation looks at KCP
//! before it sends the close, a resolver that claims an attempt may send a net-cancel again. A
//! call sent X seconds after the attempt was created was taken for settled X seconds early: an
//! inquiry still showing the trade as it was (KCP still applying that call) was believed, and the
//! cancel recorded as not made while KCP then made it.
//!
//! Existing rows get their `created_at`, what the settle delay counted from until now. The
//! column's default (0) only fills the rows as the column is added; the gateway always writes it.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261215_000035_attempt_sent_at"
    }
}

#[derive(DeriveIden)]
enum PgAttempts {
    Table,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .add_column(
                        ColumnDef::new(PgAttempts::SentAt)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("UPDATE pg_attempts SET sent_at = created_at")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .drop_column(PgAttempts::SentAt)
                    .to_owned(),
            )
            .await
    }
}
