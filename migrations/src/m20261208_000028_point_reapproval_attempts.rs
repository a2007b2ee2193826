//! A Benepia point payment partly cancelled by an older openport gets the closed `reapproval`
//! attempt this version writes with every re-approval (service/benepia.rs `REAPPROVAL`), so that
//! KCP's notices and the lookups naming the re-approval's tno find the payment.
//!
//! A partial point cancel moves the payment to a NEW KCP trade: the re-approval (`STRA`) of the
//! rest, whose tno becomes `payments.pg_tid`. A payment is found by a tno through an attempt
//! naming it (`payments::by_tno`: `pg_attempts_by_tno`, `payments.pg_tid` having no index), and no
//! call's attempt names the re-approval's: the cancel attempt names the tno it cancelled. Versions
//! before the `reapproval` row (a383569) left such a payment unfindable by its own trade: KCP's
//! `TX06` of its cancel in KCP's admin is kept as a notice of "a trade no payment holds" (the
//! payment still showing the rest paid while every point is back with the member), and an answer
//! naming that tno for another order cannot see the payment holds it (service/orphans.rs).
//!
//! What those versions left, and what the row is rebuilt from (no call to KCP is made):
//! - the payment's `pg_tid` (and `apply_num`): the re-approval's tno;
//! - the cancel attempt that made it (`kind` `cancel`, `succeeded`, its `tno` the trade it
//!   cancelled) under the re-approval's order number, `<order_no>R<attempt id>` (STSC + STRA, the
//!   first versions) or `<order_no>P<attempt id>` (one STRA, 7aa5f76 on), its `result_message`
//!   naming the new tno: `STSC + STRA, re-approved as T` / `STRA, re-approved as T`, or, for an
//!   older version's owed re-approval found cancelled in KCP's admin (637d756),
//!   `reapprove_pending: re-approval T cancelled at KCP: whole balance cancelled`;
//! - the cancellation of that attempt (`pg_tid` the cancelled trade), from which the re-approved
//!   amount follows: the balance before it less the attempt's amount (the cancellation is the
//!   whole balance when the re-approval was found cancelled).
//!
//! Only the payment's current trade gets a row: `payments::by_tno` also asks `pg_tid = tno`, and a
//! re-approval a later partial cancel superseded is named by that cancel's attempt already. A
//! payment whose current `pg_tid` a `reapproval` row names already (this version's, or a second
//! run) gets nothing; neither does one whose `pg_tid` no cancel attempt names as its re-approval in
//! the forms above (a `STRA` refused, which left `pg_tid` alone; a conflict an operator put right
//! by hand). The row is the one this version writes, closed from the start (the resolver never
//! reads it), its note saying this migration wrote it.
//!
//! Reads the `point` payments and their cancel attempts once, without a lock beyond reading.
//! `down` leaves the rows: they are facts about KCP's trades, of the kind the code before this
//! migration writes and reads already.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261208_000028_point_reapproval_attempts"
    }
}

/// service/benepia.rs `REAPPROVAL`.
const REAPPROVAL: &str = "reapproval";

/// The partial point cancels that may have moved their payment to its current `pg_tid`, on
/// payments whose current `pg_tid` no `reapproval` row names; per payment, oldest first.
const CANDIDATES: &str = "SELECT p.id AS payment_id, p.order_no AS payment_order_no, \
     p.pg_tid AS pg_tid, p.amount AS amount, a.id AS attempt_id, a.order_no AS order_no, \
     a.tno AS cancelled_tno, a.amount AS attempt_amount, a.result_message AS result_message, \
     a.updated_at AS updated_at \
     FROM payments p JOIN pg_attempts a ON a.payment_id = p.id \
     WHERE p.pay_method = 'point' AND p.pg_tid IS NOT NULL \
     AND a.kind = 'cancel' AND a.state = 'succeeded' AND a.result_message IS NOT NULL \
     AND a.tno IS NOT NULL AND a.tno <> p.pg_tid \
     AND NOT EXISTS (SELECT 1 FROM pg_attempts r WHERE r.payment_id = p.id \
     AND r.kind = 'reapproval' AND r.tno = p.pg_tid) \
     ORDER BY p.id, a.id";

/// A cancel attempt of [`CANDIDATES`].
struct Candidate {
    payment_id: i64,
    payment_order_no: String,
    pg_tid: String,
    amount: i64,
    attempt_id: i64,
    order_no: String,
    cancelled_tno: String,
    attempt_amount: i64,
    result_message: String,
    updated_at: i64,
}

impl Candidate {
    fn read(row: &sea_orm_migration::sea_orm::QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            payment_id: row.try_get("", "payment_id")?,
            payment_order_no: row.try_get("", "payment_order_no")?,
            pg_tid: row.try_get("", "pg_tid")?,
            amount: row.try_get("", "amount")?,
            attempt_id: row.try_get("", "attempt_id")?,
            order_no: row.try_get("", "order_no")?,
            cancelled_tno: row.try_get("", "cancelled_tno")?,
            attempt_amount: row.try_get("", "attempt_amount")?,
            result_message: row.try_get("", "result_message")?,
            updated_at: row.try_get("", "updated_at")?,
        })
    }

    /// Whether this cancel re-approved the rest of its payment as the payment's `pg_tid`, as the
    /// older versions recorded it (module doc).
    fn reapproved_as_pg_tid(&self) -> bool {
        let reorders =
            ['R', 'P'].map(|k| format!("{}{k}{}", self.payment_order_no, self.attempt_id));
        let message = &self.result_message;
        reorders.contains(&self.order_no)
            && (message.ends_with(&format!("re-approved as {}", self.pg_tid))
                || message.contains(&format!("re-approval {} cancelled at KCP", self.pg_tid)))
    }
}

/// The amount the cancel `c` re-approved: the balance before its cancellation (the payment's last
/// naming the trade it cancelled; `cancellations`, oldest first, as `(id, pg_tid, amount)`) less
/// the amount it cancelled. None when its cancellation is missing or leaves nothing.
fn reapproved_amount(c: &Candidate, cancellations: &[(i64, String, i64)]) -> Option<i64> {
    let own = cancellations
        .iter()
        .rev()
        .find(|(_, tno, _)| *tno == c.cancelled_tno)?;
    let before: i64 = cancellations
        .iter()
        .filter(|(id, _, _)| *id < own.0)
        .map(|(_, _, amount)| amount)
        .sum();
    Some(c.amount - before - c.attempt_amount).filter(|a| *a > 0)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let rows = db
            .query_all(Statement::from_string(backend, CANDIDATES))
            .await?;
        let mut found: Vec<Candidate> = Vec::new();
        for row in &rows {
            let c = Candidate::read(row)?;
            if !c.reapproved_as_pg_tid() {
                continue;
            }
            // The latest cancel naming the payment's trade as its re-approval.
            if found.last().is_some_and(|l| l.payment_id == c.payment_id) {
                found.pop();
            }
            found.push(c);
        }
        for c in found {
            let cancellations: Vec<(i64, String, i64)> = db
                .query_all(Statement::from_sql_and_values(
                    backend,
                    match backend {
                        sea_orm_migration::sea_orm::DatabaseBackend::Postgres => {
                            "SELECT id, pg_tid, amount FROM cancellations WHERE payment_id = $1 \
                             ORDER BY id"
                        }
                        _ => {
                            "SELECT id, pg_tid, amount FROM cancellations WHERE payment_id = ? \
                             ORDER BY id"
                        }
                    },
                    [c.payment_id.into()],
                ))
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get("", "id")?,
                        r.try_get("", "pg_tid")?,
                        r.try_get("", "amount")?,
                    ))
                })
                .collect::<Result<_, DbErr>>()?;
            let Some(amount) = reapproved_amount(&c, &cancellations) else {
                continue;
            };
            let note = format!(
                "re-approval of the rest by cancel attempt {} (recorded by migration 000028)",
                c.attempt_id
            );
            let insert = Query::insert()
                .into_table(Alias::new("pg_attempts"))
                .columns(
                    [
                        "payment_id",
                        "kind",
                        "state",
                        "order_no",
                        "tno",
                        "amount",
                        "result_code",
                        "result_message",
                        "tries",
                        "next_check_at",
                        "lease_until",
                        "created_at",
                        "updated_at",
                        "notify",
                    ]
                    .map(Alias::new),
                )
                .values_panic([
                    c.payment_id.into(),
                    REAPPROVAL.into(),
                    "succeeded".into(),
                    c.order_no.clone().into(),
                    c.pg_tid.clone().into(),
                    amount.into(),
                    "0000".into(),
                    note.into(),
                    0i32.into(),
                    c.updated_at.into(),
                    0i64.into(),
                    c.updated_at.into(),
                    c.updated_at.into(),
                    false.into(),
                ])
                .to_owned();
            manager.exec_stmt(insert).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
