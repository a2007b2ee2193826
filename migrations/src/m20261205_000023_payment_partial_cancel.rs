//! A payment remembers KCP's `partcanc_yn` of its card approval ("결제 건의 부분취소 가능 유무",
//! spec/kcp.md §2.4), so that a partial cancel of an approval KCP marked `N` is refused before
//! `STPC` is sent. `true`/`false` for `Y`/`N`; NULL where KCP said nothing: existing rows, other
//! methods, and approvals learnt from an inquiry (whose answer has no such field), which take
//! partial cancels as before.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000023_payment_partial_cancel"
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    PartialCancelAllowed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(
                        ColumnDef::new(Payments::PartialCancelAllowed)
                            .boolean()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .drop_column(Payments::PartialCancelAllowed)
                    .to_owned(),
            )
            .await
    }
}
