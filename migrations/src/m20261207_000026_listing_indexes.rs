//! Indexes for what the merchant listings compare, so that a listing reads its window and not
//! the merchant's whole history.
//!
//! - `GET /payments/status/{paid|failed|cancelled|all}` compares `paid_at`, `failed_at`,
//!   `cancelled_at` (and `started_at` for the other statuses). Only `(merchant_id, started_at)`
//!   was indexed, and a payment paid in the window may have started long before it (a virtual
//!   account), so the count and the page read every payment of the merchant. Each time column
//!   now has its own index, partial on the column being set: a payment writes the entry when the
//!   column is first set, not before. (On PostgreSQL, the update that sets it is then no longer
//!   heap-only: the price of a bounded listing, docs/performance.md.)
//! - `GET /subscribe/customers/{uid}/payments` lists one customer's payments newest first:
//!   `(merchant_id, customer_uid, started_at)` answers its count and its page in index order.
//! - `GET /subscribe/payments/schedule` lists a merchant's schedules of a time window: schedules
//!   are never deleted, and none of their indexes started with `(merchant_id, schedule_at)`.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000026_listing_indexes"
    }
}

const INDEXES: [(&str, &str); 5] = [
    (
        "payments_by_paid",
        "ON payments (merchant_id, paid_at) WHERE paid_at IS NOT NULL",
    ),
    (
        "payments_by_failed",
        "ON payments (merchant_id, failed_at) WHERE failed_at IS NOT NULL",
    ),
    (
        "payments_by_cancelled",
        "ON payments (merchant_id, cancelled_at) WHERE cancelled_at IS NOT NULL",
    ),
    (
        "payments_by_customer",
        "ON payments (merchant_id, customer_uid, started_at) WHERE customer_uid IS NOT NULL",
    ),
    (
        "schedules_by_schedule_at",
        "ON schedules (merchant_id, schedule_at)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        Ok(())
    }
}
