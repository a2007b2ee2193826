//! Which master keys the stored secrets were made with, for the start-up check
//! (service/key_check.rs). A sealed value names its key (`v2:<key id>:…`, service/secrets.rs) at
//! a fixed place, so the database answers with one grouped scan instead of every row.
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Select};

use super::entity::billing_key;
use crate::service::secrets::KEY_ID_CHARS;

/// Billing keys (KCP batch keys) per key id of their sealed value; with `live_only`, only those
/// of live merchants (`sandbox = false`). v1 values (no key id) are left out: see
/// [`a_v1_billing_key`].
pub async fn billing_keys_by_key_id(
    db: &impl ConnectionTrait,
    live_only: bool,
) -> Result<Vec<(String, i64)>, DbErr> {
    // `v2:` is three characters: the id starts at the fourth (SQL counts from 1).
    let key_id = Expr::cust(format!("substr(batch_key_sealed, 4, {KEY_ID_CHARS})"));
    billing_keys(live_only)
        .select_only()
        .column_as(key_id.clone(), "key_id")
        .column_as(billing_key::Column::Id.count(), "rows")
        .filter(billing_key::Column::BatchKeySealed.starts_with("v2:"))
        .group_by(key_id)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await
}

/// One billing key sealed in the v1 form (no key id), if any: such values are opened by trying
/// every configured key, so one stands for them all.
pub async fn a_v1_billing_key(
    db: &impl ConnectionTrait,
    live_only: bool,
) -> Result<Option<String>, DbErr> {
    billing_keys(live_only)
        .select_only()
        .column(billing_key::Column::BatchKeySealed)
        .filter(billing_key::Column::BatchKeySealed.starts_with("v1:"))
        .limit(1)
        .into_tuple::<String>()
        .one(db)
        .await
}

/// Every billing key, or with `live_only` those of live merchants (`sandbox = false`).
fn billing_keys(live_only: bool) -> Select<billing_key::Entity> {
    let all = billing_key::Entity::find();
    if live_only {
        all.filter(billing_key::Column::Sandbox.eq(false))
    } else {
        all
    }
}
