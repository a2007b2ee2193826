//! An operator's word that KCP holds nothing under an attempt's order number.
//!
//! KCP documents inquiries by `tno` only; where an inquiry by order number is not trusted
//! (`OPENPORT_KCP__ORDER_NO_INQUIRY`, false against real KCP), an attempt whose `tno` was never
//! learnt stays open until a person looks in KCP's admin. For an approval `openport attempt fail`
//! existed; a Benepia re-approval (`STRA`) whose answer was lost had no way out, and the payment
//! showed its whole amount while the points were already back with the buyer. The operator now
//! records the order number he found absent (`openport attempt confirm-absent`), and the resolver
//! takes "no such trade" for that order number as final: an approval fails, a re-approval is sent
//! again. The column holds the order number, not a flag, so the word never covers a later order
//! number of the same attempt.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000013_attempt_absent_order_no"
    }
}

#[derive(DeriveIden)]
enum PgAttempts {
    Table,
    AbsentOrderNo,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .add_column(ColumnDef::new(PgAttempts::AbsentOrderNo).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PgAttempts::Table)
                    .drop_column(PgAttempts::AbsentOrderNo)
                    .to_owned(),
            )
            .await
    }
}
