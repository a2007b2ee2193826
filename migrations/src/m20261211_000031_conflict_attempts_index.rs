//! The attempts closed as `conflict` get their own index, so that `GET /admin/status` (their
//! count) and `openport attempt list --conflicts` (oldest first) read those few rows rather than
//! all of `pg_attempts`, which grows by at least one row per payment and keeps them forever.
//!
//! `pg_attempts_conflicts (id) WHERE state = 'conflict'`: partial, so only a conflict writes an
//! entry (an operator's `reconciled` takes it out again), and on `id`, the listing's order. It
//! costs the payment path nothing more on PostgreSQL: an attempt's close was never a heap-only
//! (HOT) update, `state` being in the predicates of `pg_attempts_due` and
//! `pg_attempts_one_open_cancel` already (migration 000012; docs/performance.md has the count).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261211_000031_conflict_attempts_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX pg_attempts_conflicts ON pg_attempts (id) WHERE state = 'conflict'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX pg_attempts_conflicts")
            .await?;
        Ok(())
    }
}
