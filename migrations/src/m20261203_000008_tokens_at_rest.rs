//! Access tokens at rest: a SHA-256 digest to find one by, the token itself sealed.
//!
//! An access token charges and cancels for 30 minutes, like the imp_secret it was issued for, so
//! a copy of the database must not hand out working tokens. getToken hands out the SAME token while
//! one is valid (spec/iamport-v1.md §1), so the token is kept sealed (AES-256-GCM under the master
//! key, like the KCP keys) and found by its digest (`token_sha256`; a token is 160 random bits, so
//! a plain digest cannot be reversed). Tokens issued before this migration were stored in clear:
//! they are deleted, and their holders get a 401 and ask getToken for a new one.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000008_tokens_at_rest"
    }
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Token,
    TokenSha256,
    TokenSealed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        forget_tokens(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .rename_column(AccessTokens::Token, AccessTokens::TokenSha256)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .add_column(
                        ColumnDef::new(AccessTokens::TokenSealed)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        forget_tokens(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .drop_column(AccessTokens::TokenSealed)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .rename_column(AccessTokens::TokenSha256, AccessTokens::Token)
                    .to_owned(),
            )
            .await
    }
}

/// Tokens of the other format are useless after the change: they go, and their holders ask again.
async fn forget_tokens(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .exec_stmt(Query::delete().from_table(AccessTokens::Table).to_owned())
        .await
}
