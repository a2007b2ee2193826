//! One live access token per merchant, whichever instance issues it.
//!
//! iamport hands out the SAME token while one is valid (spec/iamport-v1.md §1). Reading the live
//! token and inserting a new one when there is none lets two concurrent first calls (on one
//! instance or on several sharing a database) each insert their own. `live_slot` holds the
//! merchant's id on the token getToken hands out and is unique, so only one such token can exist
//! per merchant: issuing is an upsert into that slot that replaces the slot's token only once it
//! has expired (`store::merchants::claim_token_slot`). Tokens from before this migration have no
//! slot; they stay valid until they expire.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_one_live_token"
    }
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    LiveSlot,
}

const INDEX: &str = "access_tokens_one_live_per_merchant";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .add_column(ColumnDef::new(AccessTokens::LiveSlot).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AccessTokens::Table)
                    .col(AccessTokens::LiveSlot)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(AccessTokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .drop_column(AccessTokens::LiveSlot)
                    .to_owned(),
            )
            .await
    }
}
