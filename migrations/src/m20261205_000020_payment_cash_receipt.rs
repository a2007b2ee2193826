//! A payment remembers whether the buyer asked KCP's window for a cash receipt (`cash_yn`,
//! spec/kcp.md §1.1, §2.3) of a bank transfer or a virtual account, so that the Payment object's
//! `cash_receipt_issued` (spec/iamport-v1.md §3) says so instead of always `false`. Existing rows
//! get `false`: nothing recorded that any receipt was asked for.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000020_payment_cash_receipt"
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    CashReceipt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(
                        ColumnDef::new(Payments::CashReceipt)
                            .boolean()
                            .not_null()
                            .default(false),
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
                    .drop_column(Payments::CashReceipt)
                    .to_owned(),
            )
            .await
    }
}
