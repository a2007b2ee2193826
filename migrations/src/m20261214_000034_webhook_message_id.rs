//! Each webhook delivery stores its Standard Webhooks `webhook-id` (`message_id`) instead of
//! deriving it from the row id (`msg_<id>`).
//!
//! Row ids come from a sequence: after a backup is restored, or a sequence reset, and on a second
//! database sending to the same receiver, they run again over ids already sent, and a receiver
//! that deduplicates on `webhook-id` (Standard Webhooks calls it an idempotency key) silently
//! dropped a new event as one it had already processed (review r4, finding 1). New rows get a
//! random id when they are written (`entity::webhook_delivery::new_message_id`), in the
//! transaction or statement of the change they announce, and keep it on every retry and resend.
//!
//! Existing rows keep the id they were, or would be, sent with: `msg_<id>`, so a pending delivery
//! is retried, and an old one resent, under the id its receiver may already know. This updates
//! every row once (the history the retention keeps). The column's default (`''`) only fills the
//! rows as the column is added; the gateway always writes the id. No index: nothing looks a
//! delivery up by it, and 130 random bits do not repeat.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261214_000034_webhook_message_id"
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    MessageId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .add_column(
                        ColumnDef::new(WebhookDeliveries::MessageId)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        // `||` concatenates text and an integer on SQLite and PostgreSQL alike.
        manager
            .get_connection()
            .execute_unprepared("UPDATE webhook_deliveries SET message_id = 'msg_' || id")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .drop_column(WebhookDeliveries::MessageId)
                    .to_owned(),
            )
            .await
    }
}
