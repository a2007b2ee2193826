//! A payment's cancelled amount lies between 0 and its amount, enforced by the database.
//!
//! Every cancel writes `cancel_amount` conditionally on the value it read (service/cancel.rs), so
//! the code keeps `0 ≤ cancel_amount ≤ amount`; this makes a write that would break it fail instead
//! of recording more money back than was paid. PostgreSQL gets a `CHECK` constraint (added with a
//! scan of `payments` under its lock: existing rows must comply). SQLite cannot add a constraint to
//! an existing table without rebuilding it, so two triggers refuse the same inserts and updates
//! there; rows already stored are not re-checked.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000014_cancel_amount_range"
    }
}

/// What a write outside the range breaks: the constraint's (PostgreSQL) or the triggers' name.
const NAME: &str = "payments_cancel_amount_range";
const OUT_OF_RANGE: &str = "NEW.cancel_amount < 0 OR NEW.cancel_amount > NEW.amount";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(&format!(
                "ALTER TABLE payments ADD CONSTRAINT {NAME} \
                 CHECK (cancel_amount >= 0 AND cancel_amount <= amount)"
            ))
            .await?;
            return Ok(());
        }
        let refuse = format!("BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {NAME}'); END");
        db.execute_unprepared(&format!(
            "CREATE TRIGGER {NAME}_insert BEFORE INSERT ON payments WHEN {OUT_OF_RANGE} {refuse}"
        ))
        .await?;
        db.execute_unprepared(&format!(
            "CREATE TRIGGER {NAME}_update BEFORE UPDATE OF cancel_amount, amount ON payments \
             WHEN {OUT_OF_RANGE} {refuse}"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(&format!("ALTER TABLE payments DROP CONSTRAINT {NAME}"))
                .await?;
            return Ok(());
        }
        db.execute_unprepared(&format!("DROP TRIGGER {NAME}_insert"))
            .await?;
        db.execute_unprepared(&format!("DROP TRIGGER {NAME}_update"))
            .await?;
        Ok(())
    }
}
