//! `vbank_checks`: the `ready` virtual accounts the resolver asks KCP about, and when
//! (service/vbank_checks.rs). A row is moved on (or removed) only from the `check_at` it was read
//! with, so of several instances exactly one takes each look.
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    Set,
};

use super::billing::ServedMerchants;
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
/// up by its key for the merchant (`ServedMerchants::payment_served`). The other mode's
/// looks are left out, not taken: taking one moves it on by a retry's time, so every pass of an
/// instance of the other mode pushed the look of its own instances back.
pub fn due_query(served: ServedMerchants, now: i64, limit: u64) -> Select<vbank_check::Entity> {
    let mut due = vbank_check::Entity::find().filter(vbank_check::Column::CheckAt.lte(now));
    if let Some(served) =
        served.payment_served((vbank_check::Entity, vbank_check::Column::PaymentId))
    {
        due = due.filter(served);
    }
    due.order_by_asc(vbank_check::Column::CheckAt).limit(limit)
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
