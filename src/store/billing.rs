//! Billing keys and schedules.
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::{billing_key, schedule};

pub async fn active_key(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
) -> Result<Option<billing_key::Model>, DbErr> {
    billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.eq(customer_uid))
        .filter(billing_key::Column::Status.eq("active"))
        .one(db)
        .await
}

pub async fn active_keys(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uids: &[String],
) -> Result<Vec<billing_key::Model>, DbErr> {
    billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.is_in(customer_uids.to_vec()))
        .filter(billing_key::Column::Status.eq("active"))
        .all(db)
        .await
}

pub async fn insert_key(
    db: &impl ConnectionTrait,
    k: billing_key::ActiveModel,
) -> Result<billing_key::Model, DbErr> {
    k.insert(db).await
}

/// Marks an active key `replaced` or `deleted`; false when it was not active any more.
pub async fn retire_key(
    db: &impl ConnectionTrait,
    id: i64,
    status: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let res = billing_key::Entity::update_many()
        .col_expr(billing_key::Column::Status, Expr::value(status))
        .col_expr(billing_key::Column::UpdatedAt, Expr::value(now))
        .col_expr(billing_key::Column::DeletedAt, Expr::value(now))
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.eq("active"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn insert_schedule(
    db: &impl ConnectionTrait,
    s: schedule::ActiveModel,
) -> Result<schedule::Model, DbErr> {
    s.insert(db).await
}

pub async fn schedule_by_uid(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    merchant_uid: &str,
) -> Result<Option<schedule::Model>, DbErr> {
    schedule::Entity::find()
        .filter(schedule::Column::MerchantId.eq(merchant_id))
        .filter(schedule::Column::MerchantUid.eq(merchant_uid))
        .one(db)
        .await
}

pub async fn schedule_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<schedule::Model>, DbErr> {
    schedule::Entity::find_by_id(id).one(db).await
}

/// Pending (`scheduled`) schedules of a customer, optionally only the given merchant_uids.
pub async fn pending_schedules(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
    merchant_uids: Option<&[String]>,
) -> Result<Vec<schedule::Model>, DbErr> {
    let mut q = schedule::Entity::find()
        .filter(schedule::Column::MerchantId.eq(merchant_id))
        .filter(schedule::Column::CustomerUid.eq(customer_uid))
        .filter(schedule::Column::Status.eq("scheduled"));
    if let Some(uids) = merchant_uids {
        q = q.filter(schedule::Column::MerchantUid.is_in(uids.to_vec()));
    }
    q.order_by_asc(schedule::Column::ScheduleAt).all(db).await
}

/// Revokes a schedule that is still pending; false when it already ran or is running.
pub async fn revoke_schedule(db: &impl ConnectionTrait, id: i64, now: i64) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("revoked"))
        .col_expr(schedule::Column::RevokedAt, Expr::value(now))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(schedule::Column::Status.eq("scheduled"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Moves a pending schedule to another time.
pub async fn reschedule(
    db: &impl ConnectionTrait,
    id: i64,
    at: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::ScheduleAt, Expr::value(at))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(schedule::Column::Status.eq("scheduled"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Due at `now`: pending and time has come, or running on an instance whose lease ran out.
fn due(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(schedule::Column::Status.eq("scheduled"))
                .add(schedule::Column::ScheduleAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(schedule::Column::Status.eq("executing"))
                .add(schedule::Column::LeaseUntil.lt(now)),
        )
}

/// Schedules due now: pending ones whose time has come, and running ones whose instance's lease
/// ran out (it died mid-charge).
pub async fn due_schedules(
    db: &impl ConnectionTrait,
    now: i64,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    schedule::Entity::find()
        .select_only()
        .column(schedule::Column::Id)
        .filter(due(now))
        .order_by_asc(schedule::Column::ScheduleAt)
        .limit(limit)
        .into_tuple::<i64>()
        .all(db)
        .await
}

/// Claims a due schedule for this instance: a conditional UPDATE, so exactly one instance wins.
pub async fn claim_schedule(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    lease_until: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("executing"))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(lease_until))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(due(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Records a schedule's result.
pub async fn finish_schedule(
    db: &impl ConnectionTrait,
    id: i64,
    imp_uid: Option<&str>,
    payment_status: &str,
    fail_reason: Option<String>,
    now: i64,
) -> Result<(), DbErr> {
    schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("executed"))
        .col_expr(schedule::Column::ImpUid, Expr::value(imp_uid))
        .col_expr(schedule::Column::PaymentStatus, Expr::value(payment_status))
        .col_expr(schedule::Column::FailReason, Expr::value(fail_reason))
        .col_expr(schedule::Column::ExecutedAt, Expr::value(now))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives a claimed schedule back (its outcome is still open): another run picks it up later.
pub async fn release_schedule(
    db: &impl ConnectionTrait,
    id: i64,
    retry_at: i64,
) -> Result<(), DbErr> {
    schedule::Entity::update_many()
        .col_expr(schedule::Column::LeaseUntil, Expr::value(retry_at))
        .filter(schedule::Column::Id.eq(id))
        .filter(schedule::Column::Status.eq("executing"))
        .exec(db)
        .await?;
    Ok(())
}

/// Filters of schedule lists.
#[derive(Debug, Clone, Default)]
pub struct ScheduleQuery {
    pub merchant_id: i64,
    pub customer_uid: Option<String>,
    /// `from ≤ schedule_at < to`.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// iamport words: scheduled / executed / revoked (executing counts as scheduled).
    pub status: Option<String>,
}

fn schedules_filtered(q: &ScheduleQuery) -> sea_orm::Select<schedule::Entity> {
    let mut s = schedule::Entity::find().filter(schedule::Column::MerchantId.eq(q.merchant_id));
    if let Some(c) = &q.customer_uid {
        s = s.filter(schedule::Column::CustomerUid.eq(c.clone()));
    }
    if let Some(f) = q.from {
        s = s.filter(schedule::Column::ScheduleAt.gte(f));
    }
    if let Some(t) = q.to {
        s = s.filter(schedule::Column::ScheduleAt.lt(t));
    }
    match q.status.as_deref() {
        Some("scheduled") => {
            s = s.filter(schedule::Column::Status.is_in(["scheduled", "executing"]))
        }
        Some(other) => s = s.filter(schedule::Column::Status.eq(other)),
        None => {}
    }
    s
}

pub async fn schedules_page(
    db: &impl ConnectionTrait,
    q: &ScheduleQuery,
    page: u64,
    limit: u64,
    desc: bool,
) -> Result<(u64, Vec<schedule::Model>), DbErr> {
    let total = schedules_filtered(q).count(db).await?;
    let s = schedules_filtered(q);
    let s = if desc {
        s.order_by_desc(schedule::Column::ScheduleAt)
            .order_by_desc(schedule::Column::Id)
    } else {
        s.order_by_asc(schedule::Column::ScheduleAt)
            .order_by_asc(schedule::Column::Id)
    };
    let list = s
        .offset(page.saturating_sub(1) * limit)
        .limit(limit)
        .all(db)
        .await?;
    Ok((total, list))
}

pub async fn count_schedules_by_status(
    db: &impl ConnectionTrait,
    status: &str,
) -> Result<u64, DbErr> {
    schedule::Entity::find()
        .filter(schedule::Column::Status.eq(status))
        .count(db)
        .await
}

/// Puts an executed-but-failed schedule back in the queue at `at`.
pub async fn rearm_schedule(
    db: &impl ConnectionTrait,
    id: i64,
    at: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("scheduled"))
        .col_expr(schedule::Column::ScheduleAt, Expr::value(at))
        .col_expr(
            schedule::Column::ImpUid,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::PaymentStatus,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::FailReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::ExecutedAt,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(schedule::Column::LeaseUntil, Expr::value(0))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(schedule::Column::Status.eq("executed"))
        .filter(schedule::Column::PaymentStatus.eq("failed"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}
