//! Webhook outbox (spec/iamport-v1.md §5): merchant webhook settings, one delivery row per
//! (event, target URL), and every HTTP attempt made for it.
//!
//! A delivery row is written in the same transaction as the payment change it reports, so an
//! event is never lost nor announced without having happened. Workers claim rows with a
//! conditional UPDATE on `lease_until` (no lock is held during the HTTP call).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000003_webhooks"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    Id,
    WebhookUrl,
    WebhookContentType,
    WebhookSecretSealed,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    MerchantId,
    ImpUid,
    MerchantUid,
    Status,
    CancellationId,
    Url,
    ContentType,
    State,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastHttpStatus,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    DeliveryId,
    Url,
    AttemptedAt,
    HttpStatus,
    Error,
    ResponseExcerpt,
    DurationMs,
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}
fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}
fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}
fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(Merchants::WebhookUrl)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Merchants::WebhookContentType)
                .string()
                .not_null()
                .default("json")
                .to_owned(),
            ColumnDef::new(Merchants::WebhookSecretSealed)
                .text()
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

        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(id(WebhookDeliveries::Id))
                    .col(big(WebhookDeliveries::MerchantId))
                    .col(text(WebhookDeliveries::ImpUid))
                    .col(text(WebhookDeliveries::MerchantUid))
                    .col(text(WebhookDeliveries::Status))
                    .col(text_null(WebhookDeliveries::CancellationId))
                    .col(ColumnDef::new(WebhookDeliveries::Url).text().not_null())
                    .col(text(WebhookDeliveries::ContentType))
                    .col(text(WebhookDeliveries::State))
                    .col(
                        ColumnDef::new(WebhookDeliveries::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(big(WebhookDeliveries::NextAttemptAt))
                    .col(big(WebhookDeliveries::LeaseUntil))
                    .col(
                        ColumnDef::new(WebhookDeliveries::LastHttpStatus)
                            .integer()
                            .null(),
                    )
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(big(WebhookDeliveries::CreatedAt))
                    .col(big(WebhookDeliveries::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::MerchantId)
                            .to(Merchants::Table, Merchants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The worker's query: due pending rows.
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::State)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_by_imp_uid")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::ImpUid)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_by_merchant")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::MerchantId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(id(WebhookAttempts::Id))
                    .col(big(WebhookAttempts::DeliveryId))
                    .col(ColumnDef::new(WebhookAttempts::Url).text().not_null())
                    .col(big(WebhookAttempts::AttemptedAt))
                    .col(ColumnDef::new(WebhookAttempts::HttpStatus).integer().null())
                    .col(text_null(WebhookAttempts::Error))
                    .col(text_null(WebhookAttempts::ResponseExcerpt))
                    .col(big(WebhookAttempts::DurationMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookAttempts::Table, WebhookAttempts::DeliveryId)
                            .to(WebhookDeliveries::Table, WebhookDeliveries::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_attempts_by_delivery")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::DeliveryId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        for col in [
            Merchants::WebhookSecretSealed.into_iden(),
            Merchants::WebhookContentType.into_iden(),
            Merchants::WebhookUrl.into_iden(),
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
