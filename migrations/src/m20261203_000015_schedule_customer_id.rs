//! A schedule keeps its buyer's id (`customer_id`, iamport's ScheduleResult): the request's
//! `customer_id`, else the billing key's, as the schedule's other buyer fields.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000015_schedule_customer_id"
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    CustomerId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(ColumnDef::new(Schedules::CustomerId).string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .drop_column(Schedules::CustomerId)
                    .to_owned(),
            )
            .await
    }
}
