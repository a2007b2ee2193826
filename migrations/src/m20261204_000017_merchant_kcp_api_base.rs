//! A merchant may name its own KCP origin (`kcp_api_base`): one instance can then serve a
//! merchant on KCP's staging hosts beside others on the instance's KCP (issue 2 §1: "KCP URLs"
//! per merchant). NULL, the value of every existing merchant, keeps the instance's URLs.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000017_merchant_kcp_api_base"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    KcpApiBase,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .add_column(ColumnDef::new(Merchants::KcpApiBase).string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .drop_column(Merchants::KcpApiBase)
                    .to_owned(),
            )
            .await
    }
}
