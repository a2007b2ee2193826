//! An attempt remembers whether its call provably never left openport (`unsent`): true from the
//! insert of a scheduled charge's attempt until the write its holder makes just before the call
//! (service/attempts.rs `Gateway::mark_sending`), a write conditional on still holding the
//! attempt, so no call is made once anyone else has claimed it.
//!
//! Without it, an instance killed between committing a scheduled charge's attempt and calling KCP
//! left an attempt indistinguishable from one whose call was lost: the resolver settled it by
//! inquiry, found nothing and failed the payment, with a `failed` webhook, and the schedule ended
//! `executed`/`failed` for a charge nobody made (review r3: 12 of 8,514 schedules under kill -9).
//! An attempt still `unsent` when the resolver claims it is closed as never sent and its schedule
//! handed back to run again (service/schedules.rs `Gateway::settle_unsent_charge`).
//!
//! The default is `false`, "may have been sent": existing rows, and rows an older instance inserts
//! during a rolling upgrade, keep today's path (inquiry), never a second run.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261218_000038_attempt_unsent"
    }
}

#[derive(DeriveIden)]
enum PgAttempts {
    Table,
    Unsent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .add_column(
                        ColumnDef::new(PgAttempts::Unsent)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .drop_column(PgAttempts::Unsent)
                    .to_owned(),
            )
            .await
    }
}
