//! A schedule keeps its instalment months (`card_quota`, iamport's ScheduleAnnotation), which the
//! charge it makes must use: before this column a scheduled charge was always a lump sum.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000006_schedule_card_quota"
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    CardQuota,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(
                        ColumnDef::new(Schedules::CardQuota)
                            .integer()
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
                    .drop_column(Schedules::CardQuota)
                    .to_owned(),
            )
            .await
    }
}
