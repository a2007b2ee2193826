//! A merchant's webhook secret, once replaced, keeps signing beside the new one for a while
//! (docs/webhooks.md, "Rotating the secret"): Standard Webhooks sends several space-separated
//! signatures so that receivers still holding the old key accept webhooks while they switch.
//! The previous secret is sealed with the master key like the current one; `…_until` (Unix
//! seconds) ends its use. NULL in both, every existing merchant's value, signs with one secret
//! as before.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000022_webhook_previous_secret"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    WebhookPreviousSecretSealed,
    WebhookPreviousSecretUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(Merchants::WebhookPreviousSecretSealed)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Merchants::WebhookPreviousSecretUntil)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Merchants::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            Merchants::WebhookPreviousSecretUntil,
            Merchants::WebhookPreviousSecretSealed,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Merchants::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
