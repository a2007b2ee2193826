//! When a notified deposit was made (`ipgm_time`, spec/kcp.md §2.12, as Unix seconds): once KCP
//! confirms the deposit, it is the payment's `paid_at` (clamped to the account's issuance and the
//! moment it is applied, since the form is unsigned), not the moment openport got to confirm it,
//! which the resolver's sweep can make hours later (service/notifications.rs). NULL when the
//! notification carried none, and for the rows from before.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000025_notification_deposited_at"
    }
}

#[derive(DeriveIden)]
enum KcpNotifications {
    Table,
    DepositedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(KcpNotifications::Table)
                    .add_column(
                        ColumnDef::new(KcpNotifications::DepositedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(KcpNotifications::Table)
                    .drop_column(KcpNotifications::DepositedAt)
                    .to_owned(),
            )
            .await
    }
}
