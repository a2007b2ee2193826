//! A billing key issued for a key-in charge waits for that charge's outcome.
//!
//! `POST /subscribe/payments/onetime` with a `customer_uid` stores the card as the customer's key,
//! but only once the payment is paid (iamport's guide: "빌링키 발급과 최초 결제가 성공하면 빌링키는
//! … 저장됩니다", seed 004). The key is issued before the charge (a card KCP will not keep is refused
//! before anything is charged) and recorded at once, so that it can be deleted at KCP whatever
//! happens next, as `pending`: not the customer's key yet, and naming the payment in the new
//! `payment_id`. It becomes the customer's (`active`, the key it replaces retired) once that
//! payment is recorded paid, and is retired and deleted at KCP once it is not
//! (service/kept_cards.rs). The partial index `billing_keys_by_payment` holds only such rows, which
//! is all that is ever looked up by payment.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000021_billing_key_payment"
    }
}

#[derive(DeriveIden)]
enum BillingKeys {
    Table,
    PaymentId,
}

const INDEX: &str = "billing_keys_by_payment";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BillingKeys::Table)
                    .add_column(ColumnDef::new(BillingKeys::PaymentId).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {INDEX} ON billing_keys (payment_id) WHERE payment_id IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX {INDEX}"))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BillingKeys::Table)
                    .drop_column(BillingKeys::PaymentId)
                    .to_owned(),
            )
            .await
    }
}
