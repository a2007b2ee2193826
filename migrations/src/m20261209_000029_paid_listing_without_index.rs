//! `payments.paid_at` leaves every index, so that a charge's outcome (pending → paid) is a
//! heap-only update again on PostgreSQL.
//!
//! Migration 000026 indexed `paid_at` (`payments_by_paid`) so that `GET /payments/status/paid`
//! reads its window and not the merchant's history. On PostgreSQL an update that changes an
//! indexed column cannot be heap-only (HOT): the row's new version then goes into every index of
//! `payments` (six or seven entries per paid charge), which cost PostgreSQL 5–8 % of its charges per
//! second (docs/performance.md). A paid payment's `paid_at` is close to its `started_at` except
//! for the few paid much later (a virtual account's deposit, an outcome settled late), so the paid
//! listing reads `payments_by_started` over its window widened by a margin instead: one hour, plus
//! the largest distance between the two times of any of the merchant's payments, kept in
//! `merchants.paid_lag_secs` by a trigger that runs only for a payment paid more than an hour away
//! from its start ([`PAID_LAG_FREE_SECS`]). The trigger is the database's, so no
//! code path that records a payment paid can forget it. The listing reads the margin in the same
//! statement, so a payment its snapshot sees was counted into the margin it reads.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261209_000029_paid_listing_without_index"
    }
}

/// Distances up to this are in every paid listing's margin (openport's `store::payments`, which
/// reads it from here); only larger ones are recorded.
pub const PAID_LAG_FREE_SECS: i64 = 3600;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "ALTER TABLE merchants ADD COLUMN paid_lag_secs BIGINT NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE merchants SET paid_lag_secs = COALESCE((SELECT MAX(ABS(paid_at - started_at)) \
             FROM payments WHERE payments.merchant_id = merchants.id AND paid_at IS NOT NULL), 0)",
        )
        .await?;
        let when = format!(
            "NEW.paid_at IS NOT NULL AND ABS(NEW.paid_at - NEW.started_at) > {PAID_LAG_FREE_SECS}"
        );
        let raise = "UPDATE merchants SET paid_lag_secs = ABS(NEW.paid_at - NEW.started_at) \
                     WHERE id = NEW.merchant_id AND paid_lag_secs < ABS(NEW.paid_at - NEW.started_at)";
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(&format!(
                "CREATE FUNCTION openport_paid_lag() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN {raise}; RETURN NULL; END $$"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER payments_paid_lag AFTER INSERT OR UPDATE OF paid_at, started_at \
                 ON payments FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION openport_paid_lag()"
            ))
            .await?;
        } else {
            for (name, event) in [
                ("payments_paid_lag_insert", "INSERT"),
                ("payments_paid_lag_update", "UPDATE OF paid_at, started_at"),
            ] {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {name} AFTER {event} ON payments FOR EACH ROW WHEN {when} \
                     BEGIN {raise}; END"
                ))
                .await?;
            }
        }
        db.execute_unprepared("DROP INDEX payments_by_paid").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX payments_by_paid ON payments (merchant_id, paid_at) \
             WHERE paid_at IS NOT NULL",
        )
        .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP TRIGGER payments_paid_lag ON payments")
                .await?;
            db.execute_unprepared("DROP FUNCTION openport_paid_lag()")
                .await?;
        } else {
            db.execute_unprepared("DROP TRIGGER payments_paid_lag_insert")
                .await?;
            db.execute_unprepared("DROP TRIGGER payments_paid_lag_update")
                .await?;
        }
        db.execute_unprepared("ALTER TABLE merchants DROP COLUMN paid_lag_secs")
            .await?;
        Ok(())
    }
}
