//! `vbank_checks`: the `ready` virtual accounts the resolver asks KCP about, and when
//! (service/vbank_checks.rs). A row is moved on (or removed) only from the `check_at` it was read
//! with, so of several instances exactly one takes each look.
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::vbank_check;

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

/// The looks due at `now`, earliest first, at most `limit` (index `vbank_checks_due`).
pub async fn due(
    db: &impl ConnectionTrait,
    now: i64,
    limit: u64,
) -> Result<Vec<vbank_check::Model>, DbErr> {
    vbank_check::Entity::find()
        .filter(vbank_check::Column::CheckAt.lte(now))
        .order_by_asc(vbank_check::Column::CheckAt)
        .limit(limit)
        .all(db)
        .await
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
