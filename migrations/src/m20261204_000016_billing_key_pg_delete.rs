//! A retired billing key remembers whether KCP has deleted it.
//!
//! A key replaced by a re-registration (REST or the billing-key window) was deleted at KCP by one
//! call made after the new key was stored, and a failure was only logged: a KCP outage or a lost
//! answer left the old card chargeable at KCP under a key nobody would ever delete. The row keeps
//! the sealed key, so the deletion can be retried; these columns say what is left to do:
//!
//! - `pg_deleted_at`: when KCP confirmed the deletion ("already deleted" counts). Once set, the
//!   sealed key is erased from the row (an empty `batch_key_sealed`): KCP no longer holds it, and a
//!   key kept for nothing is only something to leak.
//! - `pg_delete_next_at`: when to try next; NULL when nothing is pending (an active key, a key KCP
//!   deleted, or one whose tries ran out, which an operator settles). The partial index
//!   `billing_keys_pg_delete_due` holds only pending rows, which is all the resolver reads.
//! - `pg_delete_tries`: calls made so far, bounded (`service::billing::KEY_DELETE_TRIES`).
//! - `pg_delete_lease_until`: the lease of the instance trying now (0: nobody), so that two
//!   instances do not both call KCP for one key at the same moment (the webhook outbox's pattern).
//!
//! Rows retired before this migration: a `deleted` key was deleted at KCP before its row was
//! retired (`DELETE /subscribe/customers/{uid}` retires it only on KCP's word), so it is recorded
//! as deleted then (`deleted_at`) and its sealed key erased. A `replaced` key had one best-effort
//! delete whose outcome was not recorded: it is taken as pending and due at once. If that delete
//! went through, KCP answers "already deleted" (8303), which counts as deleted; otherwise the key
//! is deleted now.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000016_billing_key_pg_delete"
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum BillingKeys {
    Table,
    PgDeletedAt,
    PgDeleteNextAt,
    PgDeleteTries,
    PgDeleteLeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(BillingKeys::PgDeletedAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(BillingKeys::PgDeleteNextAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(BillingKeys::PgDeleteTries)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(BillingKeys::PgDeleteLeaseUntil)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BillingKeys::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE billing_keys SET pg_deleted_at = deleted_at, batch_key_sealed = '' \
             WHERE status = 'deleted'",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE billing_keys SET pg_delete_next_at = 0 WHERE status = 'replaced'",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX billing_keys_pg_delete_due ON billing_keys (pg_delete_next_at) \
             WHERE pg_delete_next_at IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX billing_keys_pg_delete_due")
            .await?;
        for column in [
            BillingKeys::PgDeleteLeaseUntil,
            BillingKeys::PgDeleteTries,
            BillingKeys::PgDeleteNextAt,
            BillingKeys::PgDeletedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(BillingKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
