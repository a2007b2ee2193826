//! `vbank_checks`: the `ready` virtual accounts the resolver asks KCP about, and when
//! (service/vbank_checks.rs). A row is moved on (or removed) only from the `check_at` it was read
//! with, so of several instances exactly one takes each look.
//!
//! Nothing removes a row when its account stops being `ready` (paid, revoked, failed): those
//! changes are made in many places, and a reversal may make a paid account `ready` again while
//! its row still waits. So the due list holds the rows of `ready` accounts only, and the sweep
//! deletes the due rows of the others in bulk ([`delete_stale`]): neither the looks nor the rows
//! left grow with the accounts issued. The reversal that makes an account `ready` again schedules
//! its look anew in the same transaction ([`reschedule`]): its row may be gone by then.
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, DeleteMany, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, Set,
};

use super::billing::ServedMerchants;
use super::entity::{payment, vbank_check};
use crate::domain::payment::PaymentStatus;

/// Schedules the first look at payment `payment_id`'s account at `at` (kept if one is scheduled).
pub async fn schedule(db: &impl ConnectionTrait, payment_id: i64, at: i64) -> Result<(), DbErr> {
    vbank_check::Entity::insert(vbank_check::ActiveModel {
        payment_id: Set(payment_id),
        check_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(vbank_check::Column::PaymentId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Schedules the next look at payment `payment_id`'s account at `at`, in place of any scheduled:
/// for an account a reversal makes `ready` again (`service::notifications`), whose row may be gone
/// (deleted by [`delete_stale`] while it was paid) or still waiting. A delete then an insert in the
/// caller's transaction, not an upsert: on PostgreSQL a [`delete_stale`] that read the account as
/// still paid and runs meanwhile deletes the row it read (the old one, which this deletes too, or
/// waits for it) but never the new one, which its statement does not see; an upsert updating the
/// row in place could be deleted by it.
pub async fn reschedule(db: &impl ConnectionTrait, payment_id: i64, at: i64) -> Result<(), DbErr> {
    vbank_check::Entity::delete_many()
        .filter(vbank_check::Column::PaymentId.eq(payment_id))
        .exec(db)
        .await?;
    schedule(db, payment_id, at).await
}

/// The looks due at `now` at accounts of the merchants `served`, earliest first, at most `limit`
/// ([`due_query`]).
pub async fn due(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    now: i64,
    limit: u64,
) -> Result<Vec<vbank_check::Model>, DbErr> {
    due_query(served, now, limit).all(db).await
}

/// The statement of [`due`]: read through index `vbank_checks_due`, each row's payment looked
/// up by its key for its status and for the merchant (`ServedMerchants::payment_served`). Rows of
/// accounts no longer `ready` are left out: taking them counted toward `limit`, so with more
/// accounts issued (and paid) a minute than the limit, the looks at the open ones fell behind
/// without bound. The other mode's looks are left out, not taken: taking one moves it on by a
/// retry's time, so every pass of an instance of the other mode pushed the look of its own
/// instances back.
pub fn due_query(served: ServedMerchants, now: i64, limit: u64) -> Select<vbank_check::Entity> {
    let mut due = vbank_check::Entity::find()
        .filter(vbank_check::Column::CheckAt.lte(now))
        .filter(payment_status().eq(PaymentStatus::Ready.as_db()));
    if let Some(served) =
        served.payment_served((vbank_check::Entity, vbank_check::Column::PaymentId))
    {
        due = due.filter(served);
    }
    due.order_by_asc(vbank_check::Column::CheckAt)
        .order_by_asc(vbank_check::Column::PaymentId)
        .limit(limit)
}

/// Deletes up to `limit` rows due at `now` whose account is no longer `ready` (of any merchant:
/// no instance of either mode looks at them), earliest first; returns how many went. Due ones
/// only, as the sweep used to delete them one by one when it reached them: an account a reversal
/// makes `ready` again before then is still looked at.
pub async fn delete_stale(db: &impl ConnectionTrait, now: i64, limit: u64) -> Result<u64, DbErr> {
    Ok(delete_stale_query(now, limit).exec(db).await?.rows_affected)
}

/// The statement of [`delete_stale`]: the rows read through index `vbank_checks_due`, each row's
/// payment looked up by its key (a scalar sub-select, as in [`due_query`]), and deleted by theirs.
/// Deleting a row another instance deletes too, or one a look moved on meanwhile (it is stale
/// either way), is harmless.
pub fn delete_stale_query(now: i64, limit: u64) -> DeleteMany<vbank_check::Entity> {
    let stale = vbank_check::Entity::find()
        .select_only()
        .column(vbank_check::Column::PaymentId)
        .filter(vbank_check::Column::CheckAt.lte(now))
        .filter(payment_status().ne(PaymentStatus::Ready.as_db()))
        .order_by_asc(vbank_check::Column::CheckAt)
        .order_by_asc(vbank_check::Column::PaymentId)
        .limit(limit)
        .into_query();
    vbank_check::Entity::delete_many().filter(vbank_check::Column::PaymentId.in_subquery(stale))
}

/// `(SELECT status FROM payments WHERE payments.id = vbank_checks.payment_id)`: the status of the
/// row's payment, which always exists (a foreign key).
fn payment_status() -> Expr {
    let status = payment::Entity::find()
        .select_only()
        .column(payment::Column::Status)
        .filter(
            Expr::col((payment::Entity, payment::Column::Id))
                .equals((vbank_check::Entity, vbank_check::Column::PaymentId)),
        )
        .into_query();
    Expr::expr(SimpleExpr::SubQuery(
        None,
        Box::new(status.into_sub_query_statement()),
    ))
}

/// Takes the look `read` for this holder: moves it to `next` (None: no more looks, the row goes),
/// only if nobody moved it since it was read. True when this holder took it.
pub async fn take(
    db: &impl ConnectionTrait,
    read: &vbank_check::Model,
    next: Option<i64>,
) -> Result<bool, DbErr> {
    let this = vbank_check::Column::PaymentId
        .eq(read.payment_id)
        .and(vbank_check::Column::CheckAt.eq(read.check_at));
    let rows = match next {
        Some(at) => {
            vbank_check::Entity::update_many()
                .col_expr(vbank_check::Column::CheckAt, Expr::value(at))
                .filter(this)
                .exec(db)
                .await?
                .rows_affected
        }
        None => {
            vbank_check::Entity::delete_many()
                .filter(this)
                .exec(db)
                .await?
                .rows_affected
        }
    };
    Ok(rows == 1)
}
