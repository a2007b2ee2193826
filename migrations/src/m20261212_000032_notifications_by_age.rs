//! `kcp_notifications` read by age. Two queries select its rows by `received_at`, and the table's
//! only indexes were on `noti_id` and `(tno, id)`, so each read the whole table, which anyone who
//! can reach the public endpoint can grow and which keeps `retention_days` (90) of notifications:
//!
//! - `kcp_notifications_undecided (received_at) WHERE outcome IS NULL`: the resolver's re-verify
//!   sweep (`store::notifications::unverified`), every minute on every instance, reads the
//!   undecided deposits of its window newest first. Partial, so it holds only the few rows still
//!   undecided; a verdict takes its row out (on PostgreSQL that update is then no longer
//!   heap-only, once per notification).
//! - `kcp_notifications_by_received (received_at, id)`: the hourly prune
//!   (`store::notifications::prune`) reads the rows past its cutoff in its order (`received_at,
//!   id`) and stops at its batch or at the cutoff, instead of walking every row in id order on
//!   the writer (on SQLite, every other write waits for it). With `id` in the key PostgreSQL
//!   reads the batch in index order too, rather than sorting every row past the cutoff (SQLite
//!   keys every index by rowid anyway). Neither column ever changes: one entry per notification.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261212_000032_notifications_by_age"
    }
}

const INDEXES: [(&str, &str); 2] = [
    (
        "kcp_notifications_undecided",
        "ON kcp_notifications (received_at) WHERE outcome IS NULL",
    ),
    (
        "kcp_notifications_by_received",
        "ON kcp_notifications (received_at, id)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        Ok(())
    }
}
