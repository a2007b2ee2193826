//! A schedule's claim token: a random value each claim writes, which the holder's every later
//! write is conditional on (`store::billing::held`). The lease's end had been the token, and it is
//! only unique to the second: a claim that revoke and retry ended and replaced within the same
//! second left the old holder matching the new claim, free to open a second charge.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000019_schedule_claim_token"
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    ClaimToken,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(
                        ColumnDef::new(Schedules::ClaimToken)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .drop_column(Schedules::ClaimToken)
                    .to_owned(),
            )
            .await
    }
}
