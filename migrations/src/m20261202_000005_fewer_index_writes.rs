//! Fewer index writes per payment.
//!
//! **Payments are updated in place on PostgreSQL.** A payment row changes status once or twice in
//! its life (ready → paid → cancelled). While `status` was part of an index
//! (`payments_by_status_started`, and the predicate of the partial unique index
//! `payments_one_live_per_merchant_uid`), every such change wrote a new version of the row into all
//! seven indexes of `payments`. When no indexed column changes, PostgreSQL makes a heap-only-tuple
//! (HOT) update instead, which touches no index, given room on the row's page; the lower
//! fillfactor keeps that room. (docs/performance.md has the measurements.)
//!
//! - The double-charge guard stays a unique index, over a generated column instead of a partial
//!   predicate: `failed_key` is 0 for a payment that is not `failed` and the payment's own id once
//!   it is, so `(merchant_id, merchant_uid, failed_key)` admits one live payment per merchant_uid
//!   and any number of failed ones, exactly as the partial index did. `failed_key` changes only
//!   when a payment fails, so a payment that is paid or cancelled keeps its index entries. The
//!   same index answers lookups by merchant_uid (its first two columns), which replaces
//!   `payments_by_merchant_uid`.
//! - Lists by status read `payments_by_started` and filter on status: the status index is what
//!   made every status change rewrite the indexes.
//! - SQLite gets the same schema (a VIRTUAL generated column: SQLite cannot add a STORED one), so
//!   both databases run the same queries.
//!
//! **Closed attempts leave the resolver's index.** `pg_attempts_open (state, next_check_at)` held
//! every attempt ever made, and each attempt's close wrote a new entry into it. Its replacement
//! `pg_attempts_due (next_check_at) WHERE state IN ('pending', 'unknown')` holds only the open
//! ones, which is all the resolver reads, and a closing attempt writes nothing into it.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000005_fewer_index_writes"
    }
}

const FAILED_KEY: &str = "CASE WHEN status = 'failed' THEN id ELSE 0 END";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        let (column_type, storage) = if postgres {
            ("BIGINT", "STORED")
        } else {
            ("INTEGER", "VIRTUAL")
        };
        db.execute_unprepared(&format!(
            "ALTER TABLE payments ADD COLUMN failed_key {column_type} NOT NULL \
             GENERATED ALWAYS AS ({FAILED_KEY}) {storage}"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX payments_one_live_per_merchant_uid_key \
             ON payments (merchant_id, merchant_uid, failed_key)",
        )
        .await?;
        for old in [
            "payments_one_live_per_merchant_uid",
            "payments_by_merchant_uid",
            "payments_by_status_started",
        ] {
            db.execute_unprepared(&format!("DROP INDEX {old}")).await?;
        }
        if postgres {
            // Room on each page for the next version of its rows (HOT needs the same page).
            db.execute_unprepared("ALTER TABLE payments SET (fillfactor = 80)")
                .await?;
        }
        db.execute_unprepared(
            "CREATE INDEX pg_attempts_due ON pg_attempts (next_check_at) \
             WHERE state IN ('pending', 'unknown')",
        )
        .await?;
        db.execute_unprepared("DROP INDEX pg_attempts_open").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE payments RESET (fillfactor)")
                .await?;
        }
        for sql in [
            "CREATE INDEX pg_attempts_open ON pg_attempts (state, next_check_at)",
            "DROP INDEX pg_attempts_due",
            "CREATE UNIQUE INDEX payments_one_live_per_merchant_uid \
             ON payments (merchant_id, merchant_uid) WHERE status <> 'failed'",
            "CREATE INDEX payments_by_merchant_uid ON payments (merchant_id, merchant_uid)",
            "CREATE INDEX payments_by_status_started ON payments (merchant_id, status, started_at)",
            "DROP INDEX payments_one_live_per_merchant_uid_key",
            "ALTER TABLE payments DROP COLUMN failed_key",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
