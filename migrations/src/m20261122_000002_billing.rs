//! Billing keys (customers) and scheduled payments.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_billing"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    KcpGroupId,
}

#[derive(DeriveIden)]
enum BillingKeys {
    Table,
    Id,
    MerchantId,
    CustomerUid,
    Status,
    BatchKeySealed,
    GroupId,
    PgId,
    CardCode,
    CardName,
    CardNumber,
    CardType,
    CustomerId,
    CustomerName,
    CustomerTel,
    CustomerEmail,
    CustomerAddr,
    CustomerPostcode,
    Sandbox,
    InsertedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    MerchantId,
    CustomerUid,
    MerchantUid,
    ScheduleAt,
    Amount,
    Currency,
    Name,
    BuyerName,
    BuyerEmail,
    BuyerTel,
    BuyerAddr,
    BuyerPostcode,
    CustomData,
    NoticeUrl,
    Status,
    ImpUid,
    PaymentStatus,
    FailReason,
    ExecutedAt,
    RevokedAt,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

fn col(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .add_column(col(Merchants::KcpGroupId).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingKeys::Table)
                    .col(
                        col(BillingKeys::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(col(BillingKeys::MerchantId).big_integer().not_null())
                    .col(col(BillingKeys::CustomerUid).string().not_null())
                    .col(col(BillingKeys::Status).string().not_null())
                    .col(col(BillingKeys::BatchKeySealed).text().not_null())
                    .col(col(BillingKeys::GroupId).string().not_null())
                    .col(col(BillingKeys::PgId).string().not_null())
                    .col(col(BillingKeys::CardCode).string().null())
                    .col(col(BillingKeys::CardName).string().null())
                    .col(col(BillingKeys::CardNumber).string().null())
                    .col(col(BillingKeys::CardType).integer().null())
                    .col(col(BillingKeys::CustomerId).string().null())
                    .col(col(BillingKeys::CustomerName).string().null())
                    .col(col(BillingKeys::CustomerTel).string().null())
                    .col(col(BillingKeys::CustomerEmail).string().null())
                    .col(col(BillingKeys::CustomerAddr).string().null())
                    .col(col(BillingKeys::CustomerPostcode).string().null())
                    .col(col(BillingKeys::Sandbox).boolean().not_null())
                    .col(col(BillingKeys::InsertedAt).big_integer().not_null())
                    .col(col(BillingKeys::UpdatedAt).big_integer().not_null())
                    .col(col(BillingKeys::DeletedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // One active key per customer_uid; replaced and deleted keys stay as history.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX billing_keys_one_active ON billing_keys (merchant_id, customer_uid) \
                 WHERE status = 'active'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(
                        col(Schedules::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(col(Schedules::MerchantId).big_integer().not_null())
                    .col(col(Schedules::CustomerUid).string().not_null())
                    .col(col(Schedules::MerchantUid).string().not_null())
                    .col(col(Schedules::ScheduleAt).big_integer().not_null())
                    .col(col(Schedules::Amount).big_integer().not_null())
                    .col(col(Schedules::Currency).string().not_null())
                    .col(col(Schedules::Name).string().null())
                    .col(col(Schedules::BuyerName).string().null())
                    .col(col(Schedules::BuyerEmail).string().null())
                    .col(col(Schedules::BuyerTel).string().null())
                    .col(col(Schedules::BuyerAddr).string().null())
                    .col(col(Schedules::BuyerPostcode).string().null())
                    .col(col(Schedules::CustomData).text().null())
                    .col(col(Schedules::NoticeUrl).text().null())
                    .col(col(Schedules::Status).string().not_null())
                    .col(col(Schedules::ImpUid).string().null())
                    .col(col(Schedules::PaymentStatus).string().null())
                    .col(col(Schedules::FailReason).string().null())
                    .col(col(Schedules::ExecutedAt).big_integer().null())
                    .col(col(Schedules::RevokedAt).big_integer().null())
                    .col(col(Schedules::LeaseUntil).big_integer().not_null())
                    .col(col(Schedules::CreatedAt).big_integer().not_null())
                    .col(col(Schedules::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("schedules_unique_merchant_uid")
                    .table(Schedules::Table)
                    .col(Schedules::MerchantId)
                    .col(Schedules::MerchantUid)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("schedules_due")
                    .table(Schedules::Table)
                    .col(Schedules::Status)
                    .col(Schedules::ScheduleAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("schedules_by_customer")
                    .table(Schedules::Table)
                    .col(Schedules::MerchantId)
                    .col(Schedules::CustomerUid)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BillingKeys::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .drop_column(Merchants::KcpGroupId)
                    .to_owned(),
            )
            .await
    }
}
