//! Merchants and their access tokens.
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use super::entity::{access_token, merchant};

pub async fn insert(
    db: &impl ConnectionTrait,
    m: merchant::ActiveModel,
) -> Result<merchant::Model, DbErr> {
    m.insert(db).await
}

pub async fn by_imp_key(
    db: &impl ConnectionTrait,
    imp_key: &str,
) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .filter(merchant::Column::ImpKey.eq(imp_key))
        .one(db)
        .await
}

pub async fn by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find_by_id(id).one(db).await
}

/// The PostgreSQL notification channel on which an instance announces that it changed a
/// merchant's row (payload: the merchant id), so the others drop their cached copy
/// (`jobs::merchant_changes`).
pub const CHANGED_CHANNEL: &str = "openport_merchant_changed";

/// Tells the other instances on this PostgreSQL database that merchant `id` changed; nothing on
/// SQLite, whose database one instance serves. Delivered once the change is committed (call it
/// after), to the instances listening then.
pub async fn announce_change(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    db.execute(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANGED_CHANNEL.into(), id.to_string().into()],
    ))
    .await?;
    Ok(())
}

pub async fn by_imp_code(
    db: &impl ConnectionTrait,
    code: &str,
) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .filter(merchant::Column::ImpCode.eq(code))
        .one(db)
        .await
}

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .order_by_asc(merchant::Column::Id)
        .all(db)
        .await
}

/// The merchants of KCP site `site_cd` (usually one; several may share a site, on one KCP or on
/// several), oldest first. The table holds a handful of rows: no index is needed.
pub async fn by_site_cd(
    db: &impl ConnectionTrait,
    site_cd: &str,
) -> Result<Vec<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .filter(merchant::Column::SiteCd.eq(site_cd))
        .order_by_asc(merchant::Column::Id)
        .all(db)
        .await
}

/// The merchant's newest token that is still valid at `now`, if any.
pub async fn live_token(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    now: i64,
) -> Result<Option<access_token::Model>, DbErr> {
    access_token::Entity::find()
        .filter(access_token::Column::MerchantId.eq(merchant_id))
        .filter(access_token::Column::ExpiresAt.gt(now))
        .order_by_desc(access_token::Column::ExpiresAt)
        .one(db)
        .await
}

/// The token whose digest is `token_sha256`.
pub async fn token(
    db: &impl ConnectionTrait,
    token_sha256: &str,
) -> Result<Option<access_token::Model>, DbErr> {
    access_token::Entity::find_by_id(token_sha256.to_string())
        .one(db)
        .await
}

/// A token as it is stored: found by its digest, kept sealed.
pub struct StoredToken {
    pub sha256: String,
    pub sealed: String,
}

/// Puts a new token into the merchant's live slot, unless the slot holds a token that is still
/// valid at `now`: one statement (an upsert on the unique `live_slot`), atomic on SQLite and on
/// PostgreSQL, so of concurrent callers, on any number of instances, exactly one fills a free or
/// expired slot. True when `token` is now the merchant's; else [`slot_token`] reads the holder.
/// The expired token it replaces is deleted with it: nothing accepts it any more.
pub async fn claim_token_slot(
    db: &impl ConnectionTrait,
    token: StoredToken,
    merchant_id: i64,
    now: i64,
    expires_at: i64,
) -> Result<bool, DbErr> {
    let inserted = access_token::Entity::insert(access_token::ActiveModel {
        token_sha256: Set(token.sha256),
        token_sealed: Set(token.sealed),
        merchant_id: Set(merchant_id),
        created_at: Set(now),
        expires_at: Set(expires_at),
        live_slot: Set(Some(merchant_id)),
    })
    .on_conflict(
        OnConflict::column(access_token::Column::LiveSlot)
            .update_columns([
                access_token::Column::TokenSha256,
                access_token::Column::TokenSealed,
                access_token::Column::CreatedAt,
                access_token::Column::ExpiresAt,
            ])
            .action_and_where(
                Expr::col((access_token::Entity, access_token::Column::ExpiresAt)).lte(now),
            )
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted == 1)
}

/// The token in the merchant's live slot (valid or not).
pub async fn slot_token(
    db: &impl ConnectionTrait,
    merchant_id: i64,
) -> Result<Option<access_token::Model>, DbErr> {
    access_token::Entity::find()
        .filter(access_token::Column::LiveSlot.eq(merchant_id))
        .one(db)
        .await
}

/// Takes the token out of its merchant's live slot (it stays valid until it expires), so that
/// [`claim_token_slot`] can put another one there: for a token getToken cannot hand out again.
pub async fn leave_slot(db: &impl ConnectionTrait, token_sha256: &str) -> Result<(), DbErr> {
    access_token::Entity::update_many()
        .col_expr(
            access_token::Column::LiveSlot,
            sea_orm::sea_query::Expr::value(Option::<i64>::None),
        )
        .filter(access_token::Column::TokenSha256.eq(token_sha256))
        .exec(db)
        .await?;
    Ok(())
}

/// Moves the expiry of token `token_sha256` from `from` to `to`, only if it still expires at
/// `from` and is valid at `now`: false when another instance extended it or replaced it meanwhile.
pub async fn extend_token(
    db: &impl ConnectionTrait,
    token_sha256: &str,
    from: i64,
    now: i64,
    to: i64,
) -> Result<bool, DbErr> {
    let res = access_token::Entity::update_many()
        .col_expr(
            access_token::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(to),
        )
        .filter(access_token::Column::TokenSha256.eq(token_sha256))
        .filter(access_token::Column::ExpiresAt.eq(from))
        .filter(access_token::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Deletes the token `token_sha256` (one handed out to a secret revoked meanwhile).
pub async fn delete_token(db: &impl ConnectionTrait, token_sha256: &str) -> Result<(), DbErr> {
    access_token::Entity::delete_many()
        .filter(access_token::Column::TokenSha256.eq(token_sha256))
        .exec(db)
        .await?;
    Ok(())
}

/// Expired tokens are useless; deleting them keeps the table small.
pub async fn delete_expired_tokens(db: &impl ConnectionTrait, now: i64) -> Result<u64, DbErr> {
    let res = access_token::Entity::delete_many()
        .filter(access_token::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Revokes every token of the merchant, valid or not.
pub async fn delete_tokens_of(db: &impl ConnectionTrait, merchant_id: i64) -> Result<u64, DbErr> {
    let res = access_token::Entity::delete_many()
        .filter(access_token::Column::MerchantId.eq(merchant_id))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

pub async fn set_secret_hash(db: &impl ConnectionTrait, id: i64, hash: &str) -> Result<(), DbErr> {
    merchant::Entity::update_many()
        .col_expr(
            merchant::Column::ImpSecretHash,
            sea_orm::sea_query::Expr::value(hash),
        )
        .filter(merchant::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces the merchant's secret hash `from` by `to` (the same secret under the current master
/// key), only if it is still `from`: false when the secret was changed meanwhile.
pub async fn rehash_secret(
    db: &impl ConnectionTrait,
    id: i64,
    from: &str,
    to: &str,
) -> Result<bool, DbErr> {
    let res = merchant::Entity::update_many()
        .col_expr(
            merchant::Column::ImpSecretHash,
            sea_orm::sea_query::Expr::value(to),
        )
        .filter(merchant::Column::Id.eq(id))
        .filter(merchant::Column::ImpSecretHash.eq(from))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Sets the KCP batch group id of the merchant `imp_code`; the number of rows changed (0: no such
/// merchant).
pub async fn set_kcp_group_id(
    db: &impl ConnectionTrait,
    imp_code: &str,
    group_id: &str,
) -> Result<u64, DbErr> {
    let res = merchant::Entity::update_many()
        .col_expr(merchant::Column::KcpGroupId, Expr::value(group_id))
        .filter(merchant::Column::ImpCode.eq(imp_code))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Replaces merchant `id`'s KCP certificate, sealed private key and sealed passphrase in one
/// statement, so no reader ever sees a certificate with another pair's key; the number of rows
/// changed (0: no such merchant).
pub async fn set_kcp_credentials(
    db: &impl ConnectionTrait,
    id: i64,
    certificate_pem: &str,
    private_key_sealed: &str,
    passphrase_sealed: &str,
) -> Result<u64, DbErr> {
    let res = merchant::Entity::update_many()
        .col_expr(
            merchant::Column::KcpCertificatePem,
            Expr::value(certificate_pem),
        )
        .col_expr(
            merchant::Column::KcpPrivateKeySealed,
            Expr::value(private_key_sealed),
        )
        .col_expr(
            merchant::Column::KcpPassphraseSealed,
            Expr::value(passphrase_sealed),
        )
        .filter(merchant::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Sets merchant `id`'s redirect allow-list column (domain/redirect_origins.rs; None: no list);
/// the number of rows changed (0: no such merchant).
pub async fn set_redirect_origins(
    db: &impl ConnectionTrait,
    id: i64,
    origins: Option<String>,
) -> Result<u64, DbErr> {
    let res = merchant::Entity::update_many()
        .col_expr(merchant::Column::RedirectOrigins, Expr::value(origins))
        .filter(merchant::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
