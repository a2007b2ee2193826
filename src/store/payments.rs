//! Payments, their cancellations, KCP attempts and prepared amounts.
use futures::future::FutureExt;
use sea_orm::sea_query::{Alias, Expr, Func, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr,
    EntityTrait, FromQueryResult, IdenStatic, Iterable, ModelTrait, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement, TryIntoModel,
};

// How far apart `paid_at` and `started_at` may be without being recorded in
// `merchants.paid_lag_secs`: the constant of migration 000029's trigger.
use migration::PAID_LAG_FREE_SECS;

use super::billing::HeldSchedule;
use super::entity::{
    billing_key, cancellation, merchant, payment, pg_attempt, prepare, schedule, webhook_delivery,
};
use super::sql_text::{set_values, table, SqlText};
use super::Decided;

pub async fn insert(
    db: &impl ConnectionTrait,
    p: payment::ActiveModel,
) -> Result<payment::Model, DbErr> {
    p.insert(db).await
}

pub async fn update(
    db: &impl ConnectionTrait,
    p: payment::ActiveModel,
) -> Result<payment::Model, DbErr> {
    p.update(db).await
}

pub async fn by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find_by_id(id).one(db).await
}

/// The virtual-account payment KCP knows as `tno` (the `tno` of a common notification).
pub async fn vbank_by_tno(
    db: &impl ConnectionTrait,
    tno: &str,
) -> Result<Option<payment::Model>, DbErr> {
    vbank_by_tno_query(tno).one(db).await
}

/// [`by_tno_query`] of a virtual account.
pub fn vbank_by_tno_query(tno: &str) -> sea_orm::Select<payment::Entity> {
    by_tno_query(tno).filter(payment::Column::PayMethod.eq("vbank"))
}

/// The payment whose KCP trade is `tno` now (its `pg_tid`), of any method.
pub async fn by_tno(db: &impl ConnectionTrait, tno: &str) -> Result<Option<payment::Model>, DbErr> {
    by_tno_query(tno).one(db).await
}

/// The payment holding `tno`, found through the attempt that recorded it (`pg_attempts_by_tno`,
/// migration 000012), since `payments.pg_tid` has no index and this runs for every notification
/// anyone posts. A point re-approval's tno, which no call's attempt names, has an attempt of its
/// own for this (`service::benepia::REAPPROVAL`).
pub fn by_tno_query(tno: &str) -> sea_orm::Select<payment::Entity> {
    let attempts_with_tno = Query::select()
        .column(pg_attempt::Column::PaymentId)
        .from(pg_attempt::Entity)
        .and_where(pg_attempt::Column::Tno.eq(tno))
        .to_owned();
    super::every_column(payment::Entity::find())
        .filter(payment::Column::Id.in_subquery(attempts_with_tno))
        .filter(payment::Column::PgTid.eq(tno))
}

/// A payment other than `payment_id` that KCP's trade `tno` was recorded on, now or before (its
/// claim in `payment_trades`, migration 000039, which the database keeps for every `pg_tid` a
/// payment is given): the trade is that payment's, never another's to record or to cancel. Of
/// any merchant, as the database's claim is (merchants may share a KCP site), among payments of
/// `payment_id`'s kind (test mode or live: each has its own trades).
pub async fn trade_holder(
    db: &impl ConnectionTrait,
    tno: &str,
    payment_id: i64,
) -> Result<Option<payment::Model>, DbErr> {
    let kind = Query::select()
        .column(payment::Column::Sandbox)
        .from(payment::Entity)
        .and_where(payment::Column::Id.eq(payment_id))
        .to_owned();
    let claims = Query::select()
        .column(Alias::new("payment_id"))
        .from(Alias::new("payment_trades"))
        .and_where(Expr::col(Alias::new("tno")).eq(tno))
        .and_where(Expr::col(Alias::new("sandbox")).in_subquery(kind))
        .and_where(Expr::col(Alias::new("payment_id")).ne(payment_id))
        .to_owned();
    super::every_column(payment::Entity::find())
        .filter(payment::Column::Id.in_subquery(claims))
        .order_by_asc(payment::Column::Id)
        .one(db)
        .await
}

/// Payment `id`, read holding its row for the rest of the transaction `db` (`SELECT … FOR UPDATE`
/// on PostgreSQL; SQLite's one writer holds the whole file): a transaction holding it is waited
/// for, and its change is seen.
pub async fn by_id_held(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await
}

/// Moves payment `id` from status `from` to `to` (with `paid_at`) only if it is still `from`, and
/// says whether this call moved it: a writer that decided on what it read earlier (before a KCP
/// call, with no transaction open) applies its change at most once however many race it.
pub async fn change_status_if(
    db: &impl ConnectionTrait,
    id: i64,
    from: &str,
    to: &str,
    paid_at: Option<i64>,
    now: i64,
) -> Result<bool, DbErr> {
    let res = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(to))
        .col_expr(payment::Column::PaidAt, Expr::value(paid_at))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.eq(from))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Whether payment `id` still has `status`, taking its row lock for the rest of the
/// transaction `db` (PostgreSQL; SQLite's writer holds the whole file): a decision that rests on
/// the status commits only if nobody changed it meanwhile, and a change in progress is waited for.
pub async fn hold_if_status(
    db: &impl ConnectionTrait,
    id: i64,
    status: &str,
) -> Result<bool, DbErr> {
    let res = payment::Entity::update_many()
        .col_expr(
            payment::Column::UpdatedAt,
            Expr::col(payment::Column::UpdatedAt).into(),
        )
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.eq(status))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// `merchant_id` None = any merchant (admin).
/// The payment `imp_uid` (of merchant `merchant_id`, when given): the lookup every
/// `GET /payments/{imp_uid}` makes, so its statement is written as text (store/sql_text.rs).
pub async fn by_imp_uid(
    db: &impl ConnectionTrait,
    merchant_id: Option<i64>,
    imp_uid: &str,
) -> Result<Option<payment::Model>, DbErr> {
    let t = &table::<payment::Entity>();
    let mut q = SqlText::new(db.get_database_backend());
    q.sql("SELECT * FROM ").ident(t).sql(" WHERE ");
    q.eq(t, payment::Column::ImpUid.as_str(), imp_uid);
    if let Some(m) = merchant_id {
        q.sql(" AND ")
            .eq(t, payment::Column::MerchantId.as_str(), m);
    }
    q.sql(" LIMIT 1");
    match db.query_one(q.into_statement()).await? {
        Some(row) => payment::Model::from_query_result(&row, "").map(Some),
        None => Ok(None),
    }
}

pub async fn by_imp_uids(
    db: &impl ConnectionTrait,
    merchant_id: Option<i64>,
    imp_uids: &[String],
    merchant_uids: &[String],
) -> Result<Vec<payment::Model>, DbErr> {
    let mut cond = Condition::any();
    if !imp_uids.is_empty() {
        cond = cond.add(payment::Column::ImpUid.is_in(imp_uids.to_vec()));
    }
    if !merchant_uids.is_empty() {
        cond = cond.add(payment::Column::MerchantUid.is_in(merchant_uids.to_vec()));
    }
    let mut q = payment::Entity::find().filter(cond);
    if let Some(m) = merchant_id {
        q = q.filter(payment::Column::MerchantId.eq(m));
    }
    q.order_by_desc(payment::Column::StartedAt)
        .order_by_desc(payment::Column::Id)
        .all(db)
        .await
}

/// The payment that holds the merchant_uid (any status but `failed`); there is at most one.
///
/// `failed_key` is 0 exactly for such payments (a generated column, see the migration
/// `m20261202_000005_fewer_index_writes`), so this probes the unique index
/// `payments_one_live_per_merchant_uid_key` on all three of its columns.
pub async fn live_by_merchant_uid(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    merchant_uid: &str,
) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::MerchantId.eq(merchant_id))
        .filter(payment::Column::MerchantUid.eq(merchant_uid))
        .filter(Expr::col((payment::Entity, Alias::new("failed_key"))).eq(0))
        .one(db)
        .await
}

/// Sort orders of the lookup endpoints (spec/iamport-v1.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sorting {
    Started { desc: bool },
    Paid { desc: bool },
    Updated { desc: bool },
}

impl Sorting {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        Some(match s.unwrap_or("-started") {
            "" | "-started" => Self::Started { desc: true },
            "started" => Self::Started { desc: false },
            "-paid" => Self::Paid { desc: true },
            "paid" => Self::Paid { desc: false },
            "-updated" => Self::Updated { desc: true },
            "updated" => Self::Updated { desc: false },
            _ => return None,
        })
    }
}

/// Filters of list queries; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct PaymentQuery {
    pub merchant_id: Option<i64>,
    pub merchant_uid: Option<String>,
    pub customer_uid: Option<String>,
    /// Database status words; empty = all.
    pub statuses: Vec<&'static str>,
    /// Inclusive Unix-second range on the time `TimeColumn` names.
    pub time_range: Option<(TimeColumn, i64, i64)>,
    pub include_sandbox: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    Started,
    Paid,
    Failed,
    Cancelled,
    /// The time of each payment's own status: paid_at of a paid one, cancelled_at of a cancelled
    /// one, failed_at of a failed one, started_at of any other. What `/payments/status/all`
    /// compares from/to with (spec/iamport-v1.md §4.1: the compared time depends on the status).
    OfStatus,
}

/// `from ≤ paid_at ≤ to`, read through `payments_by_started`: `paid_at` is in no index, so that
/// recording a payment paid stays a heap-only update on PostgreSQL (migration 000029). A payment
/// paid in the window started within [`PAID_LAG_FREE_SECS`] plus the merchant's largest recorded
/// distance between the two times (`merchants.paid_lag_secs`, kept by a trigger) of it, so the
/// range on `started_at` bounds the read and drops no row. The margin is read in the same
/// statement: a payment the statement sees was counted into the margin it reads. Without a
/// merchant (the operator's listing across merchants) the largest margin of any merchant.
fn paid_between(merchant_id: Option<i64>, from: i64, to: i64) -> Condition {
    let lag_secs = Alias::new("paid_lag_secs");
    let mut lag = Query::select();
    lag.from(merchant::Entity);
    match merchant_id {
        Some(m) => {
            lag.column(lag_secs)
                .and_where(Expr::col((merchant::Entity, merchant::Column::Id)).eq(m));
        }
        None => {
            lag.expr(Func::coalesce([
                Func::max(Expr::col(lag_secs)).into(),
                Expr::val(0).into(),
            ]));
        }
    }
    let lag = SimpleExpr::SubQuery(None, Box::new(lag.into_sub_query_statement()));
    let earliest = Expr::val(from.saturating_sub(PAID_LAG_FREE_SECS)).sub(lag.clone());
    let latest = Expr::val(to.saturating_add(PAID_LAG_FREE_SECS)).add(lag);
    Condition::all()
        .add(payment::Column::PaidAt.between(from, to))
        .add(Expr::col(payment::Column::StartedAt).gte(earliest))
        .add(Expr::col(payment::Column::StartedAt).lte(latest))
}

/// `from ≤ time ≤ to` on the time of each payment's own status ([`TimeColumn::OfStatus`]), as
/// one range per status rather than a `CASE` on the status, which no index can serve: paid ones
/// on `payments_by_started` widened by their margin ([`paid_between`]), cancelled ones on
/// `payments_by_cancelled`, failed ones on `payments_by_failed`, the others on
/// `payments_by_started`. Each branch names the merchant
/// itself: SQLite reads an `OR` through one index per branch only when every branch can use an
/// index on its own, and with the merchant outside them it reads all of the merchant's payments
/// through `payments_by_started` instead. The same rows as the `CASE`: a status's time that is
/// NULL matches no range in either.
fn of_status_between(merchant_id: Option<i64>, from: i64, to: i64) -> Condition {
    let branch = |status: Condition, range: Condition| {
        let mut c = Condition::all();
        if let Some(m) = merchant_id {
            c = c.add(payment::Column::MerchantId.eq(m));
        }
        c.add(status).add(range)
    };
    let between = |time: payment::Column| Condition::all().add(time.between(from, to));
    let is = |status: &str| Condition::all().add(payment::Column::Status.eq(status));
    Condition::any()
        .add(branch(is("paid"), paid_between(merchant_id, from, to)))
        .add(branch(
            is("cancelled"),
            between(payment::Column::CancelledAt),
        ))
        .add(branch(is("failed"), between(payment::Column::FailedAt)))
        .add(branch(
            Condition::all().add(payment::Column::Status.is_not_in([
                "paid",
                "cancelled",
                "failed",
            ])),
            between(payment::Column::StartedAt),
        ))
}

fn filtered(q: &PaymentQuery) -> sea_orm::Select<payment::Entity> {
    let mut s = payment::Entity::find();
    match q.time_range {
        // The merchant goes into each branch of the range (`of_status_between`).
        Some((TimeColumn::OfStatus, _, _)) => {}
        _ => {
            if let Some(m) = q.merchant_id {
                s = s.filter(payment::Column::MerchantId.eq(m));
            }
        }
    }
    if let Some(uid) = &q.merchant_uid {
        s = s.filter(payment::Column::MerchantUid.eq(uid.clone()));
    }
    if let Some(c) = &q.customer_uid {
        s = s.filter(payment::Column::CustomerUid.eq(c.clone()));
    }
    if !q.statuses.is_empty() {
        s = s.filter(payment::Column::Status.is_in(q.statuses.clone()));
    }
    if !q.include_sandbox {
        s = s.filter(payment::Column::Sandbox.eq(false));
    }
    if let Some((col, from, to)) = q.time_range {
        let between = |time: payment::Column| Condition::all().add(time.between(from, to));
        s = s.filter(match col {
            TimeColumn::Started => between(payment::Column::StartedAt),
            TimeColumn::Paid => paid_between(q.merchant_id, from, to),
            TimeColumn::Failed => between(payment::Column::FailedAt),
            TimeColumn::Cancelled => between(payment::Column::CancelledAt),
            TimeColumn::OfStatus => of_status_between(q.merchant_id, from, to),
        });
    }
    s
}

/// Sorts by the chosen time, then by id so that equal times come in the same order everywhere.
/// An unset (NULL) paid_at sorts as 0, which is what iamport shows for it (spec §3): SQLite puts
/// NULLs first in ascending order and PostgreSQL last, so the bare column would order the two
/// databases differently.
fn sorted(
    s: sea_orm::Select<payment::Entity>,
    sorting: Sorting,
) -> sea_orm::Select<payment::Entity> {
    let (time, desc): (SimpleExpr, bool) = match sorting {
        Sorting::Started { desc } => (Expr::col(payment::Column::StartedAt).into(), desc),
        Sorting::Paid { desc } => (
            Func::coalesce([
                Expr::col(payment::Column::PaidAt).into(),
                Expr::val(0).into(),
            ])
            .into(),
            desc,
        ),
        Sorting::Updated { desc } => (Expr::col(payment::Column::UpdatedAt).into(), desc),
    };
    let order = if desc { Order::Desc } else { Order::Asc };
    s.order_by(time, order.clone())
        .order_by(payment::Column::Id, order)
}

/// One page (1-based) and the total count: two statements, which agree only on a read snapshot
/// (`Db::read_snapshot`).
pub async fn page(
    db: &impl ConnectionTrait,
    q: &PaymentQuery,
    sorting: Sorting,
    page: u64,
    limit: u64,
) -> Result<(u64, Vec<payment::Model>), DbErr> {
    let total = filtered(q).count(db).await?;
    let list = sorted(filtered(q), sorting)
        .offset(super::page_offset(page, limit))
        .limit(limit)
        .all(db)
        .await?;
    Ok((total, list))
}

pub async fn first(
    db: &impl ConnectionTrait,
    q: &PaymentQuery,
    sorting: Sorting,
) -> Result<Option<payment::Model>, DbErr> {
    sorted(filtered(q), sorting).one(db).await
}

/// Cancellations of the given payments, oldest first.
pub async fn cancellations_of(
    db: &impl ConnectionTrait,
    payment_ids: &[i64],
) -> Result<Vec<cancellation::Model>, DbErr> {
    if payment_ids.is_empty() {
        return Ok(vec![]);
    }
    cancellation::Entity::find()
        .filter(cancellation::Column::PaymentId.is_in(payment_ids.to_vec()))
        .order_by_asc(cancellation::Column::CancelledAt)
        .order_by_asc(cancellation::Column::Id)
        .all(db)
        .await
}

pub async fn insert_cancellation(
    db: &impl ConnectionTrait,
    c: cancellation::ActiveModel,
) -> Result<cancellation::Model, DbErr> {
    c.insert(db).await
}

pub async fn insert_attempt(
    db: &impl ConnectionTrait,
    a: pg_attempt::ActiveModel,
) -> Result<pg_attempt::Model, DbErr> {
    a.insert(db).await
}

/// The states of an attempt whose outcome is still open.
pub const OPEN_STATES: [&str; 2] = ["pending", "unknown"];

/// The state of a scheduled charge's approval attempt closed as never sent: still `unsent` when
/// its holder's lease ran out (service/schedules.rs `Gateway::settle_unsent_charge`).
pub const NOT_SENT: &str = "not_sent";

/// The attempt `held` while it is still open and still held with the lease it was read with (the
/// holder's token, see [`claim_attempt`]).
fn still_held(held: &pg_attempt::Model) -> Condition {
    Condition::all()
        .add(pg_attempt::Column::Id.eq(held.id))
        .add(pg_attempt::Column::State.is_in(OPEN_STATES))
        .add(pg_attempt::Column::LeaseUntil.eq(held.lease_until))
}

/// Writes the `Set` columns of `changes` onto the attempt `held`, only while it is still open and
/// still held with the lease `held` was read with. Returns the attempt as written, or None when
/// it was not (0 rows): another holder settled it, or took it over when this one's lease ran out.
pub async fn update_held_attempt(
    db: &impl ConnectionTrait,
    held: &pg_attempt::Model,
    changes: pg_attempt::ActiveModel,
) -> Result<Option<pg_attempt::Model>, DbErr> {
    if !write_held_attempt(db, held, changes.clone()).await? {
        return Ok(None);
    }
    let mut written: pg_attempt::ActiveModel = held.clone().into();
    for column in pg_attempt::Column::iter() {
        if let ActiveValue::Set(value) = changes.get(column) {
            written.set(column, value);
        }
    }
    written.try_into_model().map(Some)
}

/// [`update_held_attempt`] answering only whether it wrote: for a transaction that records an
/// outcome, which must write nothing else (roll back) when this is false.
pub async fn write_held_attempt(
    db: &impl ConnectionTrait,
    held: &pg_attempt::Model,
    changes: pg_attempt::ActiveModel,
) -> Result<bool, DbErr> {
    let res = pg_attempt::Entity::update_many()
        .set(changes)
        .filter(still_held(held))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Moves the lease of the open attempt `current` (as just read) to `lease_until`, whoever holds
/// it, while it still waits for `order_no`: for a holder to whom KCP confirmed its call after the
/// attempt was taken over (service/attempts.rs `take_over_confirmed`). Conditional on the lease
/// read, so of two such holders one wins, and the one it replaces finds every later write of its
/// own refused. False when the attempt moved meanwhile.
pub async fn take_over_attempt(
    db: &impl ConnectionTrait,
    current: &pg_attempt::Model,
    order_no: &str,
    lease_until: i64,
) -> Result<bool, DbErr> {
    let res = pg_attempt::Entity::update_many()
        .col_expr(pg_attempt::Column::LeaseUntil, Expr::value(lease_until))
        .filter(still_held(current))
        .filter(pg_attempt::Column::OrderNo.eq(order_no))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Writes the `Set` columns of `p` onto its payment only where `condition` holds (the state the
/// write was decided on); None when it does not (0 rows).
pub async fn update_payment_if(
    db: &impl ConnectionTrait,
    p: payment::ActiveModel,
    condition: Condition,
) -> Result<Option<payment::Model>, DbErr> {
    match payment::Entity::update(p).filter(condition).exec(db).await {
        Ok(p) => Ok(Some(p)),
        Err(DbErr::RecordNotUpdated) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn attempt_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<pg_attempt::Model>, DbErr> {
    pg_attempt::Entity::find_by_id(id).one(db).await
}

/// `pg_attempts.kind` of the record of a KCP answer to a payment's call that named another
/// payment's trade (`Gateway::foreign_trade_named`): listed for the operator as a `conflict`, but
/// about a trade nothing changed, so it holds nothing of the payment it was recorded on
/// ([`unreconciled_conflict`]).
pub const MISDIRECTED_ANSWER: &str = "misdirected_answer";

/// `pg_attempts.kind` of the `conflict` that lists a payment sharing its KCP trade with another,
/// found when migration 000039 made a trade one payment's: which of them KCP approved it for is
/// unknown, so it holds the payment's cancels until an operator has reconciled it.
pub const SHARED_TRADE: &str = migration::SHARED_TRADE;

/// An attempt of the payment closed as `conflict` (KCP holds something else than openport) and
/// not yet reconciled by an operator, if any. A [`MISDIRECTED_ANSWER`] is not one: the payment's
/// own record and KCP agree.
pub async fn unreconciled_conflict(
    db: &impl ConnectionTrait,
    payment_id: i64,
) -> Result<Option<pg_attempt::Model>, DbErr> {
    pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::State.eq("conflict"))
        .filter(pg_attempt::Column::Kind.ne(MISDIRECTED_ANSWER))
        .one(db)
        .await
}

/// Whether an [`unreconciled_conflict`] of payment `payment_id` names KCP's trade `tno`: KCP holds
/// that approval (or account) and openport could neither record nor cancel it.
pub async fn conflict_names(
    db: &impl ConnectionTrait,
    payment_id: i64,
    tno: &str,
) -> Result<bool, DbErr> {
    Ok(pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::State.eq("conflict"))
        .filter(pg_attempt::Column::Kind.ne(MISDIRECTED_ANSWER))
        .filter(pg_attempt::Column::Tno.eq(tno))
        .one(db)
        .await?
        .is_some())
}

/// Moves the closed attempt `id` from state `from` to `to` with `note`: a `conflict` an operator
/// marks `reconciled`, or a `failed` one KCP later confirmed, which becomes a `conflict`. False
/// when it is no longer `from`.
pub async fn restate_closed_attempt(
    db: &impl ConnectionTrait,
    id: i64,
    from: &str,
    to: &str,
    note: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let res = pg_attempt::Entity::update_many()
        .col_expr(pg_attempt::Column::State, Expr::value(to))
        .col_expr(pg_attempt::Column::ResultMessage, Expr::value(note))
        .col_expr(pg_attempt::Column::UpdatedAt, Expr::value(now))
        .filter(pg_attempt::Column::Id.eq(id))
        .filter(pg_attempt::Column::State.eq(from))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Whether payment `payment_id` has an attempt of `kind` for KCP trade `tno`, in any state.
pub async fn has_attempt_for(
    db: &impl ConnectionTrait,
    payment_id: i64,
    kind: &str,
    tno: &str,
) -> Result<bool, DbErr> {
    Ok(pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::Kind.eq(kind))
        .filter(pg_attempt::Column::Tno.eq(tno))
        .one(db)
        .await?
        .is_some())
}

/// Whether the approval of payment `payment_id` was closed as never sent ([`NOT_SENT`]): KCP was
/// never asked for it.
pub async fn approval_never_sent(
    db: &impl ConnectionTrait,
    payment_id: i64,
) -> Result<bool, DbErr> {
    Ok(pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::Kind.eq("approve"))
        .filter(pg_attempt::Column::State.eq(NOT_SENT))
        .one(db)
        .await?
        .is_some())
}

/// Open (pending / unknown) attempts of a payment, newest first.
pub async fn open_attempts_of(
    db: &impl ConnectionTrait,
    payment_id: i64,
) -> Result<Vec<pg_attempt::Model>, DbErr> {
    pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::State.is_in(OPEN_STATES))
        .order_by_desc(pg_attempt::Column::Id)
        .all(db)
        .await
}

/// Whether payment `payment_id` has a cancel in flight (its one open `cancel` attempt, index
/// `pg_attempts_one_open_cancel`): a revocation of a virtual account, say.
pub async fn has_open_cancel(db: &impl ConnectionTrait, payment_id: i64) -> Result<bool, DbErr> {
    Ok(pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment_id))
        .filter(pg_attempt::Column::Kind.eq("cancel"))
        .filter(pg_attempt::Column::State.is_in(OPEN_STATES))
        .one(db)
        .await?
        .is_some())
}

/// The open states of an attempt, written out rather than bound: only then does a condition
/// imply the predicate of the partial index `pg_attempts_due`, so that PostgreSQL can use it in a
/// connection's cached generic plan.
const OPEN_ATTEMPT: &str = r#""pg_attempts"."state" IN ('pending', 'unknown')"#;

/// Whether a charge of customer `customer_uid` at merchant `merchant_id` is still open (its
/// `approve` attempt not settled; a billing-key window's `issue` payment is no charge): read
/// through the open attempts (few, indexed) rather than the customer's payments, which can be
/// many (their `(merchant_id, customer_uid, started_at)` index, migration 000026, would walk them
/// all).
pub async fn customer_charge_open(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
) -> Result<bool, DbErr> {
    use sea_orm::QueryTrait;
    let open = pg_attempt::Entity::find()
        .select_only()
        .column(pg_attempt::Column::PaymentId)
        .filter(Expr::cust(OPEN_ATTEMPT))
        .filter(pg_attempt::Column::Kind.eq("approve"))
        .into_query();
    Ok(payment::Entity::find()
        .filter(payment::Column::Id.in_subquery(open))
        .filter(payment::Column::MerchantId.eq(merchant_id))
        .filter(payment::Column::CustomerUid.eq(customer_uid))
        // Not a billing-key window's own 0-won `issue` payment: it charges no key.
        .filter(
            sea_orm::Condition::any()
                .add(payment::Column::CustomerUidUsage.is_null())
                .add(payment::Column::CustomerUidUsage.ne("issue")),
        )
        .count(db)
        .await?
        > 0)
}

/// Ids of open attempts due for the resolver, of the merchants `served` only
/// ([`due_attempts_query`]).
pub async fn due_attempts(
    db: &impl ConnectionTrait,
    served: super::billing::ServedMerchants,
    now: i64,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    let rows = due_attempts_query(served, now, limit)
        .into_tuple::<i64>()
        .all(db)
        .await?;
    Ok(rows)
}

/// The statement of [`due_attempts`]: read in `pg_attempts_due`'s order, each row's payment looked
/// up by its key for the merchant (`ServedMerchants::payment_served`). An instance leaves the
/// other mode's attempts out of its list rather than claim them and give them back: a claim
/// writes, and giving them back counted a try and pushed the attempt's next look out.
pub fn due_attempts_query(
    served: super::billing::ServedMerchants,
    now: i64,
    limit: u64,
) -> sea_orm::Select<pg_attempt::Entity> {
    let mut due = pg_attempt::Entity::find()
        .select_only()
        .column(pg_attempt::Column::Id)
        .filter(Expr::cust(OPEN_ATTEMPT))
        .filter(pg_attempt::Column::NextCheckAt.lte(now))
        .filter(pg_attempt::Column::LeaseUntil.lt(now));
    if let Some(served) = served.payment_served((pg_attempt::Entity, pg_attempt::Column::PaymentId))
    {
        due = due.filter(served);
    }
    due.order_by_asc(pg_attempt::Column::NextCheckAt)
        .limit(limit)
}

/// Takes the lease on an open attempt nobody holds (its lease ran out or was let go, 0): a
/// conditional UPDATE, so across any number of instances exactly one wins (no lock held while KCP
/// is called). A claim always writes a later lease than the one it replaces, so each lease value
/// names one holder: the token its writes are conditional on ([`update_held_attempt`]).
pub async fn claim_attempt(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    lease_until: i64,
) -> Result<bool, DbErr> {
    let res = pg_attempt::Entity::update_many()
        .col_expr(pg_attempt::Column::LeaseUntil, Expr::value(lease_until))
        .filter(pg_attempt::Column::Id.eq(id))
        .filter(pg_attempt::Column::State.is_in(OPEN_STATES))
        .filter(pg_attempt::Column::LeaseUntil.lt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every open attempt, oldest first (at most `limit`): what an operator looks at.
pub async fn open_attempts(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<pg_attempt::Model>, DbErr> {
    pg_attempt::Entity::find()
        .filter(Expr::cust(OPEN_ATTEMPT))
        .order_by_asc(pg_attempt::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The state of an attempt closed as `conflict`, written out rather than bound, as
/// [`OPEN_ATTEMPT`] is: so that a condition implies the predicate of the partial index
/// `pg_attempts_conflicts` (migration 000031) in PostgreSQL's generic plans and SQLite's.
const CONFLICT_ATTEMPT: &str = r#""pg_attempts"."state" = 'conflict'"#;

/// Attempts closed as `conflict` and not yet reconciled, oldest first: `pg_attempts_conflicts`
/// in its order, the first `limit` entries.
pub async fn conflict_attempts(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<pg_attempt::Model>, DbErr> {
    conflict_attempts_query(limit).all(db).await
}

fn conflict_attempts_query(limit: u64) -> sea_orm::Select<pg_attempt::Entity> {
    pg_attempt::Entity::find()
        .filter(Expr::cust(CONFLICT_ATTEMPT))
        .order_by_asc(pg_attempt::Column::Id)
        .limit(limit)
}

pub async fn count_open_attempts(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    pg_attempt::Entity::find()
        .filter(Expr::cust(OPEN_ATTEMPT))
        .count(db)
        .await
}

/// How many attempts are open and when the oldest was made (Unix seconds; None when none is), in
/// one statement over the partial index `pg_attempts_due` (the open attempts of `open_attempts`):
/// what `GET /admin/status` reports. The oldest leaves out the attempts of the kinds `routine`
/// (the second looks, due an hour after they are made by design): their age is no outcome waiting
/// too long, and an alert on it fired for an hour after every such look was scheduled.
pub async fn open_attempts_summary(
    db: &impl ConnectionTrait,
    routine: &[&str],
) -> Result<(u64, Option<i64>), DbErr> {
    // Read by name: a SQLite row comes back with its columns in name order, not the SELECT's.
    #[derive(FromQueryResult)]
    struct Summary {
        open_count: i64,
        oldest_created_at: Option<i64>,
    }
    let row = open_attempts_summary_query(routine)
        .into_model::<Summary>()
        .one(db)
        .await?;
    Ok(row.map_or((0, None), |r| {
        (
            u64::try_from(r.open_count).unwrap_or(0),
            r.oldest_created_at,
        )
    }))
}

fn open_attempts_summary_query(routine: &[&str]) -> sea_orm::Select<pg_attempt::Entity> {
    let not_routine = Expr::case(
        pg_attempt::Column::Kind.is_not_in(routine.iter().copied()),
        Expr::col(pg_attempt::Column::CreatedAt),
    );
    pg_attempt::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "open_count")
        .column_as(
            SimpleExpr::from(Func::min(SimpleExpr::Case(Box::new(not_routine)))),
            "oldest_created_at",
        )
        .filter(Expr::cust(OPEN_ATTEMPT))
}

/// How many attempts are closed as `conflict` and not reconciled (those `conflict_attempts`
/// lists), counted over their partial index `pg_attempts_conflicts`: `GET /admin/status` polls
/// it, and the table of attempts grows with every payment.
pub async fn count_conflict_attempts(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let n = count_conflict_attempts_query()
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn count_conflict_attempts_query() -> sea_orm::Select<pg_attempt::Entity> {
    pg_attempt::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "n")
        .filter(Expr::cust(CONFLICT_ATTEMPT))
}

pub async fn prepare_by_uid(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    merchant_uid: &str,
) -> Result<Option<prepare::Model>, DbErr> {
    prepare::Entity::find()
        .filter(prepare::Column::MerchantId.eq(merchant_id))
        .filter(prepare::Column::MerchantUid.eq(merchant_uid))
        .one(db)
        .await
}

pub async fn insert_prepare(
    db: &impl ConnectionTrait,
    p: prepare::ActiveModel,
) -> Result<prepare::Model, DbErr> {
    p.insert(db).await
}

pub async fn update_prepare(
    db: &impl ConnectionTrait,
    id: i64,
    amount: i64,
    currency: Option<String>,
) -> Result<(), DbErr> {
    prepare::Entity::update(prepare::ActiveModel {
        id: Set(id),
        amount: Set(amount),
        currency: Set(currency),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// Used by tests and the admin view to compare openport with the PG ledger.
pub async fn all_payments(db: &impl ConnectionTrait) -> Result<Vec<payment::Model>, DbErr> {
    payment::Entity::find()
        .order_by_asc(payment::Column::Id)
        .all(db)
        .await
}

/// What [`open_charge`] did.
#[derive(Debug)]
pub enum OpenedCharge {
    /// The pending payment and its attempt are committed (boxed: they are large).
    Opened(Box<Opened>),
    /// Nothing was written: the merchant_uid was prepared (`POST /payments/prepare`) with another
    /// amount or currency, shown here.
    PreparedDiffers(prepare::Model),
    /// Nothing was written: the charge names a customer_uid that has no active billing key.
    NoBillingKey,
    /// Nothing was written: a scheduled charge whose run no longer holds its schedule (another
    /// instance took it over after the lease ran out, or the merchant revoked it).
    ScheduleNotHeld,
}

/// A charge opened by [`open_charge`].
#[derive(Debug)]
pub struct Opened {
    pub payment: payment::Model,
    pub attempt: pg_attempt::Model,
    /// The active billing key the charge was opened with, when it names one.
    pub billing_key: Option<billing_key::Model>,
}

/// Whether a merchant_uid prepared as `p` refuses a charge of `amount` in `currency` (spec §4.3):
/// another amount, or another currency when one was prepared.
pub fn prepared_refuses(p: &prepare::Model, amount: i64, currency: &str) -> bool {
    p.amount != amount || p.currency.as_deref().is_some_and(|c| c != currency)
}

/// The payment columns a billing-key charge takes from its key: what is known of the card before
/// KCP answers.
const CARD_FROM_KEY: [(payment::Column, billing_key::Column); 4] = [
    (payment::Column::CardNumber, billing_key::Column::CardNumber),
    (payment::Column::CardCode, billing_key::Column::CardCode),
    (payment::Column::CardName, billing_key::Column::CardName),
    (payment::Column::CardType, billing_key::Column::CardType),
];

/// Inserts a pending payment and its first attempt, atomically and durably: what every charge
/// records before it calls KCP, unless its merchant_uid was prepared with another amount or
/// currency (spec §4.3), or it names a `customer_uid` (`billing_key`) without an active billing
/// key; both are checked in the same write. A billing-key charge copies the key's card fields
/// into the payment and gets the key back. A scheduled charge (`schedule`) opens only while its run
/// still holds the schedule, and records the payment's imp_uid on it in the same write
/// (`billing::record_schedule_charge`).
///
/// On PostgreSQL this is ONE statement (a data-modifying `WITH`, atomic by itself, whose insert
/// only happens `WHERE NOT EXISTS` such a prepared row, and `FROM` the active key when one is
/// named) instead of reading the key, reading the prepared row, `BEGIN`, two inserts and
/// `COMMIT`: each round trip costs CPU on both sides (docs/performance.md). SQLite has no
/// data-modifying `WITH`; there it is a transaction handed to the writer whole
/// ([`super::Writer::transact`]), committed in a group: the active key's `SELECT` (a billing-key
/// charge), the payment's `INSERT … WHERE NOT EXISTS` a refusing prepared row, the attempt's.
/// Either way the statements are written as text (store/sql_text.rs), not built by sea-query.
pub async fn open_charge(
    db: &super::Writer,
    payment: payment::ActiveModel,
    attempt: pg_attempt::ActiveModel,
    billing_key: Option<&str>,
    schedule: Option<HeldSchedule>,
) -> Result<OpenedCharge, DbErr> {
    let missing = || {
        DbErr::Custom(
            "open_charge: merchant_id, merchant_uid, amount and currency must be set".into(),
        )
    };
    let merchant_id = *payment.merchant_id.try_as_ref().ok_or_else(missing)?;
    let merchant_uid = payment
        .merchant_uid
        .try_as_ref()
        .ok_or_else(missing)?
        .clone();
    let amount = *payment.amount.try_as_ref().ok_or_else(missing)?;
    let currency = payment.currency.try_as_ref().ok_or_else(missing)?.clone();
    let imp_uid = payment.imp_uid.try_as_ref().ok_or_else(missing)?.clone();
    if db.get_database_backend() != DbBackend::Postgres {
        let billing_key = billing_key.map(str::to_owned);
        return db
            .transact(move |txn| {
                async move {
                    let txn = &txn;
                    if let Some(hold) = schedule {
                        if !super::billing::record_schedule_charge(txn, hold, &imp_uid).await? {
                            return Ok(Decided::Rollback(OpenedCharge::ScheduleNotHeld));
                        }
                    }
                    let admitted = Admitted {
                        merchant_id,
                        merchant_uid: &merchant_uid,
                        amount,
                        currency: &currency,
                    };
                    let customer_uid = billing_key.as_deref();
                    let mut payment = payment;
                    let key = match customer_uid {
                        Some(customer_uid) => {
                            let mut q = SqlText::new(DbBackend::Sqlite);
                            active_key_select(&mut q, merchant_id, customer_uid);
                            match txn.query_one(q.into_statement()).await? {
                                Some(row) => Some(billing_key::Model::from_query_result(&row, "")?),
                                None => {
                                    return refusal(txn, &admitted, billing_key.as_deref()).await
                                }
                            }
                        }
                        None => None,
                    };
                    if let Some(key) = &key {
                        for (column, key_column) in CARD_FROM_KEY {
                            payment.set(column, key.get(key_column));
                        }
                    }
                    let mut q = SqlText::new(DbBackend::Sqlite);
                    insert_admitted_payment(
                        &mut q,
                        non_null_values(&payment, |_| true),
                        &[],
                        &[],
                        &admitted,
                    );
                    let Some(row) = txn.query_one(q.into_statement()).await? else {
                        return refusal(txn, &admitted, customer_uid).await;
                    };
                    let p = payment::Model::from_query_result(&row, "")?;
                    let mut attempt = attempt;
                    attempt.payment_id = Set(p.id);
                    let mut q = SqlText::new(DbBackend::Sqlite);
                    insert_select(
                        &mut q,
                        &table::<pg_attempt::Entity>(),
                        non_null_values(&attempt, |c| !matches!(c, pg_attempt::Column::Id)),
                        &[],
                    );
                    q.sql(" RETURNING *");
                    let row = txn
                        .query_one(q.into_statement())
                        .await?
                        .ok_or(DbErr::RecordNotInserted)?;
                    Ok(Decided::Commit(OpenedCharge::Opened(Box::new(Opened {
                        payment: p,
                        attempt: pg_attempt::Model::from_query_result(&row, "")?,
                        billing_key: key,
                    }))))
                }
                .boxed()
            })
            .await;
    }
    let statement = open_charge_statement(
        &payment,
        &attempt,
        &Admitted {
            merchant_id,
            merchant_uid: &merchant_uid,
            amount,
            currency: &currency,
        },
        billing_key,
        schedule.map(|hold| (hold, imp_uid.as_str())),
    );
    let mut tries = 0;
    let row = loop {
        if let Some(row) = db.query_one(statement.clone()).await? {
            break row;
        }
        // Nothing inserted: the run lost its schedule, a prepared row refused it, or the key is
        // not active. Read which, for the answer. If none holds any more (re-prepared, key
        // re-registered in between), the charge is simply tried again.
        if let Some(hold) = schedule {
            if !super::billing::still_held(db, hold).await? {
                return Ok(OpenedCharge::ScheduleNotHeld);
            }
        }
        if let Err(refused) = admission(
            db,
            merchant_id,
            &merchant_uid,
            amount,
            &currency,
            billing_key,
        )
        .await?
        {
            return Ok(refused);
        }
        tries += 1;
        if tries == 3 {
            return Err(DbErr::RecordNotInserted);
        }
    };
    let p = payment::Model::from_query_result(&row, "")?;
    let key = match billing_key {
        Some(_) => Some(billing_key::Model::from_query_result(&row, KEY_PREFIX)?),
        None => None,
    };
    let mut attempt = attempt;
    attempt.id = Set(row.try_get("", "attempt_id")?);
    attempt.payment_id = Set(p.id);
    Ok(OpenedCharge::Opened(Box::new(Opened {
        payment: p,
        attempt: attempt.try_into_model()?,
        billing_key: key,
    })))
}

/// What [`record_unopened_schedule_failure`] did.
#[derive(Debug)]
pub enum UnopenedFailure {
    /// The failed payment, its webhooks and its imp_uid on the schedule are written.
    Recorded,
    /// Nothing was written: a live payment (one the merchant made) holds the merchant_uid.
    MerchantUidTaken,
    /// Nothing was written: the run no longer holds its schedule.
    ScheduleNotHeld,
}

/// A scheduled run that failed before a charge could be opened (the customer has no billing key,
/// the merchant_uid was prepared with another amount, the schedule's text is refused): its failed
/// payment, which KCP never saw, with the `failed` webhooks spec/iamport-v1.md §4.4 and §5 promise
/// for every scheduled payment, and its imp_uid on the schedule, in one transaction (a rare path:
/// on both databases a plain transaction), conditional on the run still holding the schedule, like
/// [`open_charge`]. Not while a live payment holds the merchant_uid: that one is the merchant's own
/// and a `failed` about its merchant_uid would contradict it.
pub async fn record_unopened_schedule_failure(
    db: &super::Writer,
    hold: HeldSchedule,
    payment: payment::ActiveModel,
    webhooks: Vec<webhook_delivery::ActiveModel>,
) -> Result<UnopenedFailure, DbErr> {
    let missing = || {
        DbErr::Custom(
            "record_unopened_schedule_failure: imp_uid, merchant_id, merchant_uid and status must be set"
                .into(),
        )
    };
    let imp_uid = payment.imp_uid.try_as_ref().ok_or_else(missing)?.clone();
    let merchant_id = *payment.merchant_id.try_as_ref().ok_or_else(missing)?;
    let merchant_uid = payment
        .merchant_uid
        .try_as_ref()
        .ok_or_else(missing)?
        .clone();
    let txn = db.begin().await?;
    if !super::billing::record_schedule_charge(&txn, hold, &imp_uid).await? {
        return Ok(UnopenedFailure::ScheduleNotHeld);
    }
    if live_by_merchant_uid(&txn, merchant_id, &merchant_uid)
        .await?
        .is_some()
    {
        return Ok(UnopenedFailure::MerchantUidTaken);
    }
    // Inserted live (`pending`) first, then failed: the live-payment unique index then stands
    // between this and a charge of the same merchant_uid opening meanwhile (on PostgreSQL the
    // check above does not see one that is not committed yet, and nothing else conflicts with a
    // failed row), so the `failed` webhook never contradicts a live payment.
    let failed = payment.status.try_as_ref().ok_or_else(missing)?.clone();
    let mut claiming = payment;
    claiming.status = sea_orm::Set(
        crate::domain::payment::PaymentStatus::Pending
            .as_db()
            .into(),
    );
    let inserted = match insert(&txn, claiming).await {
        Ok(p) => p,
        Err(e) if super::is_unique_violation(&e) => return Ok(UnopenedFailure::MerchantUidTaken),
        Err(e) => return Err(e),
    };
    let mut p: payment::ActiveModel = inserted.into();
    p.status = sea_orm::Set(failed);
    p.update(&txn).await?;
    for w in webhooks {
        super::webhooks::insert_delivery(&txn, w).await?;
    }
    txn.commit().await?;
    Ok(UnopenedFailure::Recorded)
}

/// Why a charge that names `billing_key` could not open, read in the transaction whose statements
/// found no active key or inserted nothing (so [`admission`] refuses it too), rolled back.
async fn refusal(
    txn: &impl ConnectionTrait,
    a: &Admitted<'_>,
    billing_key: Option<&str>,
) -> Result<Decided<OpenedCharge>, DbErr> {
    match admission(
        txn,
        a.merchant_id,
        a.merchant_uid,
        a.amount,
        a.currency,
        billing_key,
    )
    .await?
    {
        Err(refused) => Ok(Decided::Rollback(refused)),
        Ok(_) => Err(DbErr::Custom(
            "open_charge: nothing inserted, yet the charge is admitted".into(),
        )),
    }
}

/// Whether a charge may open, read in `db`: refused (`Err`) when its merchant_uid was prepared
/// with another amount or currency, or when it names a customer_uid without an active billing
/// key; else the active key it names, if any. SQLite asks this inside the transaction that opens
/// the charge; on PostgreSQL the opening statement checks the same in SQL, and this only explains
/// a statement that inserted nothing.
async fn admission(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    merchant_uid: &str,
    amount: i64,
    currency: &str,
    billing_key: Option<&str>,
) -> Result<Result<Option<billing_key::Model>, OpenedCharge>, DbErr> {
    if let Some(p) = prepare_by_uid(db, merchant_id, merchant_uid).await? {
        if prepared_refuses(&p, amount, currency) {
            return Ok(Err(OpenedCharge::PreparedDiffers(p)));
        }
    }
    let Some(customer_uid) = billing_key else {
        return Ok(Ok(None));
    };
    Ok(super::billing::active_key(db, merchant_id, customer_uid)
        .await?
        .map(Some)
        .ok_or(OpenedCharge::NoBillingKey))
}

/// How [`open_charge`] names the billing key's columns in its answer.
const KEY_PREFIX: &str = "key_";

/// What a charge's admission is checked against (see [`admission`]).
struct Admitted<'a> {
    merchant_id: i64,
    merchant_uid: &'a str,
    amount: i64,
    currency: &'a str,
}

/// The columns of `model` that are `Set` to a value other than NULL (and that `keep` accepts),
/// with their values: what an `INSERT … SELECT` of that model lists. A column left out gets its
/// default, which is NULL for every nullable column (the migrations give defaults only to NOT
/// NULL columns); fewer columns make a smaller statement for PostgreSQL to bind and set up on
/// every execution.
fn non_null_values<A: ActiveModelTrait>(
    model: &A,
    keep: impl Fn(&<A::Entity as EntityTrait>::Column) -> bool,
) -> Vec<(<A::Entity as EntityTrait>::Column, sea_orm::Value)> {
    let mut values = set_values(model, keep);
    values.retain(|(_, v)| *v != v.as_null());
    values
}

/// `INSERT INTO table (columns…) SELECT values…[, extra…]`: each value bound, each of `extra` a
/// column of a `WITH` part (`(part, column)`), listed after the values under `extra_columns`.
fn insert_select<C: IdenStatic>(
    q: &mut SqlText,
    table: &str,
    values: Vec<(C, sea_orm::Value)>,
    extra: &[(&str, &str, &str)],
) {
    q.sql("INSERT INTO ").ident(table).sql(" (");
    q.list(
        values
            .iter()
            .map(|(c, _)| c.as_str())
            .chain(extra.iter().map(|(column, _, _)| *column)),
        |q, c| {
            q.ident(c);
        },
    );
    q.sql(") SELECT ");
    q.list(values.into_iter().map(|(_, v)| v), |q, v| {
        q.bind(v);
    });
    for (_, part, column) in extra {
        q.sql(", ").column(part, column);
    }
}

/// `SELECT 1 FROM prepares WHERE …`: a row that prepared the merchant_uid with another amount or
/// currency than `a` (the same rule as [`prepared_refuses`]).
fn refusing_prepare(q: &mut SqlText, a: &Admitted<'_>) {
    let t = &table::<prepare::Entity>();
    q.sql("SELECT 1 FROM ").ident(t).sql(" WHERE ");
    q.eq(t, prepare::Column::MerchantId.as_str(), a.merchant_id);
    q.sql(" AND ")
        .eq(t, prepare::Column::MerchantUid.as_str(), a.merchant_uid);
    q.sql(" AND (")
        .column(t, prepare::Column::Amount.as_str())
        .sql(" <> ")
        .bind(a.amount);
    q.sql(" OR (")
        .column(t, prepare::Column::Currency.as_str())
        .sql(" IS NOT NULL AND ")
        .column(t, prepare::Column::Currency.as_str())
        .sql(" <> ")
        .bind(a.currency)
        .sql("))");
}

/// `SELECT billing_keys.* FROM billing_keys WHERE` the customer_uid's active key: the rows of
/// `billing::active_key_query`; on PostgreSQL `FOR SHARE`. The charge that reads the key holds it
/// locked until it commits, so a re-registration or a delete, which retires the key with an
/// `UPDATE` of its row, waits for the charge to be written: its deletion at KCP then sees the
/// charge open and waits for it to settle (service/retired_keys.rs). Unlocked, the key could be
/// retired and deleted at KCP between this read and the commit (the charge not yet visible to the
/// deletion's check), and the charge then sent with a key KCP no longer holds. A key retired while
/// the charge waits for the lock is read again as it now is, not active, and the charge does not
/// open with it. SQLite's one writer runs the two writes one after the other.
fn active_key_select(q: &mut SqlText, merchant_id: i64, customer_uid: &str) {
    let t = &table::<billing_key::Entity>();
    q.sql("SELECT ");
    q.list(billing_key::Column::iter(), |q, c| {
        q.column(t, c.as_str());
    });
    q.sql(" FROM ").ident(t).sql(" WHERE ");
    q.eq(t, billing_key::Column::MerchantId.as_str(), merchant_id);
    q.sql(" AND ")
        .eq(t, billing_key::Column::CustomerUid.as_str(), customer_uid);
    q.sql(" AND ")
        .column(t, billing_key::Column::Status.as_str())
        .sql(" = ")
        .literal("active");
    if q.backend() == DbBackend::Postgres {
        q.sql(" FOR SHARE");
    }
}

/// `INSERT INTO payments (…) SELECT …[, extra…] [FROM sources] WHERE NOT EXISTS (a prepared row
/// refusing it) RETURNING *`: the pending payment, inserted only when admitted.
fn insert_admitted_payment(
    q: &mut SqlText,
    values: Vec<(payment::Column, sea_orm::Value)>,
    extra: &[(&str, &str, &str)],
    sources: &[&str],
    admitted: &Admitted<'_>,
) {
    insert_select(q, &table::<payment::Entity>(), values, extra);
    if !sources.is_empty() {
        q.sql(" FROM ").list(sources, |q, s| {
            q.ident(s);
        });
    }
    q.sql(" WHERE NOT EXISTS (");
    refusing_prepare(q, admitted);
    q.sql(") RETURNING *");
}

/// `UPDATE pg_attempts SET … WHERE` the attempt `held` is still open and still held with the
/// lease it was read with ([`still_held`]).
fn update_held_attempt_sql(
    q: &mut SqlText,
    held: &pg_attempt::Model,
    changes: Vec<(pg_attempt::Column, sea_orm::Value)>,
) {
    let t = &table::<pg_attempt::Entity>();
    q.sql("UPDATE ").ident(t);
    set_list(q, changes);
    q.sql(" WHERE ")
        .eq(t, pg_attempt::Column::Id.as_str(), held.id);
    q.sql(" AND ")
        .column(t, pg_attempt::Column::State.as_str())
        .sql(" IN (")
        .list(OPEN_STATES, |q, state| {
            q.literal(state);
        })
        .sql(")");
    q.sql(" AND ")
        .eq(t, pg_attempt::Column::LeaseUntil.as_str(), held.lease_until);
}

/// `UPDATE payments SET … WHERE id = … AND status = from`.
fn update_payment_in_status_sql(
    q: &mut SqlText,
    payment_id: sea_orm::Value,
    from: &str,
    changes: Vec<(payment::Column, sea_orm::Value)>,
) {
    let t = &table::<payment::Entity>();
    q.sql("UPDATE ").ident(t);
    set_list(q, changes);
    q.sql(" WHERE ")
        .eq(t, payment::Column::Id.as_str(), payment_id);
    q.sql(" AND ").eq(t, payment::Column::Status.as_str(), from);
}

/// [`open_charge`]'s one PostgreSQL statement, written as text (store/sql_text.rs):
///
/// ```sql
/// WITH k AS (SELECT billing_keys.* … active key of the customer_uid),       -- billing-key charge
///      s AS (UPDATE schedules SET imp_uid = … WHERE held AND admitted),      -- scheduled charge
///      p AS (INSERT INTO payments (…) SELECT …[, k.card_…] [FROM k, s]
///            WHERE NOT EXISTS (a refusing prepared row) RETURNING *),
///      a AS (INSERT INTO pg_attempts (payment_id, …) SELECT p.id, … FROM p RETURNING id)
/// SELECT p.*, a.id AS attempt_id[, k.… AS key_…] FROM p, a[, k]
/// ```
///
/// `schedule`: the run's hold and the imp_uid to record on the schedule.
fn open_charge_statement(
    payment: &payment::ActiveModel,
    attempt: &pg_attempt::ActiveModel,
    admitted: &Admitted<'_>,
    billing_key: Option<&str>,
    schedule: Option<(HeldSchedule, &str)>,
) -> Statement {
    let mut q = SqlText::new(DbBackend::Postgres);
    q.sql("WITH ");
    if let Some(customer_uid) = billing_key {
        q.ident("k").sql(" AS (");
        active_key_select(&mut q, admitted.merchant_id, customer_uid);
        q.sql("), ");
    }
    // A scheduled charge: its imp_uid on the schedule, while this run holds it and the payment
    // is admitted (the same conditions as the insert's, read in the same snapshot), so that the
    // schedule names a payment exactly when the payment is inserted; the payment is inserted only
    // `FROM` the updated schedule.
    if let Some((hold, imp_uid)) = schedule {
        let t = &table::<schedule::Entity>();
        q.ident("s").sql(" AS (UPDATE ").ident(t).sql(" SET ");
        q.ident(schedule::Column::ImpUid.as_str())
            .sql(" = ")
            .bind(imp_uid);
        // `billing::held`.
        q.sql(" WHERE ")
            .eq(t, schedule::Column::Id.as_str(), hold.id);
        q.sql(" AND ")
            .column(t, schedule::Column::Status.as_str())
            .sql(" = ")
            .literal("executing");
        q.sql(" AND ")
            .eq(t, schedule::Column::ClaimToken.as_str(), hold.token);
        q.sql(" AND NOT EXISTS (");
        refusing_prepare(&mut q, admitted);
        q.sql(")");
        if billing_key.is_some() {
            q.sql(" AND EXISTS (SELECT 1 FROM ").ident("k").sql(")");
        }
        q.sql(" RETURNING ")
            .ident(schedule::Column::Id.as_str())
            .sql("), ");
    }
    // The payment's columns as given (the card's from the key, for a billing-key charge),
    // inserted only when no prepared row refuses them.
    let from_key = |c: &payment::Column| {
        billing_key.is_some() && CARD_FROM_KEY.iter().any(|(p, _)| p.as_str() == c.as_str())
    };
    let card_from_key: Vec<(&str, &str, &str)> = match billing_key {
        Some(_) => CARD_FROM_KEY
            .iter()
            .map(|(p, k)| (p.as_str(), "k", k.as_str()))
            .collect(),
        None => Vec::new(),
    };
    let sources: Vec<&str> = [billing_key.map(|_| "k"), schedule.map(|_| "s")]
        .into_iter()
        .flatten()
        .collect();
    q.ident("p").sql(" AS (");
    insert_admitted_payment(
        &mut q,
        non_null_values(payment, |c| !from_key(c)),
        &card_from_key,
        &sources,
        admitted,
    );
    q.sql("), ");
    // The attempt's columns as given, with payment_id taken from the inserted payment.
    q.ident("a").sql(" AS (");
    insert_select(
        &mut q,
        &table::<pg_attempt::Entity>(),
        non_null_values(attempt, |c| {
            !matches!(c, pg_attempt::Column::Id | pg_attempt::Column::PaymentId)
        }),
        &[(
            pg_attempt::Column::PaymentId.as_str(),
            "p",
            payment::Column::Id.as_str(),
        )],
    );
    q.sql(" FROM ").ident("p").sql(" RETURNING ");
    q.ident(pg_attempt::Column::Id.as_str()).sql(") ");
    q.sql("SELECT ").ident("p").sql(".*, ");
    q.column("a", pg_attempt::Column::Id.as_str())
        .sql(" AS ")
        .ident("attempt_id");
    if billing_key.is_some() {
        // The key's columns, prefixed so they do not collide with the payment's.
        for c in billing_key::Column::iter() {
            q.sql(", ")
                .column("k", c.as_str())
                .sql(" AS ")
                .ident(&format!("{KEY_PREFIX}{}", c.as_str()));
        }
    }
    q.sql(" FROM ").ident("p").sql(", ").ident("a");
    if billing_key.is_some() {
        q.sql(", ").ident("k");
    }
    q.into_statement()
}

/// [`conclude_charge`]'s one PostgreSQL statement, written as text (store/sql_text.rs):
///
/// ```sql
/// WITH l AS (SELECT id FROM payments WHERE id = … AND status = `from` FOR UPDATE),
///      a AS (UPDATE pg_attempts SET … WHERE still held
///            AND EXISTS (SELECT 1 FROM l) RETURNING id),
///      p AS (UPDATE payments SET … WHERE id = … AND status = `from`
///            AND EXISTS (SELECT 1 FROM a) RETURNING *),
///      w0 AS (INSERT INTO webhook_deliveries (…) SELECT … FROM p), …
/// SELECT p.* FROM p
/// ```
///
/// `l` is why the attempt's update can trust the payment's status: a plain `EXISTS` on
/// `payments` reads the statement's snapshot, so a transaction that moved the payment out of
/// `from` and committed after the snapshot was taken went unseen there, while `p`, which
/// re-checks its row once it has the lock, saw it and wrote nothing: the attempt was closed and
/// the payment left unmoved (an approval KCP holds, on a `pending` payment with no open attempt
/// for the resolver to find). `FOR UPDATE` waits for such a transaction and re-checks the
/// committed row, and then holds it until this statement commits, so `a` and `p` decide on one
/// status. It takes the payment's row before the attempt's, the order every transaction holding
/// a payment (`by_id_held`, `hold_if_status`) takes them in.
fn conclude_charge_statement(
    held: &pg_attempt::Model,
    from: &str,
    payment: &payment::ActiveModel,
    attempt: &pg_attempt::ActiveModel,
    webhooks: &[webhook_delivery::ActiveModel],
) -> Result<Statement, DbErr> {
    let Conclusion {
        payment_id,
        attempt_changes,
        payment_changes,
    } = conclusion(payment, attempt)?;
    let mut q = SqlText::new(DbBackend::Postgres);
    let payments = &table::<payment::Entity>();
    q.sql("WITH ").ident("l").sql(" AS (SELECT ");
    q.ident(payment::Column::Id.as_str())
        .sql(" FROM ")
        .ident(payments)
        .sql(" WHERE ");
    q.eq(payments, payment::Column::Id.as_str(), payment_id.clone());
    q.sql(" AND ")
        .eq(payments, payment::Column::Status.as_str(), from)
        .sql(" FOR UPDATE), ");
    q.ident("a").sql(" AS (");
    update_held_attempt_sql(&mut q, held, attempt_changes);
    q.sql(" AND EXISTS (SELECT 1 FROM ").ident("l").sql(")");
    q.sql(" RETURNING ")
        .ident(pg_attempt::Column::Id.as_str())
        .sql("), ");
    q.ident("p").sql(" AS (");
    update_payment_in_status_sql(&mut q, payment_id, from, payment_changes);
    q.sql(" AND EXISTS (SELECT 1 FROM ")
        .ident("a")
        .sql(") RETURNING *)");
    // Each webhook row is inserted `FROM p`: one row when the payment was updated, none otherwise.
    for (i, w) in webhooks.iter().enumerate() {
        q.sql(", ").ident(&format!("w{i}")).sql(" AS (");
        insert_webhook(&mut q, w);
        q.sql(" FROM ").ident("p").sql(")");
    }
    q.sql(" SELECT ").ident("p").sql(".* FROM ").ident("p");
    Ok(q.into_statement())
}

/// [`conclude_charge`]'s statements on SQLite, run in one transaction: the attempt's update
/// (while still held), the payment's (while in status `from`, `RETURNING *`) and each webhook's
/// insert.
fn conclude_charge_sqlite(
    held: &pg_attempt::Model,
    from: &str,
    payment: &payment::ActiveModel,
    attempt: &pg_attempt::ActiveModel,
    webhooks: &[webhook_delivery::ActiveModel],
) -> Result<(Statement, Statement, Vec<Statement>), DbErr> {
    let Conclusion {
        payment_id,
        attempt_changes,
        payment_changes,
    } = conclusion(payment, attempt)?;
    let mut attempt_update = SqlText::new(DbBackend::Sqlite);
    update_held_attempt_sql(&mut attempt_update, held, attempt_changes);
    let mut payment_update = SqlText::new(DbBackend::Sqlite);
    update_payment_in_status_sql(&mut payment_update, payment_id, from, payment_changes);
    payment_update.sql(" RETURNING *");
    let webhook_inserts = webhooks
        .iter()
        .map(|w| {
            let mut q = SqlText::new(DbBackend::Sqlite);
            insert_webhook(&mut q, w);
            q.into_statement()
        })
        .collect();
    Ok((
        attempt_update.into_statement(),
        payment_update.into_statement(),
        webhook_inserts,
    ))
}

/// What [`conclude_charge`] writes: the payment's id, and the `Set` columns of the attempt and of
/// the payment (their ids aside).
struct Conclusion {
    payment_id: sea_orm::Value,
    attempt_changes: Vec<(pg_attempt::Column, sea_orm::Value)>,
    payment_changes: Vec<(payment::Column, sea_orm::Value)>,
}

fn conclusion(
    payment: &payment::ActiveModel,
    attempt: &pg_attempt::ActiveModel,
) -> Result<Conclusion, DbErr> {
    let payment_id = payment
        .id
        .clone()
        .into_value()
        .ok_or_else(|| DbErr::Custom("conclude_charge: payment id must be set".into()))?;
    let attempt_changes = set_values(attempt, |c| !matches!(c, pg_attempt::Column::Id));
    let payment_changes = set_values(payment, |c| !matches!(c, payment::Column::Id));
    if attempt_changes.is_empty() || payment_changes.is_empty() {
        return Err(DbErr::Custom(
            "conclude_charge: the attempt and the payment must each have a change".into(),
        ));
    }
    Ok(Conclusion {
        payment_id,
        attempt_changes,
        payment_changes,
    })
}

/// `INSERT INTO webhook_deliveries (…) SELECT …`.
fn insert_webhook(q: &mut SqlText, w: &webhook_delivery::ActiveModel) {
    insert_select(
        q,
        &table::<webhook_delivery::Entity>(),
        non_null_values(w, |_| true),
        &[],
    );
}

/// ` SET column = value, …` of an `UPDATE`.
fn set_list<C: IdenStatic>(q: &mut SqlText, changes: Vec<(C, sea_orm::Value)>) {
    q.sql(" SET ").list(changes, |q, (c, v)| {
        q.ident(c.as_str()).sql(" = ").bind(v);
    });
}

/// Records a charge's outcome atomically: the payment's new state, its attempt closed, and the
/// webhooks announcing it (none, one per target). Both models carry their ids and only the changed
/// columns are `Set`. All of it is conditional: the attempt `held` still open and still held with
/// the lease it was read with, and the payment still in status `from`. Otherwise nothing is written
/// and None comes back: someone else decided this attempt, and their outcome stands.
///
/// On PostgreSQL this is ONE statement (a data-modifying `WITH`, atomic by itself: all its parts
/// commit or none) instead of `BEGIN`, two updates, the inserts and `COMMIT`. It first reads the
/// payment in status `from` holding its row (`FOR UPDATE`: a transaction changing it is waited
/// for and its change seen); the attempt's update requires that row; the payment's update and each
/// webhook's insert require the attempt's update to have happened (the parts of one statement see
/// one snapshot and talk only through `RETURNING`, so the status both updates depend on has to be
/// a locked read, not a snapshot's: see `conclude_charge_statement`). A concurrent writer of the
/// attempt blocks on its row and then finds it closed; a concurrent writer of the payment either
/// waits for this statement or is waited for, and then the attempt stays open. SQLite has no
/// data-modifying `WITH`; there it is a transaction handed to the writer whole
/// ([`super::Writer::transact`]) that checks each update and rolls back. Both write their
/// statements as text (store/sql_text.rs).
pub async fn conclude_charge(
    db: &super::Writer,
    held: &pg_attempt::Model,
    from: &str,
    payment: payment::ActiveModel,
    attempt: pg_attempt::ActiveModel,
    webhooks: Vec<webhook_delivery::ActiveModel>,
) -> Result<Option<payment::Model>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        let (attempt_update, payment_update, webhook_inserts) =
            conclude_charge_sqlite(held, from, &payment, &attempt, &webhooks)?;
        return db
            .transact(move |txn| {
                async move {
                    let txn = &txn;
                    if txn.execute(attempt_update).await?.rows_affected() != 1 {
                        return Ok(Decided::Rollback(None));
                    }
                    let Some(row) = txn.query_one(payment_update).await? else {
                        return Ok(Decided::Rollback(None));
                    };
                    for insert in webhook_inserts {
                        txn.execute(insert).await?;
                    }
                    Ok(Decided::Commit(Some(payment::Model::from_query_result(
                        &row, "",
                    )?)))
                }
                .boxed()
            })
            .await;
    }
    let statement = conclude_charge_statement(held, from, &payment, &attempt, &webhooks)?;
    match db.query_one(statement).await? {
        Some(row) => payment::Model::from_query_result(&row, "").map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveValue::NotSet, Set};

    use super::super::entity::{merchant, payment, pg_attempt, prepare};
    use super::super::{merchants, Db};
    use super::{conclude_charge, open_charge, OpenedCharge};

    /// A migrated database at `url` with one merchant; its id.
    async fn with_a_merchant(url: &str) -> (Db, i64) {
        let db = Db::connect(url).await.unwrap();
        db.migrate().await.unwrap();
        let m = merchants::insert(
            &db.write,
            merchant::ActiveModel {
                imp_code: Set("imp_test".into()),
                name: Set("shop".into()),
                imp_key: Set("key".into()),
                imp_secret_hash: Set("hash".into()),
                site_cd: Set("T0000".into()),
                kcp_certificate_pem: Set(String::new()),
                kcp_private_key_sealed: Set(String::new()),
                kcp_passphrase_sealed: Set(String::new()),
                test_mode: Set(true),
                created_at: Set(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        (db, m.id)
    }

    fn pending(merchant_id: i64, n: u32, amount: i64) -> payment::ActiveModel {
        payment::ActiveModel {
            imp_uid: Set(format!("imp_{n:012}")),
            merchant_id: Set(merchant_id),
            merchant_uid: Set(format!("order-{n}")),
            order_no: Set(format!("OP{n:012}")),
            status: Set("pending".into()),
            pay_method: Set("card".into()),
            channel: Set("api".into()),
            pg_provider: Set("kcp".into()),
            pg_id: Set("T0000".into()),
            amount: Set(amount),
            cancel_amount: Set(0),
            currency: Set("KRW".into()),
            // Set to NULL: left out of the INSERT, NULL all the same.
            buyer_name: Set(None),
            card_quota: Set(0),
            sandbox: Set(true),
            started_at: Set(100),
            updated_at: Set(100),
            ..Default::default()
        }
    }

    fn attempt(n: u32, amount: i64) -> pg_attempt::ActiveModel {
        pg_attempt::ActiveModel {
            id: NotSet,
            payment_id: NotSet,
            kind: Set("approve".into()),
            state: Set("pending".into()),
            order_no: Set(format!("OP{n:012}")),
            amount: Set(amount),
            tries: Set(0),
            next_check_at: Set(130),
            lease_until: Set(200),
            created_at: Set(100),
            sent_at: Set(100),
            updated_at: Set(100),
            notify: Set(false),
            // Every column set: on PostgreSQL the opened attempt is this model with its ids.
            tno: Set(None),
            reason: Set(None),
            result_code: Set(None),
            result_message: Set(None),
            absent_order_no: Set(None),
            unsent: Set(false),
        }
    }

    /// The statements written as text, on both of SQLite's access paths (the writer's jobs on a
    /// file, sqlx in memory): a charge opens (payment and attempt linked), a prepared amount
    /// refuses one and a missing billing key another with nothing written, and an outcome is
    /// recorded once, by the holder of the attempt's lease.
    async fn a_charge_opens_is_refused_with_nothing_written_and_concludes_once(url: &str) {
        let (db, merchant_id) = with_a_merchant(url).await;
        let OpenedCharge::Opened(opened) = open_charge(
            &db.write,
            pending(merchant_id, 1, 1000),
            attempt(1, 1000),
            None,
            None,
        )
        .await
        .unwrap() else {
            panic!("not opened");
        };
        assert_eq!(opened.payment.status, "pending");
        assert_eq!(opened.payment.buyer_name, None);
        assert_eq!(opened.attempt.payment_id, opened.payment.id);
        assert_eq!(opened.attempt.lease_until, 200);

        super::insert_prepare(
            &db.write,
            prepare::ActiveModel {
                merchant_id: Set(merchant_id),
                merchant_uid: Set("order-2".into()),
                amount: Set(5000),
                currency: Set(None),
                created_at: Set(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let refused = open_charge(
            &db.write,
            pending(merchant_id, 2, 1000),
            attempt(2, 1000),
            None,
            None,
        )
        .await
        .unwrap();
        assert!(matches!(refused, OpenedCharge::PreparedDiffers(p) if p.amount == 5000));
        // A missing key and a refusing prepared row: the prepared row's refusal, as before.
        let refused = open_charge(
            &db.write,
            pending(merchant_id, 2, 1000),
            attempt(2, 1000),
            Some("nobody"),
            None,
        )
        .await
        .unwrap();
        assert!(matches!(refused, OpenedCharge::PreparedDiffers(_)));
        let refused = open_charge(
            &db.write,
            pending(merchant_id, 3, 1000),
            attempt(3, 1000),
            Some("nobody"),
            None,
        )
        .await
        .unwrap();
        assert!(matches!(refused, OpenedCharge::NoBillingKey));
        for n in [2, 3] {
            let imp_uid = format!("imp_{n:012}");
            assert!(super::by_imp_uid(&db.read, Some(merchant_id), &imp_uid)
                .await
                .unwrap()
                .is_none());
        }

        let paid = |status: &str| payment::ActiveModel {
            id: Set(opened.payment.id),
            status: Set(status.into()),
            pg_tid: Set(Some("T-1".into())),
            paid_at: Set(Some(110)),
            updated_at: Set(110),
            ..Default::default()
        };
        let approved = pg_attempt::ActiveModel {
            state: Set("approved".into()),
            tno: Set(Some("T-1".into())),
            updated_at: Set(110),
            ..Default::default()
        };
        let p = conclude_charge(
            &db.write,
            &opened.attempt,
            "pending",
            paid("paid"),
            approved.clone(),
            vec![],
        )
        .await
        .unwrap()
        .expect("recorded by the holder");
        assert_eq!(
            (p.status.as_str(), p.pg_tid.as_deref()),
            ("paid", Some("T-1"))
        );
        assert_eq!(p.paid_at, Some(110));
        // The attempt is closed: a second outcome (another holder's, stale) writes nothing.
        let again = conclude_charge(
            &db.write,
            &opened.attempt,
            "pending",
            paid("failed"),
            approved,
            vec![],
        )
        .await
        .unwrap();
        assert!(again.is_none());
        let stored = super::by_imp_uid(&db.read, Some(merchant_id), "imp_000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, "paid");
    }

    #[tokio::test]
    async fn charge_statements_work_on_the_sqlite_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        a_charge_opens_is_refused_with_nothing_written_and_concludes_once(&url).await;
    }

    #[tokio::test]
    async fn charge_statements_work_on_an_in_memory_sqlite_through_sqlx() {
        a_charge_opens_is_refused_with_nothing_written_and_concludes_once("sqlite::memory:").await;
    }

    /// A new database on the PostgreSQL of `DATABASE_URL` (named like tests/api's, so they are
    /// cleaned up alike); None when the run is on SQLite.
    async fn fresh_postgres_database() -> Option<String> {
        use sea_orm::sqlx::Connection;
        let url = std::env::var("DATABASE_URL").ok()?;
        if !url.starts_with("postgres") {
            return None;
        }
        let name = format!("openport_test_{}", crate::domain::ids::random_hex(6));
        let mut conn = sea_orm::sqlx::PgConnection::connect(&url).await.unwrap();
        sea_orm::sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = url.rsplit_once('/').expect("postgres URL with a database");
        Some(format!("{base}/{name}"))
    }

    /// Runs `conclude` while another connection's transaction holds an update of the payment
    /// `payment_id` (`change`, a `SET` list), committing it only once `conclude` waits for a lock:
    /// the outcome's statement began before the change committed. `conclude`'s result.
    async fn concluded_while_the_payment_changes<T>(
        db: &super::super::Db,
        url: &str,
        payment_id: i64,
        change: &str,
        conclude: impl std::future::Future<Output = T>,
    ) -> T {
        use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
        let other = sea_orm::Database::connect(url).await.unwrap();
        let txn = other.begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "UPDATE payments SET {change} WHERE id = {payment_id}"
        ))
        .await
        .unwrap();
        let commit_once_waited_for = async {
            // pg_stat_activity is read on its own connection: a transaction sees one snapshot of it.
            let waiting = Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
            for _ in 0..500 {
                let row = db.read.query_one(waiting.clone()).await.unwrap().unwrap();
                if row.try_get::<i64>("", "n").unwrap() > 0 {
                    return txn.commit().await.unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the outcome's statement never waited for the payment's row");
        };
        let (concluded, ()) = tokio::join!(conclude, commit_once_waited_for);
        concluded
    }

    /// PostgreSQL: an outcome whose statement began before another transaction moved the payment
    /// out of `pending` (and committed) writes nothing, the attempt included: the attempt stays
    /// open and held, for its holder to read what happened, and the resolver to find if it does
    /// not. Its payment status is a locked read, not the snapshot's (an attempt closed as
    /// `approved` on a payment left unmoved would be money at KCP nobody looks at again). A change
    /// that leaves the payment `pending` is waited for and the outcome written whole; and the
    /// statement still reads both rows through their primary keys.
    #[tokio::test]
    async fn on_postgres_an_outcome_racing_a_change_of_its_payment_writes_all_of_it_or_nothing() {
        use sea_orm::{ConnectionTrait, EntityTrait};
        let Some(url) = fresh_postgres_database().await else {
            return;
        };
        let (db, merchant_id) = with_a_merchant(&url).await;
        let opened = |n| {
            let db = &db;
            async move {
                match open_charge(
                    &db.write,
                    pending(merchant_id, n, 1000),
                    attempt(n, 1000),
                    None,
                    None,
                )
                .await
                .unwrap()
                {
                    OpenedCharge::Opened(o) => o,
                    _ => panic!("not opened"),
                }
            }
        };
        let paid = |id| payment::ActiveModel {
            id: Set(id),
            status: Set("paid".into()),
            pg_tid: Set(Some("T-1".into())),
            paid_at: Set(Some(110)),
            updated_at: Set(110),
            ..Default::default()
        };
        let approved = || pg_attempt::ActiveModel {
            state: Set("approved".into()),
            tno: Set(Some("T-1".into())),
            updated_at: Set(110),
            ..Default::default()
        };

        let moved = opened(1).await;
        let written = concluded_while_the_payment_changes(
            &db,
            &url,
            moved.payment.id,
            "status = 'failed', updated_at = 105",
            conclude_charge(
                &db.write,
                &moved.attempt,
                "pending",
                paid(moved.payment.id),
                approved(),
                vec![],
            ),
        )
        .await
        .unwrap();
        assert!(written.is_none(), "{written:?}");
        let attempt_after = pg_attempt::Entity::find_by_id(moved.attempt.id)
            .one(&db.read)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                attempt_after.state.as_str(),
                attempt_after.lease_until,
                attempt_after.tno
            ),
            ("pending", moved.attempt.lease_until, None),
            "the attempt was closed on a payment another transaction moved"
        );
        let payment_after = super::by_id(&db.read, moved.payment.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment_after.status, "failed");

        let touched = opened(2).await;
        let written = concluded_while_the_payment_changes(
            &db,
            &url,
            touched.payment.id,
            "updated_at = 105",
            conclude_charge(
                &db.write,
                &touched.attempt,
                "pending",
                paid(touched.payment.id),
                approved(),
                vec![],
            ),
        )
        .await
        .unwrap()
        .expect("the payment is still pending: the outcome is written");
        assert_eq!((written.status.as_str(), written.updated_at), ("paid", 110));
        let attempt_after = pg_attempt::Entity::find_by_id(touched.attempt.id)
            .one(&db.read)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(attempt_after.state, "approved");

        // The plan: index lookups on both rows (sequential scans forbidden, as tables this small
        // would otherwise be read whole whatever their indexes).
        let statement = super::conclude_charge_statement(
            &touched.attempt,
            "pending",
            &paid(touched.payment.id),
            &approved(),
            &[],
        )
        .unwrap();
        let txn = sea_orm::TransactionTrait::begin(&db.read).await.unwrap();
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
        let explain = sea_orm::Statement {
            sql: format!("EXPLAIN {}", statement.sql),
            ..statement
        };
        let plan: Vec<String> = txn
            .query_all(explain)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("Index Scan using payments_pkey"), "{plan}");
        assert!(plan.contains("Index Scan using pg_attempts_pkey"), "{plan}");
    }

    /// The merchant listings read their window through an index on the time they compare (the
    /// customer's listing through the customer's index), for the count and the page alike: no
    /// plan reads the merchant's payments through `payments_by_started` by merchant alone.
    #[tokio::test]
    async fn a_status_listing_reads_only_the_payments_of_its_window() {
        use super::{filtered, sorted, PaymentQuery, Sorting, TimeColumn};
        use sea_orm::{DbBackend, QuerySelect, QueryTrait};
        let (db, merchant_id) = with_a_merchant("sqlite::memory:").await;
        let by_time = |statuses: Vec<&'static str>, column| PaymentQuery {
            merchant_id: Some(merchant_id),
            statuses,
            time_range: Some((column, 1_000, 2_000)),
            include_sandbox: true,
            ..PaymentQuery::default()
        };
        let cases = [
            (
                by_time(vec!["paid"], TimeColumn::Paid),
                vec!["payments_by_started (merchant_id=? AND started_at>? AND started_at<?)"],
            ),
            (
                by_time(vec!["failed"], TimeColumn::Failed),
                vec!["payments_by_failed (merchant_id=? AND failed_at>? AND failed_at<?)"],
            ),
            (
                by_time(vec!["cancelled"], TimeColumn::Cancelled),
                vec!["payments_by_cancelled (merchant_id=? AND cancelled_at>? AND cancelled_at<?)"],
            ),
            (
                by_time(vec!["ready", "pending"], TimeColumn::Started),
                vec!["payments_by_started (merchant_id=? AND started_at>? AND started_at<?)"],
            ),
            (
                by_time(vec![], TimeColumn::OfStatus),
                vec![
                    "payments_by_cancelled (merchant_id=? AND cancelled_at>? AND cancelled_at<?)",
                    "payments_by_failed (merchant_id=? AND failed_at>? AND failed_at<?)",
                    "payments_by_started (merchant_id=? AND started_at>? AND started_at<?)",
                ],
            ),
            (
                PaymentQuery {
                    merchant_id: Some(merchant_id),
                    customer_uid: Some("customer-1".into()),
                    include_sandbox: true,
                    ..PaymentQuery::default()
                },
                vec!["payments_by_customer (merchant_id=? AND customer_uid=?)"],
            ),
        ];
        for (q, ranges) in cases {
            let page = sorted(filtered(&q), Sorting::Started { desc: true })
                .offset(20)
                .limit(20)
                .build(DbBackend::Sqlite);
            let count = filtered(&q)
                .select_only()
                .column_as(sea_orm::sea_query::Expr::cust("COUNT(*)"), "n")
                .build(DbBackend::Sqlite);
            for stmt in [count, page] {
                let plan = super::super::sqlite_plan(&db, stmt).await;
                for range in &ranges {
                    assert!(plan.contains(range), "{q:?}: {range} not in\n{plan}");
                }
                assert!(
                    !plan.contains("payments_by_started (merchant_id=?)"),
                    "{q:?} reads the merchant's whole history:\n{plan}"
                );
            }
        }
    }

    /// `GET /admin/status` polls this: it reads the open attempts through their partial index,
    /// never the whole table of attempts.
    #[tokio::test]
    async fn the_open_attempts_summary_reads_the_index_of_the_open_attempts() {
        use sea_orm::{DbBackend, QueryTrait};
        let (db, _) = with_a_merchant("sqlite::memory:").await;
        let stmt =
            super::open_attempts_summary_query(&["absence_recheck"]).build(DbBackend::Sqlite);
        let plan = super::super::sqlite_plan(&db, stmt).await;
        assert!(plan.contains("pg_attempts_due"), "{plan}");
        assert_eq!(
            super::open_attempts_summary(&db.read, &["absence_recheck"])
                .await
                .unwrap(),
            (0, None)
        );
    }

    /// A second look (`absence_recheck`, due an hour after it is made) counts as open but does not
    /// make the oldest open attempt's age: `/admin/status` said 1,808 s with nothing waiting,
    /// over the alert threshold the docs give (runbook review, finding 3).
    #[tokio::test]
    async fn the_oldest_open_attempt_leaves_out_the_routine_second_looks() {
        let (db, merchant_id) = with_a_merchant("sqlite::memory:").await;
        for (n, kind, created_at) in [(1, "absence_recheck", 100), (2, "approve", 250)] {
            let OpenedCharge::Opened(_) = open_charge(
                &db.write,
                pending(merchant_id, n, 1000),
                pg_attempt::ActiveModel {
                    kind: Set(kind.into()),
                    created_at: Set(created_at),
                    ..attempt(n, 1000)
                },
                None,
                None,
            )
            .await
            .unwrap() else {
                panic!("not opened");
            };
        }

        let summary = super::open_attempts_summary(&db.read, &["absence_recheck"])
            .await
            .unwrap();

        assert_eq!(summary, (2, Some(250)));
        assert_eq!(
            super::open_attempts_summary(&db.read, &[]).await.unwrap(),
            (2, Some(100))
        );
    }

    /// `GET /admin/status` counts the attempts closed as `conflict` and `openport attempt list
    /// --conflicts` lists them oldest first: both read their partial index, the listing in its
    /// order (no sort), never the whole table of attempts.
    #[tokio::test]
    async fn the_conflict_count_and_listing_read_the_index_of_the_conflicts() {
        use sea_orm::{DbBackend, QueryTrait};
        let (db, _) = with_a_merchant("sqlite::memory:").await;
        for stmt in [
            super::count_conflict_attempts_query().build(DbBackend::Sqlite),
            super::conflict_attempts_query(100).build(DbBackend::Sqlite),
        ] {
            let plan = super::super::sqlite_plan(&db, stmt).await;
            assert!(
                plan.contains("USING COVERING INDEX pg_attempts_conflicts")
                    || plan.contains("USING INDEX pg_attempts_conflicts"),
                "{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        assert_eq!(super::count_conflict_attempts(&db.read).await.unwrap(), 0);
        assert!(super::conflict_attempts(&db.read, 100)
            .await
            .unwrap()
            .is_empty());
    }
}
