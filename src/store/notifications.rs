//! KCP common notifications (`kcp_notifications`): one row per `noti_id`, as first received, with
//! what verifying it found.
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::entity::kcp_notification;
use super::is_unique_violation;

/// What [`record`] found.
#[derive(Debug)]
pub enum Recorded {
    /// The first time this `noti_id` arrives.
    New(kcp_notification::Model),
    /// A re-send, or another notification reusing the `noti_id`: the row as first recorded.
    Existing(kcp_notification::Model),
}

/// Inserts the notification, or returns the row already holding its `noti_id` (unique).
pub async fn record(
    db: &impl ConnectionTrait,
    row: kcp_notification::ActiveModel,
) -> Result<Recorded, DbErr> {
    let noti_id = row.noti_id.clone().take().unwrap_or_default();
    match row.insert(db).await {
        Ok(m) => Ok(Recorded::New(m)),
        Err(e) if is_unique_violation(&e) => kcp_notification::Entity::find()
            .filter(kcp_notification::Column::NotiId.eq(noti_id))
            .one(db)
            .await?
            .map(Recorded::Existing)
            .ok_or(e),
        Err(e) => Err(e),
    }
}

/// Records what verifying notification `id` found.
pub async fn set_outcome(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: &str,
    now: i64,
) -> Result<(), DbErr> {
    kcp_notification::Entity::update_many()
        .col_expr(kcp_notification::Column::Outcome, Expr::value(outcome))
        .col_expr(kcp_notification::Column::VerifiedAt, Expr::value(now))
        .filter(kcp_notification::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
