//! Virtual accounts awaiting their deposit that the resolver asks KCP about on a schedule
//! (service/vbank_checks.rs): a deposit whose every notification missed openport (a sender not in
//! the allow-list, openport down past KCP's re-sends, KCP's notification URL misconfigured) would
//! otherwise leave the account `ready` for good while KCP holds it paid. One row per `ready`
//! account, `check_at` when it is next asked; the row goes once the account is no longer `ready` or
//! its schedule ends. The accounts already `ready` are scheduled from their last change.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000024_vbank_checks"
    }
}

#[derive(DeriveIden)]
enum VbankChecks {
    Table,
    PaymentId,
    CheckAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
}

const DUE: &str = "vbank_checks_due";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VbankChecks::Table)
                    .col(
                        ColumnDef::new(VbankChecks::PaymentId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(VbankChecks::CheckAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(VbankChecks::Table, VbankChecks::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(DUE)
                    .table(VbankChecks::Table)
                    .col(VbankChecks::CheckAt)
                    .to_owned(),
            )
            .await?;
        // Ten minutes after their last change, as a new account's first look (at once for most).
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO vbank_checks (payment_id, check_at) \
                 SELECT id, updated_at + 600 FROM payments \
                 WHERE status = 'ready' AND pay_method = 'vbank' \
                 AND vbank_num IS NOT NULL AND pg_tid IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(VbankChecks::Table).to_owned())
            .await
    }
}
