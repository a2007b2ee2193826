//! One KCP trade (`tno`) is ever held by one payment, enforced by the database.
//!
//! An approval answer naming a trade another payment already holds (a cross-wired or replayed
//! answer whose order number is this payment's: review r4) was recorded as this payment's: two
//! payments paid under one `pg_tid`, and a cancel of the second refunded the first's trade. The
//! service checks the holder before it records (`Gateway::foreign_holder`), but two approvals
//! recorded at once would both pass that check; the database is where it cannot be raced.
//!
//! `payment_trades (tno, sandbox) → payment_id` holds every trade a payment has been
//! recorded with, filled by triggers on `payments` whenever a row gets a `pg_tid` it did not have
//! (a trade the same payment held before is not claimed again), so no code path that records a
//! trade can forget it. A second payment's claim of a claimed trade is a unique violation that
//! rolls back the whole write (`store::is_trade_clash`). The claim stays when the payment moves on
//! to another trade (a point re-approval: service/benepia.rs): the first trade was its, and is
//! never another payment's to record or cancel.
//!
//! A trade is KCP's, not a merchant's: KCP numbers trades across all its sites, and merchants may
//! share one site (test mode's `T0000`, two shops on one KCP contract), so an answer to one
//! merchant naming another merchant's trade must be refused as well, or a cancel of it refunds
//! the other merchant's buyer. Payments of test mode (`sandbox`: KCP's test system or the
//! embedded sandbox) and live payments are numbered by different systems, so each has its own
//! trades.
//!
//! Not a unique index on `payments.pg_tid`: a card payment's change to `paid` sets `pg_tid`, and
//! an index on it would stop that update from being heap-only (HOT) on PostgreSQL (migrations
//! 000005, 000012, 000029; docs/performance.md). A claim costs one insert into a narrow table.
//!
//! A database that already holds payments sharing a trade still migrates: its trade is claimed
//! for the oldest of them (the lowest id), nothing of the payments is changed, and every one of
//! them gets an unreconciled `conflict` attempt of kind [`SHARED_TRADE`] naming the trade, so that
//! an operator finds them (`openport attempt list --conflicts`) and none takes an API cancel,
//! which could refund another buyer's trade, until reconciled (docs/operations.md).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261219_000039_one_payment_per_trade"
    }
}

/// `pg_attempts.kind` of the conflict listing a payment that shared its trade with another before
/// this migration (openport's `store::payments::SHARED_TRADE`).
pub const SHARED_TRADE: &str = "shared_trade";

/// The claim a trigger makes for the payment row `NEW`; nothing when it claimed the trade before.
const CLAIM: &str = "INSERT INTO payment_trades (tno, sandbox, payment_id) \
     SELECT NEW.pg_tid, NEW.sandbox, NEW.id WHERE NOT EXISTS (SELECT 1 FROM payment_trades \
     WHERE tno = NEW.pg_tid AND sandbox = NEW.sandbox AND payment_id = NEW.id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        db.execute_unprepared(
            "CREATE TABLE payment_trades (tno TEXT NOT NULL, sandbox BOOLEAN NOT NULL, \
             payment_id BIGINT NOT NULL, PRIMARY KEY (tno, sandbox))",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO payment_trades (tno, sandbox, payment_id) \
             SELECT pg_tid, sandbox, MIN(id) FROM payments WHERE pg_tid IS NOT NULL \
             GROUP BY pg_tid, sandbox",
        )
        .await?;
        let now = if postgres {
            "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"
        } else {
            "CAST(strftime('%s', 'now') AS INTEGER)"
        };
        db.execute_unprepared(&format!(
            "INSERT INTO pg_attempts (payment_id, kind, state, order_no, tno, amount, \
             result_message, tries, next_check_at, lease_until, created_at, sent_at, updated_at, \
             notify) \
             SELECT id, '{SHARED_TRADE}', 'conflict', order_no, pg_tid, amount, \
             'upgrade: KCP trade ' || pg_tid || ' is recorded on more than one payment; which one \
             KCP approved it for is unknown: reconcile by hand', 0, 0, 0, {now}, {now}, {now}, \
             false FROM payments WHERE pg_tid IS NOT NULL AND (sandbox, pg_tid) IN \
             (SELECT sandbox, pg_tid FROM payments WHERE pg_tid IS NOT NULL \
             GROUP BY sandbox, pg_tid HAVING COUNT(*) > 1) ORDER BY id"
        ))
        .await?;
        if postgres {
            db.execute_unprepared(&format!(
                "CREATE FUNCTION openport_claim_trade() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN {CLAIM}; RETURN NULL; END $$"
            ))
            .await?;
            db.execute_unprepared(
                "CREATE TRIGGER payments_trade_claim_insert AFTER INSERT ON payments \
                 FOR EACH ROW WHEN (NEW.pg_tid IS NOT NULL) EXECUTE FUNCTION openport_claim_trade()",
            )
            .await?;
            db.execute_unprepared(
                "CREATE TRIGGER payments_trade_claim_update AFTER UPDATE OF pg_tid ON payments \
                 FOR EACH ROW WHEN (NEW.pg_tid IS NOT NULL AND NEW.pg_tid IS DISTINCT FROM OLD.pg_tid) \
                 EXECUTE FUNCTION openport_claim_trade()",
            )
            .await?;
        } else {
            for (name, event, when) in [
                (
                    "payments_trade_claim_insert",
                    "INSERT",
                    "NEW.pg_tid IS NOT NULL",
                ),
                (
                    "payments_trade_claim_update",
                    "UPDATE OF pg_tid",
                    "NEW.pg_tid IS NOT NULL AND NEW.pg_tid IS NOT OLD.pg_tid",
                ),
            ] {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {name} AFTER {event} ON payments FOR EACH ROW WHEN {when} \
                     BEGIN {CLAIM}; END"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP TRIGGER payments_trade_claim_insert ON payments")
                .await?;
            db.execute_unprepared("DROP TRIGGER payments_trade_claim_update ON payments")
                .await?;
            db.execute_unprepared("DROP FUNCTION openport_claim_trade()")
                .await?;
        } else {
            db.execute_unprepared("DROP TRIGGER payments_trade_claim_insert")
                .await?;
            db.execute_unprepared("DROP TRIGGER payments_trade_claim_update")
                .await?;
        }
        db.execute_unprepared(&format!(
            "DELETE FROM pg_attempts WHERE kind = '{SHARED_TRADE}'"
        ))
        .await?;
        db.execute_unprepared("DROP TABLE payment_trades").await?;
        Ok(())
    }
}
