//! Core tables: merchants, tokens, payments, cancellations, KCP attempts, prepares.
//!
//! Timestamps are Unix seconds (UTC) in BIGINT columns: the API renders exactly that, and it is
//! the one representation SQLite and PostgreSQL compare the same way.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_core"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    Id,
    ImpCode,
    Name,
    ImpKey,
    ImpSecretHash,
    SiteCd,
    KcpCertificatePem,
    KcpPrivateKeySealed,
    KcpPassphraseSealed,
    TestMode,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Token,
    MerchantId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    ImpUid,
    MerchantId,
    MerchantUid,
    OrderNo,
    Status,
    PayMethod,
    Channel,
    PgProvider,
    PgId,
    PgTid,
    Amount,
    CancelAmount,
    Currency,
    Name,
    BuyerName,
    BuyerEmail,
    BuyerTel,
    BuyerAddr,
    BuyerPostcode,
    CustomData,
    NoticeUrl,
    UserAgent,
    CardCode,
    CardName,
    CardNumber,
    CardType,
    CardQuota,
    ApplyNum,
    FailReason,
    CancelReason,
    Sandbox,
    CustomerUid,
    CustomerUidUsage,
    StartedAt,
    PaidAt,
    FailedAt,
    CancelledAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Cancellations {
    Table,
    Id,
    PaymentId,
    CancellationId,
    PgTid,
    Amount,
    Reason,
    CancelledAt,
}

#[derive(DeriveIden)]
enum PgAttempts {
    Table,
    Id,
    PaymentId,
    Kind,
    State,
    OrderNo,
    Tno,
    Amount,
    Reason,
    ResultCode,
    ResultMessage,
    Tries,
    NextCheckAt,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Prepares {
    Table,
    Id,
    MerchantId,
    MerchantUid,
    Amount,
    Currency,
    CreatedAt,
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}
fn big_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().null().to_owned()
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
        manager
            .create_table(
                Table::create()
                    .table(Merchants::Table)
                    .col(id(Merchants::Id))
                    .col(text(Merchants::ImpCode).unique_key().to_owned())
                    .col(text(Merchants::Name))
                    .col(text(Merchants::ImpKey).unique_key().to_owned())
                    .col(text(Merchants::ImpSecretHash))
                    .col(text(Merchants::SiteCd))
                    .col(
                        ColumnDef::new(Merchants::KcpCertificatePem)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Merchants::KcpPrivateKeySealed)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Merchants::KcpPassphraseSealed)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Merchants::TestMode).boolean().not_null())
                    .col(big(Merchants::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(text(AccessTokens::Token).primary_key().to_owned())
                    .col(big(AccessTokens::MerchantId))
                    .col(big(AccessTokens::CreatedAt))
                    .col(big(AccessTokens::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::MerchantId)
                            .to(Merchants::Table, Merchants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_by_merchant")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::MerchantId)
                    .col(AccessTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(id(Payments::Id))
                    .col(text(Payments::ImpUid).unique_key().to_owned())
                    .col(big(Payments::MerchantId))
                    .col(text(Payments::MerchantUid))
                    .col(text(Payments::OrderNo).unique_key().to_owned())
                    .col(text(Payments::Status))
                    .col(text(Payments::PayMethod))
                    .col(text(Payments::Channel))
                    .col(text(Payments::PgProvider))
                    .col(text(Payments::PgId))
                    .col(text_null(Payments::PgTid))
                    .col(big(Payments::Amount))
                    .col(big(Payments::CancelAmount))
                    .col(text(Payments::Currency))
                    .col(text_null(Payments::Name))
                    .col(text_null(Payments::BuyerName))
                    .col(text_null(Payments::BuyerEmail))
                    .col(text_null(Payments::BuyerTel))
                    .col(text_null(Payments::BuyerAddr))
                    .col(text_null(Payments::BuyerPostcode))
                    .col(ColumnDef::new(Payments::CustomData).text().null())
                    .col(ColumnDef::new(Payments::NoticeUrl).text().null())
                    .col(text_null(Payments::UserAgent))
                    .col(text_null(Payments::CardCode))
                    .col(text_null(Payments::CardName))
                    .col(text_null(Payments::CardNumber))
                    .col(ColumnDef::new(Payments::CardType).integer().null())
                    .col(ColumnDef::new(Payments::CardQuota).integer().not_null())
                    .col(text_null(Payments::ApplyNum))
                    .col(text_null(Payments::FailReason))
                    .col(text_null(Payments::CancelReason))
                    .col(ColumnDef::new(Payments::Sandbox).boolean().not_null())
                    .col(text_null(Payments::CustomerUid))
                    .col(text_null(Payments::CustomerUidUsage))
                    .col(big(Payments::StartedAt))
                    .col(big_null(Payments::PaidAt))
                    .col(big_null(Payments::FailedAt))
                    .col(big_null(Payments::CancelledAt))
                    .col(big(Payments::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Payments::Table, Payments::MerchantId)
                            .to(Merchants::Table, Merchants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The double-charge guard: at most one payment per (merchant, merchant_uid) that is not
        // `failed`. A pending attempt holds the slot, so concurrent requests with the same
        // merchant_uid cannot both reach KCP; failed attempts may share a merchant_uid as in iamport.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX payments_one_live_per_merchant_uid \
                 ON payments (merchant_id, merchant_uid) WHERE status <> 'failed'",
            )
            .await?;
        for (name, cols) in [
            (
                "payments_by_merchant_uid",
                vec![Payments::MerchantId, Payments::MerchantUid],
            ),
            (
                "payments_by_status_started",
                vec![Payments::MerchantId, Payments::Status, Payments::StartedAt],
            ),
            (
                "payments_by_started",
                vec![Payments::MerchantId, Payments::StartedAt],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Payments::Table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Cancellations::Table)
                    .col(id(Cancellations::Id))
                    .col(big(Cancellations::PaymentId))
                    .col(text(Cancellations::CancellationId).unique_key().to_owned())
                    .col(text(Cancellations::PgTid))
                    .col(big(Cancellations::Amount))
                    .col(text_null(Cancellations::Reason))
                    .col(big(Cancellations::CancelledAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Cancellations::Table, Cancellations::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cancellations_by_payment")
                    .table(Cancellations::Table)
                    .col(Cancellations::PaymentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PgAttempts::Table)
                    .col(id(PgAttempts::Id))
                    .col(big(PgAttempts::PaymentId))
                    .col(text(PgAttempts::Kind))
                    .col(text(PgAttempts::State))
                    .col(text(PgAttempts::OrderNo))
                    .col(text_null(PgAttempts::Tno))
                    .col(big(PgAttempts::Amount))
                    .col(text_null(PgAttempts::Reason))
                    .col(text_null(PgAttempts::ResultCode))
                    .col(text_null(PgAttempts::ResultMessage))
                    .col(ColumnDef::new(PgAttempts::Tries).integer().not_null())
                    .col(big(PgAttempts::NextCheckAt))
                    .col(big(PgAttempts::LeaseUntil))
                    .col(big(PgAttempts::CreatedAt))
                    .col(big(PgAttempts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PgAttempts::Table, PgAttempts::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("pg_attempts_open")
                    .table(PgAttempts::Table)
                    .col(PgAttempts::State)
                    .col(PgAttempts::NextCheckAt)
                    .to_owned(),
            )
            .await?;
        // At most one cancel in flight per payment, so two concurrent partial cancels can never
        // both pass the balance check.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX pg_attempts_one_open_cancel ON pg_attempts (payment_id) \
                 WHERE kind = 'cancel' AND state IN ('pending', 'unknown')",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("pg_attempts_by_payment")
                    .table(PgAttempts::Table)
                    .col(PgAttempts::PaymentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Prepares::Table)
                    .col(id(Prepares::Id))
                    .col(big(Prepares::MerchantId))
                    .col(text(Prepares::MerchantUid))
                    .col(big(Prepares::Amount))
                    .col(text_null(Prepares::Currency))
                    .col(big(Prepares::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Prepares::Table, Prepares::MerchantId)
                            .to(Merchants::Table, Merchants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("prepares_unique_merchant_uid")
                    .table(Prepares::Table)
                    .col(Prepares::MerchantId)
                    .col(Prepares::MerchantUid)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Prepares::Table.into_iden(),
            PgAttempts::Table.into_iden(),
            Cancellations::Table.into_iden(),
            Payments::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            Merchants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
