//! A KCP notification is a hint that openport verifies by inquiry before it changes a payment
//! (docs/kcp.md §11). `outcome` says what the verification found; it stays NULL while the
//! notification could not be verified (KCP did not answer the inquiry), so KCP's re-send of the same
//! `noti_id` is verified again instead of being taken as done. Rows from before this migration were
//! never verified and are NULL too: a re-send of one is verified like a new notification.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000010_notification_outcome"
    }
}

#[derive(DeriveIden)]
enum KcpNotifications {
    Table,
    Outcome,
    VerifiedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(KcpNotifications::Table)
                    .add_column(ColumnDef::new(KcpNotifications::Outcome).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(KcpNotifications::Table)
                    .add_column(
                        ColumnDef::new(KcpNotifications::VerifiedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [KcpNotifications::VerifiedAt, KcpNotifications::Outcome] {
            manager
                .alter_table(
                    Table::alter()
                        .table(KcpNotifications::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
