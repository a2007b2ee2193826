//! KCP's common notification names a virtual account by its `tno` only (spec/kcp.md §2.12), and
//! `payments.pg_tid` has no index: every notification, and every re-verification of one, read the
//! whole `payments` table. The endpoint is public, so anyone could make openport scan it at will.
//!
//! The index goes on `pg_attempts.tno`, not on `payments.pg_tid`: a card payment's change to `paid`
//! sets `pg_tid`, and an index on it would stop that update from being a heap-only (HOT) update on
//! PostgreSQL (migration 000005). An attempt's close is never HOT anyway (its state is in the
//! predicate of `pg_attempts_due`), so one more index there costs one entry per closed attempt.
//! Every account is recorded with its attempt's `tno` in the same write (`settle_window`).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000012_attempts_by_tno"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX pg_attempts_by_tno ON pg_attempts (tno) WHERE tno IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX pg_attempts_by_tno")
            .await?;
        Ok(())
    }
}
