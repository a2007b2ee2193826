//! A webhook delivery records whether it goes to the merchant's configured `webhook_url`
//! (`to_merchant_url`), so that the worker can keep a slot of the merchant's for it that the
//! payment's `notice_url`s cannot take (jobs/webhooks.rs, docs/webhooks.md "Concurrency"). A
//! `notice_url` comes from the buyer's browser (`request_pay`), up to 10 per payment: a list of
//! receivers that accept the connection and never answer held every one of the merchant's slots,
//! and its own webhooks waited behind them.
//!
//! Existing rows get `false` (a `notice_url`'s), except pending ones whose URL is the merchant's
//! configured one now: the worker reads the column only on pending rows, and the finished ones
//! are history.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261210_000030_webhook_to_merchant_url"
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    ToMerchantUrl,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .add_column(
                        ColumnDef::new(WebhookDeliveries::ToMerchantUrl)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        // Through `webhook_deliveries_due` (state, next_attempt_at): only the pending rows.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE webhook_deliveries SET to_merchant_url = TRUE WHERE state = 'pending' \
                 AND url = (SELECT webhook_url FROM merchants \
                 WHERE merchants.id = webhook_deliveries.merchant_id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .drop_column(WebhookDeliveries::ToMerchantUrl)
                    .to_owned(),
            )
            .await
    }
}
