//! Schedules by the payment their run made.
//!
//! A cancel of a scheduled charge (`billing::schedule_payment_cancelled`, inside the cancel's
//! write transaction) and the resolver's settling of one (`billing::finish_schedule_of_payment`)
//! find the schedule by `(merchant_id, imp_uid)`; no index held `imp_uid`, so each read every
//! schedule the merchant ever had (they are never deleted) while holding the SQLite writer or the
//! payment's row locks on PostgreSQL. Partial: a schedule not yet run writes no entry, and
//! `imp_uid` is set once, when its run opens the payment.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000027_schedules_by_imp_uid"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX schedules_by_imp_uid ON schedules (imp_uid) \
                 WHERE imp_uid IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX schedules_by_imp_uid")
            .await?;
        Ok(())
    }
}
