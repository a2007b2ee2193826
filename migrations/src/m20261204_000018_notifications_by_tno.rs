//! Notifications by virtual account (`tno`, then `id`): a deposit's verification reads the newest
//! notification of its account before it asks KCP and again when it writes, so that a reversal
//! that arrived meanwhile (and was judged against a payment not yet paid) stops it
//! (service/notifications.rs). Without the index each of those reads scans the table, which
//! anyone who can reach the public endpoint can grow.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000018_notifications_by_tno"
    }
}

#[derive(DeriveIden)]
enum KcpNotifications {
    Table,
    Tno,
    Id,
}

const INDEX: &str = "kcp_notifications_by_tno";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(KcpNotifications::Table)
                    .col(KcpNotifications::Tno)
                    .col(KcpNotifications::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(KcpNotifications::Table)
                    .to_owned(),
            )
            .await
    }
}
