//! Webhook outbox rows and delivery attempts.
use sea_orm::sea_query::{Alias, Expr, LockBehavior, LockType, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set,
    Statement,
};

use super::entity::{merchant, webhook_attempt, webhook_delivery};

/// Writes a delivery, in the caller's transaction. A pending one written while an older
/// delivery of its payment to its URL waits for a retry is due at that retry at the earliest
/// ([`older_retry_after`]): it is held back until then anyway ([`no_older_pending`]), and at its
/// creation time it sat at the head of the `webhook_deliveries_due` index, where every claim
/// walked past it, until that retry's attempt moved it ([`move_held_back`], review rG, F3).
///
/// Best effort, as it needs no lock: an older delivery whose attempt is recorded between this
/// look and the commit moves only the rows it sees, so this one may still start at its creation
/// time; it is held back all the same, and the older one's next attempt moves it. The rows a
/// charge's outcome writes in its own statement (`store::payments::conclude_charge`) are not
/// looked at here: they start at their creation time as before.
pub async fn insert_delivery(
    db: &impl ConnectionTrait,
    mut d: webhook_delivery::ActiveModel,
) -> Result<webhook_delivery::Model, DbErr> {
    let waits = match (
        d.state.try_as_ref(),
        d.imp_uid.try_as_ref(),
        d.url.try_as_ref(),
        d.next_attempt_at.try_as_ref(),
    ) {
        (Some(state), Some(imp_uid), Some(url), Some(&at)) if state == "pending" => {
            older_retry_after(db, imp_uid, url, at).await?
        }
        _ => None,
    };
    if let Some(until) = waits {
        d.next_attempt_at = Set(until);
    }
    d.insert(db).await
}

/// The latest `next_attempt_at` after `at` of the pending deliveries of `imp_uid` to `url`: the
/// retry an older delivery waits for (and the rows already held back behind it, moved there by
/// [`move_held_back`]); None when none waits past `at`. One in flight is due at or before `at`
/// and does not count: its attempt moves the newer rows once it ends.
///
/// The payment's deliveries to `url` are read through `webhook_deliveries_by_imp_uid` (a payment
/// has a few) and their state and time are compared here: with `state = 'pending' AND
/// next_attempt_at > ?` in the statement, SQLite took the `webhook_deliveries_due` index instead,
/// every pending row due later (all the retries of every merchant) scanned on each event written.
async fn older_retry_after(
    db: &impl ConnectionTrait,
    imp_uid: &str,
    url: &str,
    at: i64,
) -> Result<Option<i64>, DbErr> {
    let rows = to_the_url(imp_uid, url)
        .into_model::<Waiting>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|d| d.state == "pending" && d.next_attempt_at > at)
        .map(|d| d.next_attempt_at)
        .max())
}

/// A row of [`to_the_url`], read by name (SQLite's rows are read by name, not as a tuple).
#[derive(FromQueryResult)]
struct Waiting {
    state: String,
    next_attempt_at: i64,
}

/// The state and next attempt of each delivery of `imp_uid` to `url`.
fn to_the_url(imp_uid: &str, url: &str) -> sea_orm::Select<webhook_delivery::Entity> {
    webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::State)
        .column(webhook_delivery::Column::NextAttemptAt)
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .filter(webhook_delivery::Column::Url.eq(url))
}

pub async fn delivery_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    webhook_delivery::Entity::find_by_id(id).one(db).await
}

/// A pending delivery whose next attempt is due and that no worker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub struct DueDelivery {
    pub id: i64,
    /// Known before the claim, so a worker can keep to its per-merchant cap without taking a
    /// lease it would not use.
    pub merchant_id: i64,
    /// To the merchant's configured URL, not a `notice_url` only (the worker keeps slots for
    /// these).
    pub to_merchant_url: bool,
}

/// The rows a worker's claim leaves out, so that it takes none it would only give back: those
/// of merchants at their cap, and those to `notice_url`s where their share of the slots is full
/// (`jobs::webhooks`). Rows to a merchant's configured URL are left out only with the merchant.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeftOut<'a> {
    /// None of these merchants' rows.
    pub merchants: &'a [i64],
    /// Of these merchants, only the rows to their configured URL.
    pub notice_urls_of: &'a [i64],
    /// Of every merchant, only the rows to its configured URL.
    pub all_notice_urls: bool,
}

/// No older delivery of the same payment to the same URL is still `pending` (in flight, or
/// waiting for its retry): the events of one payment reach each URL one at a time, in the order
/// they were written. Sent side by side, or with each row on its own retry schedule, a receiver
/// got `cancelled` before `paid`, or a `ready` retried after the deposit's `paid`, and a merchant
/// acting on the body's `status` moved a cancelled order back to paid (review rF, F1). Row ids
/// grow with the order the events were committed in for one payment: its changes are written one
/// after another. `failed` and `delivered` rows do not hold the next one back: a give-up (after
/// the last backoff) lets it go.
///
/// Every pending row counts, leased or not, so the rule needs no lock of its own: the older row
/// stays `pending` from before any claim until its attempt is recorded, so every snapshot a
/// claim may read (two instances claiming at once on PostgreSQL, `FOR UPDATE SKIP LOCKED`) sees
/// it blocking the newer one. The older rows are found through `webhook_deliveries_by_imp_uid`
/// (a payment has a few deliveries): SQLite's plan is tested below; PostgreSQL's is a nested-loop
/// anti join over that index under the `webhook_deliveries_due` scan (EXPLAIN, 200,000 rows).
fn no_older_pending() -> SimpleExpr {
    Expr::exists(of_the_same_payment(Side::Older, None, &["pending"])).not()
}

/// Which of the outer row's neighbours [`of_the_same_payment`] looks at.
#[derive(Clone, Copy)]
enum Side {
    /// Lower ids: written before it.
    Older,
    /// Higher ids: written after it.
    Newer,
}

/// The deliveries of the outer `webhook_deliveries` row's payment on `side` of it (by id), to
/// `url` (the outer row's own URL when None), in one of `states`: a sub-query correlated with the
/// outer row, found through `webhook_deliveries_by_imp_uid` (a payment has a few deliveries).
/// What holds a delivery back ([`no_older_pending`]) and what refuses its resend
/// ([`newer_sent_or_queued`]).
fn of_the_same_payment(
    side: Side,
    url: Option<&str>,
    states: &[&str],
) -> sea_orm::sea_query::SelectStatement {
    let other = Alias::new(match side {
        Side::Older => "older",
        Side::Newer => "newer",
    });
    let col = |c: webhook_delivery::Column| Expr::col((other.clone(), c));
    let outer = |c: webhook_delivery::Column| (webhook_delivery::Entity, c);
    let to = match url {
        Some(url) => col(webhook_delivery::Column::Url).eq(url),
        None => col(webhook_delivery::Column::Url).equals(outer(webhook_delivery::Column::Url)),
    };
    let id = col(webhook_delivery::Column::Id);
    let outer_id = Expr::col(outer(webhook_delivery::Column::Id));
    Query::select()
        .expr(Expr::val(1))
        .from_as(webhook_delivery::Entity, other.clone())
        .and_where(
            col(webhook_delivery::Column::ImpUid).equals(outer(webhook_delivery::Column::ImpUid)),
        )
        .and_where(to)
        .and_where(match states {
            // The claim's statement as its plan was read (`=`, not an IN of one).
            [state] => col(webhook_delivery::Column::State).eq(*state),
            states => col(webhook_delivery::Column::State).is_in(states.iter().copied()),
        })
        .and_where(match side {
            Side::Older => id.lt(outer_id),
            Side::Newer => id.gt(outer_id),
        })
        .to_owned()
}

/// Pending deliveries due at `now` that no worker holds and no older delivery of the same
/// payment to the same URL holds back ([`no_older_pending`]), of the `served` merchants, but not
/// those `left_out` (a worker names the merchants and `notice_url`s at their cap, so a long
/// queue of theirs cannot fill a batch with rows the worker would only give back), oldest due
/// first. The conditions on `merchant_id` and `to_merchant_url` are checked on the rows the
/// `webhook_deliveries_due` index yields in order, whichever rows are left out: no other index,
/// no sort but of ties (the plan is tested below).
fn due(
    now: i64,
    served: super::billing::ServedMerchants,
    left_out: LeftOut<'_>,
) -> sea_orm::Select<webhook_delivery::Entity> {
    let mut due = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::State.eq("pending"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .filter(webhook_delivery::Column::LeaseUntil.lt(now))
        .filter(no_older_pending());
    if let Some(ids) = served.merchant_ids() {
        due = due.filter(webhook_delivery::Column::MerchantId.in_subquery(ids));
    }
    if !left_out.merchants.is_empty() {
        due =
            due.filter(webhook_delivery::Column::MerchantId.is_not_in(left_out.merchants.to_vec()));
    }
    if left_out.all_notice_urls {
        due = due.filter(webhook_delivery::Column::ToMerchantUrl.eq(true));
    } else if !left_out.notice_urls_of.is_empty() {
        due = due.filter(
            Condition::any()
                .add(webhook_delivery::Column::ToMerchantUrl.eq(true))
                .add(
                    webhook_delivery::Column::MerchantId
                        .is_not_in(left_out.notice_urls_of.to_vec()),
                ),
        );
    }
    due.order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .order_by_asc(webhook_delivery::Column::Id)
}

/// Up to `limit` due deliveries, oldest due first, claiming none.
pub async fn due_deliveries(
    db: &impl ConnectionTrait,
    now: i64,
    limit: u64,
    served: super::billing::ServedMerchants,
) -> Result<Vec<DueDelivery>, DbErr> {
    due(now, served, LeftOut::default())
        .select_only()
        .column(webhook_delivery::Column::Id)
        .column(webhook_delivery::Column::MerchantId)
        .column(webhook_delivery::Column::ToMerchantUrl)
        .limit(limit)
        .into_model()
        .all(db)
        .await
}

/// Claims up to `limit` due deliveries (oldest due first, none of those `left_out`) in one
/// statement, leasing them until `lease_until`, and returns them. On PostgreSQL the rows are
/// picked `FOR UPDATE SKIP LOCKED`, so instances claiming at the same moment take disjoint
/// batches: with a listing followed by claims, every instance listed the same oldest rows, and
/// one that lost every race had claimed nothing though a backlog was due. A row another claim
/// committed meanwhile is re-checked by the sub-select against its latest version and dropped.
/// SQLite has one writer and no row locks: the UPDATE with its sub-select is atomic as it is.
pub async fn claim_due_deliveries(
    db: &impl ConnectionTrait,
    now: i64,
    lease_until: i64,
    limit: u64,
    served: super::billing::ServedMerchants,
    left_out: LeftOut<'_>,
) -> Result<Vec<DueDelivery>, DbErr> {
    let backend = db.get_database_backend();
    let which = due_batch(backend, now, limit, served, left_out);
    let mut claimed = DueDelivery::find_by_statement(claim_statement(backend, lease_until, which))
        .all(db)
        .await?;
    // RETURNING comes in no particular order; ids grow with the time a row was written.
    claimed.sort_by_key(|d| d.id);
    Ok(claimed)
}

/// The ids a batch claim takes: the `limit` oldest due deliveries, locked (as
/// `store::billing::claim_due_schedules` does, for the same reasons).
fn due_batch(
    backend: DbBackend,
    now: i64,
    limit: u64,
    served: super::billing::ServedMerchants,
    left_out: LeftOut<'_>,
) -> SimpleExpr {
    let ids = due(now, served, left_out)
        .select_only()
        .column(webhook_delivery::Column::Id)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    super::one_of_the_ids(backend, webhook_delivery::Column::Id, ids)
}

fn claim_statement(backend: DbBackend, lease_until: i64, which: SimpleExpr) -> Statement {
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::LeaseUntil,
            Expr::value(lease_until),
        )
        .filter(which)
        .into_query();
    update.returning(sea_orm::sea_query::Query::returning().columns([
        webhook_delivery::Column::Id,
        webhook_delivery::Column::MerchantId,
        webhook_delivery::Column::ToMerchantUrl,
    ]));
    backend.build(&update)
}

/// Gives back deliveries this worker claimed with `lease_until` and will not send (their
/// merchant, or the `notice_url`s' share, reached the worker's cap within the batch): due again
/// for any instance from `free_from` (0: at once). A row someone else holds (its lease is not
/// this one) is left alone.
pub async fn release_deliveries(
    db: &impl ConnectionTrait,
    ids: &[i64],
    lease_until: i64,
    free_from: i64,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let res = webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(free_from))
        .filter(webhook_delivery::Column::Id.is_in(ids.to_vec()))
        .filter(webhook_delivery::Column::LeaseUntil.eq(lease_until))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Takes the lease on a due delivery: a conditional UPDATE, so across any number of instances
/// exactly one wins, and no transaction stays open during the HTTP call. Not while an older
/// delivery of its payment to its URL is pending ([`no_older_pending`]), as a batch claim.
pub async fn claim_delivery(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    lease_until: i64,
) -> Result<bool, DbErr> {
    let res = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::LeaseUntil,
            Expr::value(lease_until),
        )
        .filter(webhook_delivery::Column::Id.eq(id))
        .filter(webhook_delivery::Column::State.eq("pending"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .filter(webhook_delivery::Column::LeaseUntil.lt(now))
        .filter(no_older_pending())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The outcome of one attempt, applied only while the caller still holds the lease it took.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub state: &'static str,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
    pub now: i64,
}

/// Releases the lease and records the result. Returns false when the lease was lost (another
/// worker took the row after it expired), in which case the row is left to that worker.
pub async fn finish_attempt(
    db: &impl ConnectionTrait,
    id: i64,
    lease_until: i64,
    r: AttemptResult,
) -> Result<bool, DbErr> {
    let res = webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::State, Expr::value(r.state))
        .col_expr(webhook_delivery::Column::Attempts, Expr::value(r.attempts))
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(r.next_attempt_at),
        )
        .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(0i64))
        .col_expr(
            webhook_delivery::Column::LastHttpStatus,
            Expr::value(r.last_http_status),
        )
        .col_expr(
            webhook_delivery::Column::LastError,
            Expr::value(r.last_error),
        )
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(r.now))
        .filter(webhook_delivery::Column::Id.eq(id))
        .filter(webhook_delivery::Column::LeaseUntil.eq(lease_until))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Keeps the payment's newer pending deliveries to `url` (held back by delivery `id`,
/// [`no_older_pending`]) out of the head of the `webhook_deliveries_due` index, in the
/// transaction that records `id`'s attempt. A held-back row was never attempted, so its
/// `next_attempt_at` stayed its creation time: it sorted before every row really due, and each
/// claim walked all such rows (with the NOT EXISTS probe for each) before reaching one it could
/// take, linear in the rows held back, on SQLite's one writer (review rG, F3).
///
/// `id` left `pending` until `until` (a retry): the newer rows follow it, due at `until` at the
/// earliest. `id` finished (`delivered`/`failed`): the next one (lowest id) is due now, if it
/// was put off only by this rule (never attempted since it was written or resent); the rest stay
/// behind it, and follow it the same way.
pub async fn move_held_back(
    db: &impl ConnectionTrait,
    id: i64,
    imp_uid: &str,
    url: &str,
    until: Option<i64>,
    now: i64,
) -> Result<(), DbErr> {
    let held_back = || {
        Condition::all()
            .add(webhook_delivery::Column::ImpUid.eq(imp_uid))
            .add(webhook_delivery::Column::Url.eq(url))
            .add(webhook_delivery::Column::State.eq("pending"))
            .add(webhook_delivery::Column::Id.gt(id))
    };
    match until {
        Some(until) => {
            webhook_delivery::Entity::update_many()
                .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(until))
                .filter(held_back())
                .filter(webhook_delivery::Column::NextAttemptAt.lt(until))
                .exec(db)
                .await?;
        }
        None => {
            let next: Option<i64> = webhook_delivery::Entity::find()
                .select_only()
                .column(webhook_delivery::Column::Id)
                .filter(held_back())
                .order_by_asc(webhook_delivery::Column::Id)
                .limit(1)
                .into_tuple()
                .one(db)
                .await?;
            if let Some(next) = next {
                webhook_delivery::Entity::update_many()
                    .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
                    .filter(webhook_delivery::Column::Id.eq(next))
                    .filter(webhook_delivery::Column::Attempts.eq(0))
                    .filter(webhook_delivery::Column::NextAttemptAt.gt(now))
                    .exec(db)
                    .await?;
            }
        }
    }
    Ok(())
}

pub async fn insert_attempt(
    db: &impl ConnectionTrait,
    a: webhook_attempt::ActiveModel,
) -> Result<webhook_attempt::Model, DbErr> {
    a.insert(db).await
}

/// Makes a delivery due now with a fresh retry schedule (operator resend), unless it is in flight
/// (leased): the attempt's own result, written when its POST ends, would overwrite the resend, so
/// the resend could end `failed` or be lost while the operator was told it was queued. The lease
/// is cleared too: a worker that stalled past its lease still holds it as its token, and its late
/// result must find the token gone, not overwrite the resend.
///
/// With `retarget`, the delivery goes to that URL in that content type from now on (the caller
/// passes the merchant's current ones for a delivery to its configured URL).
///
/// Refused too while a newer delivery of the same payment to the URL it would go to is
/// `delivered` or `pending` ([`newer_sent_or_queued`]): the receiver has, or is about to get, a
/// later state of the payment, and this older event sent after it would move the merchant's
/// order back (review rG, F2). The check is part of the one conditional UPDATE, so no delivery
/// can slip in between a check and the requeue.
///
/// Except the newer `pending` ones when the row is itself `pending` and stays on its URL (its
/// retry brought forward): they are the events it holds back ([`no_older_pending`]), in every
/// snapshot, so none of them is in flight or can go before it, and making it due now only lets
/// them follow it sooner. Refused, the operator could not speed up a receiver that came back
/// while a `paid` waited up to 256 minutes for its retry with the `cancelled` queued behind it,
/// and resending that `cancelled` did nothing, as it stayed behind the `paid` (review rN, F1).
/// A newer `delivered` one still refuses (the receiver has the later state), and a row moved to
/// another URL does not hold back the rows queued there.
pub async fn requeue(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    retarget: Option<(&str, &str)>,
) -> Result<bool, DbErr> {
    let mut update = webhook_delivery::Entity::update_many();
    if let Some((url, content_type)) = retarget {
        update = update
            .col_expr(webhook_delivery::Column::Url, Expr::value(url))
            .col_expr(
                webhook_delivery::Column::ContentType,
                Expr::value(content_type),
            );
    }
    let res = update
        .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(0i64))
        .col_expr(webhook_delivery::Column::State, Expr::value("pending"))
        .col_expr(webhook_delivery::Column::Attempts, Expr::value(0i32))
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
        .filter(webhook_delivery::Column::Id.eq(id))
        .filter(webhook_delivery::Column::LeaseUntil.lt(now))
        .filter(newer_sent_or_queued(retarget.map(|(url, _)| url)).not())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A newer delivery (higher id) of the row's payment to `url` (the row's own URL when None) is
/// `delivered`, or `pending` while the row does not hold it back ([`requeue`]).
fn newer_sent_or_queued(url: Option<&str>) -> Condition {
    let newer = |state: &str| Expr::exists(of_the_same_payment(Side::Newer, url, &[state]));
    let holds_them_back = Condition::all()
        .add(webhook_delivery::Column::State.eq("pending"))
        .add_option(url.map(|url| webhook_delivery::Column::Url.eq(url)));
    Condition::any().add(newer("delivered")).add(
        Condition::all()
            .add(newer("pending"))
            .add(holds_them_back.not()),
    )
}

/// The states of a newer delivery that refuse the resend of `d` to `url` ([`requeue`]): a
/// `pending` one only when `d` does not hold it back (it is not pending on that same URL).
pub fn refusing_states(d: &webhook_delivery::Model, url: &str) -> &'static [&'static str] {
    if d.state == "pending" && d.url == url {
        &["delivered"]
    } else {
        &["delivered", "pending"]
    }
}

/// The newest delivery of `imp_uid` to `url` after delivery `id` in one of `states`
/// ([`refusing_states`]): what a refused resend names ([`requeue`]).
pub async fn newer_sent_or_queued_than(
    db: &impl ConnectionTrait,
    id: i64,
    imp_uid: &str,
    url: &str,
    states: &[&str],
) -> Result<Option<webhook_delivery::Model>, DbErr> {
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .filter(webhook_delivery::Column::Url.eq(url))
        .filter(webhook_delivery::Column::State.is_in(states.iter().copied()))
        .filter(webhook_delivery::Column::Id.gt(id))
        .order_by_desc(webhook_delivery::Column::Id)
        .one(db)
        .await
}

/// How many deliveries are in `state` (`pending`, `delivered` or `failed`), every merchant's,
/// over the `(state, next_attempt_at)` index: what `GET /admin/status` reports. Finished ones
/// count only while they are kept ([`prune_finished`]).
pub async fn count_in_state(db: &impl ConnectionTrait, state: &str) -> Result<u64, DbErr> {
    in_state(state).count(db).await
}

fn in_state(state: &str) -> sea_orm::Select<webhook_delivery::Entity> {
    webhook_delivery::Entity::find().filter(webhook_delivery::Column::State.eq(state))
}

/// Deletes up to `limit` finished deliveries (`delivered` or `failed`) whose last attempt was
/// before `before`, with their attempts; returns how many deliveries went. Pending deliveries are
/// never touched, and a delivery an operator re-queues meanwhile is `pending` again, so the second
/// statement skips it. Uses the `(state, next_attempt_at)` index: a finished delivery's
/// `next_attempt_at` is the time of its last attempt.
pub async fn prune_finished(db: &super::Writer, before: i64, limit: u64) -> Result<u64, DbErr> {
    let finished = || {
        Condition::all()
            .add(webhook_delivery::Column::State.is_in(["delivered", "failed"]))
            .add(webhook_delivery::Column::NextAttemptAt.lt(before))
    };
    let ids: Vec<i64> = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(finished())
        .order_by_asc(webhook_delivery::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let txn = db.begin().await?;
    let still_finished = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::Id.is_in(ids.clone()))
        .filter(finished())
        .into_query();
    webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::DeliveryId.in_subquery(still_finished))
        .exec(&txn)
        .await?;
    let gone = webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::Id.is_in(ids))
        .filter(finished())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(gone.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /admin/status` polls these counts: each reads the `(state, next_attempt_at)` index.
    #[tokio::test]
    async fn the_counts_by_state_read_the_index_of_the_states() {
        let db = super::super::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        for state in ["pending", "failed"] {
            let stmt = in_state(state)
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .build(DbBackend::Sqlite);
            let plan = super::super::sqlite_plan(&db, stmt).await;
            assert!(plan.contains("webhook_deliveries_due"), "{state}: {plan}");
            assert_eq!(count_in_state(&db.read, state).await.unwrap(), 0);
        }
    }

    /// The operator's history pages with `before_id`: unfiltered or by merchant, a page is a
    /// range of an index read backwards from the cursor, never a sort of every delivery.
    #[tokio::test]
    async fn a_history_page_before_an_id_is_a_range_of_an_index_without_a_sort() {
        let db = super::super::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let page = |merchant_id, imp_uid: Option<&str>| DeliveryQuery {
            imp_uid: imp_uid.map(str::to_string),
            merchant_id,
            before_id: Some(500),
            limit: 100,
            ..Default::default()
        };
        for (q, index) in [
            (page(None, None), "USING INTEGER PRIMARY KEY (rowid<?)"),
            (
                page(Some(1), None),
                "USING INDEX webhook_deliveries_by_merchant (merchant_id=? AND id<?)",
            ),
            (
                page(None, Some("imp_1")),
                "USING INDEX webhook_deliveries_by_imp_uid (imp_uid=?",
            ),
        ] {
            let plan =
                super::super::sqlite_plan(&db, history_select(&q).build(DbBackend::Sqlite)).await;
            assert!(plan.contains(index), "{q:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{q:?}: {plan}");
            assert!(deliveries(&db.read, &q).await.unwrap().is_empty());
        }
    }

    /// The look a new delivery takes at its payment's older ones ([`insert_delivery`]) is a few
    /// steps in the `imp_uid` index, in the transaction that writes the event.
    #[tokio::test]
    async fn a_new_delivery_finds_the_retry_it_waits_for_through_the_imp_uid_index() {
        let db = super::super::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let stmt = to_the_url("imp_1", "https://h/x").build(DbBackend::Sqlite);
        let plan = super::super::sqlite_plan(&db, stmt).await;
        assert!(
            plan.contains("USING INDEX webhook_deliveries_by_imp_uid"),
            "{plan}"
        );
        assert_eq!(
            older_retry_after(&db.read, "imp_1", "https://h/x", 5)
                .await
                .unwrap(),
            None
        );
    }

    /// Pins the shape that bounds a batch on PostgreSQL and skips rows another claim holds
    /// locked; the behaviour is tested against both databases in tests/api/webhooks.rs.
    #[test]
    fn a_batch_claim_selects_its_rows_once_and_skips_locked_ones_on_postgres() {
        let sql = |backend| {
            let left_out = LeftOut {
                merchants: &[7],
                notice_urls_of: &[8],
                all_notice_urls: false,
            };
            let which = due_batch(
                backend,
                5,
                4,
                super::super::billing::ServedMerchants::All,
                left_out,
            );
            claim_statement(backend, 125, which).to_string()
        };
        let due = r#""webhook_deliveries"."state" = 'pending' AND "webhook_deliveries"."next_attempt_at" <= 5 AND "webhook_deliveries"."lease_until" < 5 AND (NOT EXISTS(SELECT 1 FROM "webhook_deliveries" AS "older" WHERE "older"."imp_uid" = "webhook_deliveries"."imp_uid" AND "older"."url" = "webhook_deliveries"."url" AND "older"."state" = 'pending' AND "older"."id" < "webhook_deliveries"."id")) AND "webhook_deliveries"."merchant_id" NOT IN (7) AND ("webhook_deliveries"."to_merchant_url" = TRUE OR "webhook_deliveries"."merchant_id" NOT IN (8))"#;
        let order = r#"ORDER BY "webhook_deliveries"."next_attempt_at" ASC, "webhook_deliveries"."id" ASC LIMIT 4"#;
        assert_eq!(
            sql(DbBackend::Postgres),
            format!(
                r#"UPDATE "webhook_deliveries" SET "lease_until" = 125 WHERE "webhook_deliveries"."id" = ANY(ARRAY (SELECT "webhook_deliveries"."id" FROM "webhook_deliveries" WHERE {due} {order} FOR UPDATE SKIP LOCKED)) RETURNING "id", "merchant_id", "to_merchant_url""#
            )
        );
        assert_eq!(
            sql(DbBackend::Sqlite),
            format!(
                r#"UPDATE "webhook_deliveries" SET "lease_until" = 125 WHERE "webhook_deliveries"."id" IN (SELECT "webhook_deliveries"."id" FROM "webhook_deliveries" WHERE {due} {order} ) RETURNING "id", "merchant_id", "to_merchant_url""#
            )
        );
    }

    /// A claim reads the due rows in order through `webhook_deliveries_due`, whatever it leaves
    /// out: the merchants at their cap, the `notice_url`s of some, or every `notice_url`. Rows
    /// left out are passed over in the index, never sorted; the older events of a row's payment
    /// are looked up in `webhook_deliveries_by_imp_uid`.
    #[tokio::test]
    async fn a_claim_reads_the_due_index_in_order_whatever_it_leaves_out() {
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        for left_out in [
            LeftOut::default(),
            LeftOut {
                merchants: &[7],
                notice_urls_of: &[8, 9],
                all_notice_urls: false,
            },
            LeftOut {
                merchants: &[7],
                notice_urls_of: &[],
                all_notice_urls: true,
            },
        ] {
            let served = super::super::billing::ServedMerchants::TestOnly {
                demo_imp_key: "imp_demo",
            };
            let which = due_batch(DbBackend::Sqlite, 5, 16, served, left_out);
            let plan =
                crate::store::sqlite_plan(&db, claim_statement(DbBackend::Sqlite, 125, which))
                    .await;
            assert!(
                plan.contains("webhook_deliveries USING INDEX webhook_deliveries_due (state=? AND next_attempt_at<?)"),
                "{left_out:?}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{left_out:?}: {plan}");
            // The older events of each row's payment (`no_older_pending`): a few index steps.
            assert!(
                plan.contains("SEARCH older USING INDEX webhook_deliveries_by_imp_uid"),
                "{left_out:?}: {plan}"
            );
        }
    }
}

/// Filters of the operator's delivery history; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub imp_uid: Option<String>,
    pub merchant_id: Option<i64>,
    pub state: Option<String>,
    /// The cursor of the next page: only deliveries with a lower id (the last id of the page
    /// before). Ids only grow, so paging this way lists each delivery once even while new ones
    /// are written, which an offset would not.
    pub before_id: Option<i64>,
    pub limit: u64,
}

/// The history's statement: newest first, the cursor a range of the key the filter's index is
/// ordered by (the primary key unfiltered; `(merchant_id, id)` by merchant; by `imp_uid`, a
/// payment's few rows in its index), so a page far back is read from where it starts, not counted
/// up to (the SQLite plans are tested below). `state` alone, as before the cursor, walks the ids
/// back or reads the states' index.
fn history_select(q: &DeliveryQuery) -> sea_orm::Select<webhook_delivery::Entity> {
    let mut s = webhook_delivery::Entity::find();
    if let Some(imp) = &q.imp_uid {
        s = s.filter(webhook_delivery::Column::ImpUid.eq(imp.clone()));
    }
    if let Some(m) = q.merchant_id {
        s = s.filter(webhook_delivery::Column::MerchantId.eq(m));
    }
    if let Some(st) = &q.state {
        s = s.filter(webhook_delivery::Column::State.eq(st.clone()));
    }
    if let Some(before) = q.before_id {
        s = s.filter(webhook_delivery::Column::Id.lt(before));
    }
    s.order_by_desc(webhook_delivery::Column::Id).limit(q.limit)
}

/// Newest first, at most `q.limit`.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    q: &DeliveryQuery,
) -> Result<Vec<webhook_delivery::Model>, DbErr> {
    history_select(q).all(db).await
}

/// Attempts of the given deliveries, oldest first.
pub async fn attempts_of(
    db: &impl ConnectionTrait,
    delivery_ids: &[i64],
) -> Result<Vec<webhook_attempt::Model>, DbErr> {
    if delivery_ids.is_empty() {
        return Ok(vec![]);
    }
    webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.is_in(delivery_ids.to_vec()))
        .order_by_asc(webhook_attempt::Column::Id)
        .all(db)
        .await
}

/// A merchant's webhook setting as stored; secrets sealed.
#[derive(Debug, Clone)]
pub struct MerchantWebhookSettings {
    pub url: Option<String>,
    pub content_type: &'static str,
    pub secret_sealed: Option<String>,
    /// The secret that still signs beside `secret_sealed`, and until when (Unix seconds).
    pub previous_secret: Option<(String, i64)>,
}

pub async fn set_merchant_settings(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    s: MerchantWebhookSettings,
) -> Result<merchant::Model, DbErr> {
    let (previous_sealed, previous_until) = s.previous_secret.unzip();
    merchant::ActiveModel {
        id: Set(merchant_id),
        webhook_url: Set(s.url),
        webhook_content_type: Set(s.content_type.to_string()),
        webhook_secret_sealed: Set(s.secret_sealed),
        webhook_previous_secret_sealed: Set(previous_sealed),
        webhook_previous_secret_until: Set(previous_until),
        ..Default::default()
    }
    .update(db)
    .await
}
