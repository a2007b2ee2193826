//! One row `GET /health` rewrites on every check, so that the check proves a write can commit,
//! not only that a connection answers `SELECT 1`.
//!
//! A database that answers but refuses every write (a full disk under SQLite, a read-only file, a
//! PostgreSQL session that is read-only after a failover or `default_transaction_read_only`) made
//! every payment fail with HTTP 500 while `/health` said `ok`, so a load balancer kept sending
//! buyers there. The row is created here, so the check only ever updates it.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261216_000036_health_probe"
    }
}

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    CheckedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthProbe::Table)
                    .col(
                        ColumnDef::new(HealthProbe::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(HealthProbe::CheckedAt)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO health_probe (id, checked_at) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HealthProbe::Table).to_owned())
            .await
    }
}
