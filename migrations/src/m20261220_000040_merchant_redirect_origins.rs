//! A merchant may list the origins its mobile buyers are redirected to when a window ends
//! (`redirect_origins`, a JSON array of `scheme://host[:port]`): the request that opens a window
//! names its `m_redirect_url` freely, so without a list openport's `Ret_URL` redirects anywhere
//! (review rD F4, domain/redirect_origins.rs). NULL, the value of every existing merchant, keeps
//! iamport's behaviour.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261220_000040_merchant_redirect_origins"
    }
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    RedirectOrigins,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .add_column(ColumnDef::new(Merchants::RedirectOrigins).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .drop_column(Merchants::RedirectOrigins)
                    .to_owned(),
            )
            .await
    }
}
