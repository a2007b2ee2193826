//! A cancel attempt remembers whether the merchant asked for a `cancelled` webhook
//! (`enable_webhook`, spec/iamport-v1.md §5). Before this column only the request that got KCP's
//! answer could send it: a cancel whose answer was lost and that the resolver settled later was
//! recorded without the webhook the merchant asked for. Every settler of the attempt now reads the
//! wish from the attempt itself. Existing rows (approvals, and cancels made before) get `false`,
//! which is what they did.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000011_attempt_notify"
    }
}

#[derive(DeriveIden)]
enum PgAttempts {
    Table,
    Notify,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .add_column(
                        ColumnDef::new(PgAttempts::Notify)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .drop_column(PgAttempts::Notify)
                    .to_owned(),
            )
            .await
    }
}
