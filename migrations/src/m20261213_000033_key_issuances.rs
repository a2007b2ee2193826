//! Billing-key issuances asked of KCP through the API (`POST /subscribe/customers/{uid}`, a
//! schedule with card data, a `onetime` keeping its card), each recorded before KCP is called.
//!
//! KCP was asked for a batch key (spec/kcp.md §2.5) with nothing written first: a crash, or a
//! database failure, after KCP issued it left no trace of the key in openport, and KCP has no
//! inquiry for an issuance. Only the ERROR line of a lost answer named its order number, and a
//! crash logged nothing. A charge records its attempt before the call (`pg_attempts`), but that
//! table is a payment's (`payment_id` NOT NULL, its rows read by the resolver, which inquires):
//! an issuance has no payment and nothing to inquire, so it has its own table.
//!
//! One row per issuance, written `pending` before the call and closed by the request: `issued` in
//! the transaction that stores the key, `refused`, `not_sent`, or `discarded` (an issued key that
//! could not be stored, recorded for its deletion at KCP or deleted there). `pending` (a request
//! that died) and `unknown` (an answer lost) stay open for an operator, who looks the order number
//! up in KCP's admin and marks it `reconciled` (`openport attempt reconciled --order-no`). No card
//! data and no key: merchant, customer_uid, kind, the order number KCP knows it by.
//!
//! `key_issuances_open (id) WHERE state IN ('pending', 'unknown')`: partial, so the listing and
//! `GET /admin/status`'s count read the few open rows, never the history.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261213_000033_key_issuances"
    }
}

#[derive(DeriveIden)]
enum KeyIssuances {
    Table,
    Id,
    MerchantId,
    CustomerUid,
    Kind,
    OrderNo,
    State,
    Note,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Merchants {
    Table,
    Id,
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}
fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyIssuances::Table)
                    .col(
                        ColumnDef::new(KeyIssuances::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(KeyIssuances::MerchantId))
                    .col(text(KeyIssuances::CustomerUid))
                    .col(text(KeyIssuances::Kind))
                    .col(text(KeyIssuances::OrderNo))
                    .col(text(KeyIssuances::State))
                    .col(ColumnDef::new(KeyIssuances::Note).string().null())
                    .col(big(KeyIssuances::CreatedAt))
                    .col(big(KeyIssuances::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(KeyIssuances::Table, KeyIssuances::MerchantId)
                            .to(Merchants::Table, Merchants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX key_issuances_open ON key_issuances (id) \
                 WHERE state IN ('pending', 'unknown')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyIssuances::Table).to_owned())
            .await
    }
}
