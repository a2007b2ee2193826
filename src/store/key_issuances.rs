//! Billing-key issuances recorded before KCP is called (migration 000033,
//! service/key_issuances.rs).
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::key_issuance;

/// The open states of an issuance: the outcome is not known to openport.
pub const OPEN_STATES: [&str; 2] = ["pending", "unknown"];

/// [`OPEN_STATES`] written out rather than bound, so that a condition implies the predicate of the
/// partial index `key_issuances_open` in PostgreSQL's generic plans and SQLite's.
const OPEN: &str = r#""key_issuances"."state" IN ('pending', 'unknown')"#;

/// Records an issuance of `kind` for `customer_uid` at merchant `merchant_id`, about to be asked
/// of KCP under `order_no`: `pending`, at `now`.
pub async fn insert(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
    kind: &str,
    order_no: &str,
    now: i64,
) -> Result<key_issuance::Model, DbErr> {
    key_issuance::ActiveModel {
        merchant_id: Set(merchant_id),
        customer_uid: Set(customer_uid.to_string()),
        kind: Set(kind.to_string()),
        order_no: Set(order_no.to_string()),
        state: Set("pending".into()),
        note: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Moves open issuance `id` to `state` with `note`: false when it is not open any more (another
/// write, an operator's, decided it), and then nothing is written.
pub async fn record(
    db: &impl ConnectionTrait,
    id: i64,
    state: &str,
    note: Option<&str>,
    now: i64,
) -> Result<bool, DbErr> {
    let note: Option<String> = note.map(|n| n.chars().take(300).collect());
    let res = key_issuance::Entity::update_many()
        .col_expr(key_issuance::Column::State, Expr::value(state))
        .col_expr(key_issuance::Column::Note, Expr::value(note))
        .col_expr(key_issuance::Column::UpdatedAt, Expr::value(now))
        .filter(key_issuance::Column::Id.eq(id))
        .filter(Expr::cust(OPEN))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The open issuances, oldest first (at most `limit`): what an operator looks up in KCP's admin.
pub async fn open(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<key_issuance::Model>, DbErr> {
    key_issuance::Entity::find()
        .filter(Expr::cust(OPEN))
        .order_by_asc(key_issuance::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The open issuance asked under `order_no`, if one is.
pub async fn open_by_order_no(
    db: &impl ConnectionTrait,
    order_no: &str,
) -> Result<Option<key_issuance::Model>, DbErr> {
    key_issuance::Entity::find()
        .filter(Expr::cust(OPEN))
        .filter(key_issuance::Column::OrderNo.eq(order_no))
        .one(db)
        .await
}

/// How many issuances are open and when the oldest was recorded (Unix seconds; None when none
/// is), in one statement over `key_issuances_open`: what `GET /admin/status` reports.
pub async fn open_summary(db: &impl ConnectionTrait) -> Result<(u64, Option<i64>), DbErr> {
    // Read by name: a SQLite row comes back with its columns in name order, not the SELECT's.
    #[derive(FromQueryResult)]
    struct Summary {
        open_count: i64,
        oldest_created_at: Option<i64>,
    }
    let row = key_issuance::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "open_count")
        .column_as(key_issuance::Column::CreatedAt.min(), "oldest_created_at")
        .filter(Expr::cust(OPEN))
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
