//! `POST /users/getToken` and token checks (spec/iamport-v1.md §1).
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::merchants::serves_in_mode;
use super::secrets::{token_digest, SecretCheck};
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::ids::random_hex;
use crate::store::entity::{access_token, merchant};
use crate::store::merchants;

/// A token lives 30 minutes.
pub const TOKEN_TTL_SECS: i64 = 30 * 60;
/// Asked for again in its last minute, a token is extended by 5 minutes.
const EXTEND_WINDOW_SECS: i64 = 60;
const EXTEND_BY_SECS: i64 = 5 * 60;

#[derive(Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub now: i64,
    pub expired_at: i64,
}

/// The token is a bearer credential: `Debug` (a `?token` in a log line) never shows it.
impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("now", &self.now)
            .field("expired_at", &self.expired_at)
            .finish()
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    Merchant(Arc<merchant::Model>),
    /// The operator (admin token from config): may read every merchant's data.
    Admin,
}

/// How long a cached merchant row is used before it is read again. The row holds the merchant's
/// KCP settings; an operator's change made on another instance (or with the CLI) reaches every
/// instance within this time instead of only at its next restart.
const MERCHANT_TTL: Duration = Duration::from_secs(60);

/// In-process cache of token → (merchant, expiry) and of merchant rows, so an authenticated
/// lookup costs no extra database round trip. The database stays the truth: a miss (or an entry
/// past its cached expiry) reads it, so tokens issued by another instance work everywhere. A
/// merchant row is read again once it is [`MERCHANT_TTL`] old, and so is a token: a token deleted
/// from the database (`openport merchant new-secret` revokes the merchant's tokens) is refused by
/// every instance within that time, not only once it expires.
#[derive(Default)]
pub struct TokenCache {
    tokens: RwLock<HashMap<String, CachedToken>>,
    merchants: RwLock<HashMap<i64, (Arc<merchant::Model>, Instant)>>,
    /// Counts [`Self::forget_merchant`]s: a merchant row or token read from the database before
    /// one is not cached after it (it may be the version the change replaced, or a token the
    /// change deleted).
    forgotten: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Copy)]
struct CachedToken {
    merchant_id: i64,
    expires_at: i64,
    read_at: Instant,
}

impl TokenCache {
    /// The merchant of a cached token valid at `now` (Unix seconds) and read from the database
    /// less than [`MERCHANT_TTL`] before `at`.
    fn get(&self, token: &str, now: i64, at: Instant) -> Option<i64> {
        let map = self.tokens.read().ok()?;
        map.get(token)
            .filter(|t| t.expires_at > now)
            .filter(|t| at.saturating_duration_since(t.read_at) < MERCHANT_TTL)
            .map(|t| t.merchant_id)
    }
    /// Caches a token read from the database (or handed out by getToken), unless a merchant was
    /// forgotten since `forgotten` (read before the read began): `merchant new-secret` may have
    /// deleted it meanwhile, and its announcement, already processed, dropped only the tokens
    /// cached before it. Checked under the tokens' lock, which [`Self::forget_merchant`] takes
    /// only after counting: a put that sees the old count is cleared by it.
    fn put_read(
        &self,
        token: &str,
        merchant_id: i64,
        expires_at: i64,
        now: i64,
        at: Instant,
        forgotten: u64,
    ) {
        if let Ok(mut map) = self.tokens.write() {
            if self.forgotten() != forgotten {
                return;
            }
            if map.len() > 100_000 {
                map.retain(|_, t| t.expires_at > now);
            }
            map.insert(
                token.to_string(),
                CachedToken {
                    merchant_id,
                    expires_at,
                    read_at: at,
                },
            );
        }
    }
    fn merchant(&self, id: i64, now: Instant) -> Option<Arc<merchant::Model>> {
        let map = self.merchants.read().ok()?;
        map.get(&id)
            .filter(|(_, read_at)| now.saturating_duration_since(*read_at) < MERCHANT_TTL)
            .map(|(m, _)| m.clone())
    }
    fn put_merchant(&self, m: Arc<merchant::Model>, now: Instant) {
        if let Ok(mut map) = self.merchants.write() {
            map.insert(m.id, (m, now));
        }
    }
    fn forgotten(&self) -> u64 {
        self.forgotten.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Caches a row read from the database, unless a row was forgotten since `forgotten` (read
    /// before the read began): the read may have raced the change that made it forgotten.
    fn put_merchant_read(&self, m: Arc<merchant::Model>, now: Instant, forgotten: u64) {
        if let Ok(mut map) = self.merchants.write() {
            if self.forgotten() == forgotten {
                map.insert(m.id, (m, now));
            }
        }
    }
    /// Drops merchant `id`'s cached row (every merchant's with None), so the next use reads it.
    /// Its cached tokens go too: a change may be a new imp_secret, which revokes the tokens got
    /// with the old one (`merchants::new_imp_secret`), and a token read again is checked against
    /// the database.
    ///
    /// The count goes up first, before either map is cleared: a `put_*_read` checks it under its
    /// map's lock, so it either sees the new count and keeps nothing, or inserts before the clear
    /// below, which then drops what it inserted.
    pub fn forget_merchant(&self, id: Option<i64>) {
        self.forgotten
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut map) = self.merchants.write() {
            match id {
                Some(id) => {
                    map.remove(&id);
                }
                None => map.clear(),
            }
        }
        if let Ok(mut tokens) = self.tokens.write() {
            match id {
                Some(id) => tokens.retain(|_, t| t.merchant_id != id),
                None => tokens.clear(),
            }
        }
    }
}

impl Gateway {
    pub async fn get_token(&self, imp_key: &str, imp_secret: &str) -> ServiceResult<IssuedToken> {
        let merchant = match merchants::by_imp_key(&self.db.read, imp_key).await? {
            // iamport appears to match imp_keys without regard to case (inferred: the npm
            // clients `iamport` and `iamporter` default to `imp_apiKey` with iamport's public
            // test secret, which is openport's demo merchant, `imp_apikey`). A key no merchant
            // has as written is read again in lower case (openport's own keys are digits, the
            // demo's lower case); an imported key in mixed case still matches as written first.
            // The secret is checked to the letter either way.
            None if imp_key.bytes().any(|b| b.is_ascii_uppercase()) => {
                merchants::by_imp_key(&self.db.read, &imp_key.to_ascii_lowercase()).await?
            }
            found => found,
        };
        // Hash even when the key is unknown, so timing does not tell which keys exist.
        let check = match &merchant {
            Some(m) => self.secrets.check_secret(imp_secret, &m.imp_secret_hash),
            None => {
                let _ = self.secrets.secret_hash(imp_secret);
                SecretCheck::Mismatch
            }
        };
        let Some(merchant) = merchant.filter(|_| check != SecretCheck::Mismatch) else {
            return Err(ServiceError::Unauthorized);
        };
        if !serves_in_mode(self.settings.test_mode, &merchant) {
            tracing::warn!(
                imp_code = %merchant.imp_code,
                "getToken refused: a merchant made in test mode gets no token outside test mode (docs/operations.md \"From test mode to live\")"
            );
            return Err(ServiceError::Unauthorized);
        }
        // The hash the secret was checked against, as it must still stand once a token is in
        // hand (below).
        let verified_hash = match check {
            SecretCheck::MatchRehash(hash) => {
                // The master key was rotated: store the hash under the current key, unless the
                // secret was changed meanwhile (`merchant new-secret`), which this must not undo.
                // Once per merchant: the hash stored is `Match` from then on, here and on every
                // instance still on the previous key, which leaves a hash under the incoming key
                // as it is (`MasterKey::upgrading_hashes_only_from`).
                if merchants::rehash_secret(
                    &self.db.write,
                    merchant.id,
                    &merchant.imp_secret_hash,
                    &hash,
                )
                .await?
                {
                    hash
                } else {
                    // The row no longer holds the hash read. Another getToken may have stored
                    // the same hash first, or, while a rotation is rolled out, an instance on the
                    // other key upgraded it to its own (from a key older than both, or a hash
                    // naming none: docs/operations.md "Rotating the master key": both keys are
                    // configured everywhere, so either hash verifies here). Whatever it holds
                    // must verify this secret; a new secret does not.
                    match merchants::by_id(&self.db.write, merchant.id).await? {
                        Some(m)
                            if self.secrets.check_secret(imp_secret, &m.imp_secret_hash)
                                != SecretCheck::Mismatch =>
                        {
                            m.imp_secret_hash
                        }
                        _ => return Err(ServiceError::Unauthorized),
                    }
                }
            }
            _ => merchant.imp_secret_hash.clone(),
        };
        let now = self.clock.unix();
        // Taken before the token is read: see `TokenCache::put_read`.
        let forgotten = self.tokens.forgotten();
        let (issued, claimed) = self.token_of(merchant.id, now).await?;
        // `merchant new-secret` changes the hash and deletes the merchant's tokens in one
        // transaction; a token claimed after that deletion, with the old secret checked before
        // it, would outlive the revocation. So the secret is checked again, on the writer, once a
        // token is in hand: still the merchant's (whatever hash it is stored under now: another
        // instance may have rehashed it) → handed out. Otherwise 401, and the token is deleted
        // only if this call claimed it: one it found in the slot is the merchant's one token,
        // which a caller with the new secret may hold (new-secret deleted the old ones).
        let current = merchants::by_id(&self.db.write, merchant.id).await?;
        let still = current.is_some_and(|m| {
            m.imp_secret_hash == verified_hash
                || self.secrets.check_secret(imp_secret, &m.imp_secret_hash)
                    != SecretCheck::Mismatch
        });
        if !still {
            if claimed {
                merchants::delete_token(&self.db.write, &token_digest(&issued.access_token))
                    .await?;
            }
            return Err(ServiceError::Unauthorized);
        }
        // Every token handed out is cached for `authenticate`, unless the merchant was forgotten
        // meanwhile (its tokens may have been revoked after `token_of` read this one).
        self.tokens.put_read(
            &issued.access_token,
            merchant.id,
            issued.expired_at,
            now,
            Instant::now(),
            forgotten,
        );
        Ok(issued)
    }

    /// The merchant's live token, extended in its last minute, or a new one in its slot; true
    /// when this call claimed it (a new token), false when it found it.
    async fn token_of(&self, merchant_id: i64, now: i64) -> ServiceResult<(IssuedToken, bool)> {
        let hand_out = |access_token: String, expired_at: i64| IssuedToken {
            access_token,
            now,
            expired_at,
        };
        let found = |token, expired_at| Ok((hand_out(token, expired_at), false));
        if let Some(t) = merchants::live_token(&self.db.read, merchant_id, now).await? {
            // Unsealed before it is extended: a token that cannot be handed out again is
            // replaced, not kept alive.
            match self.unseal_token(&t) {
                Some(token) if t.expires_at - now > EXTEND_WINDOW_SECS => {
                    return found(token, t.expires_at);
                }
                Some(token) => {
                    // Only the expiry read is extended: if another instance extended it or
                    // replaced the token meanwhile (its clock saw it expired), nothing is
                    // changed, and the slot's holder is handed out below instead of a token
                    // that may no longer exist.
                    let extended = t.expires_at + EXTEND_BY_SECS;
                    if merchants::extend_token(
                        &self.db.write,
                        &t.token_sha256,
                        t.expires_at,
                        now,
                        extended,
                    )
                    .await?
                    {
                        return found(token, extended);
                    }
                }
                None => merchants::leave_slot(&self.db.write, &t.token_sha256).await?,
            }
        }
        // No live token was read (or none that can be handed out): claim the merchant's slot for
        // a new one. Concurrent first calls (here or on another instance) race for the slot, and
        // the losers hand out the winner's.
        for _ in 0..3 {
            let token = random_hex(20);
            let expired_at = now + TOKEN_TTL_SECS;
            let stored = merchants::StoredToken {
                sha256: token_digest(&token),
                sealed: self.secrets.seal(token.as_bytes()),
            };
            if merchants::claim_token_slot(&self.db.write, stored, merchant_id, now, expired_at)
                .await?
            {
                return Ok((hand_out(token, expired_at), true));
            }
            // Read on the writer: it has seen the winner's write, which the readers may not yet.
            if let Some(t) = merchants::slot_token(&self.db.write, merchant_id)
                .await?
                .filter(|t| t.expires_at > now)
            {
                match self.unseal_token(&t) {
                    Some(token) => return found(token, t.expires_at),
                    None => merchants::leave_slot(&self.db.write, &t.token_sha256).await?,
                }
            }
            // The holder expired, was deleted or cannot be handed out: claim again.
        }
        Err(ServiceError::Internal(
            "no access token could be issued".into(),
        ))
    }

    /// The token of a stored row, to hand out again; None when it cannot be unsealed (the master
    /// key was changed without `OPENPORT_PREVIOUS_MASTER_KEYS`). Such a token stays valid for
    /// whoever holds it until it expires, but getToken replaces it: a client must always be able
    /// to get a token.
    ///
    /// The value must also be the token the row is found by (its SHA-256 is the row's key): a
    /// sealed value binds nothing about where it belongs, so without this check someone able to
    /// write to the database but without the master key could copy another sealed column (a
    /// merchant's KCP key passphrase, a billing key) into a token row and have getToken decrypt
    /// it for them. (Such a writer controls every merchant anyway, e.g. by inserting a token row
    /// of its own, docs/security.md "Database access"; what this keeps from it is the sealed
    /// secrets themselves.)
    fn unseal_token(&self, t: &access_token::Model) -> Option<String> {
        match self.secrets.open_string(&t.token_sealed) {
            Ok(token) if super::secrets::token_digest(&token) == t.token_sha256 => Some(token),
            Ok(_) => {
                tracing::error!(
                    merchant_id = t.merchant_id,
                    "an access token row holds a sealed value that is not its token (the database was written to by hand?); issuing a new one"
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    merchant_id = t.merchant_id,
                    "the live access token cannot be unsealed (was the master key changed without OPENPORT_PREVIOUS_MASTER_KEYS?); issuing a new one: {e}"
                );
                None
            }
        }
    }

    /// Resolves a presented token (any transport) to a principal; 401 when missing, unknown or expired.
    pub async fn authenticate(&self, token: Option<&str>) -> ServiceResult<Principal> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ServiceError::Unauthorized)?;
        if let Some(admin) = &self.admin_token {
            if bool::from(token.as_bytes().ct_eq(admin.expose_secret().as_bytes())) {
                return Ok(Principal::Admin);
            }
        }
        let now = self.clock.unix();
        let merchant_id = match self.tokens.get(token, now, Instant::now()) {
            Some(id) => id,
            None => {
                // Taken before the row is read: a `merchant new-secret` that deletes it and is
                // announced before it is cached below must keep it out (`TokenCache::put_read`).
                let forgotten = self.tokens.forgotten();
                let row = merchants::token(&self.db.read, &token_digest(token))
                    .await?
                    .ok_or(ServiceError::Unauthorized)?;
                if row.expires_at <= now {
                    return Err(ServiceError::Unauthorized);
                }
                self.tokens.put_read(
                    token,
                    row.merchant_id,
                    row.expires_at,
                    now,
                    Instant::now(),
                    forgotten,
                );
                row.merchant_id
            }
        };
        let merchant = self.merchant(merchant_id).await?;
        // A token the merchant got while this database ran in test mode.
        if !serves_in_mode(self.settings.test_mode, &merchant) {
            return Err(ServiceError::Unauthorized);
        }
        Ok(Principal::Merchant(merchant))
    }

    pub async fn merchant(&self, id: i64) -> ServiceResult<Arc<merchant::Model>> {
        self.cached_merchant(&self.db.read, id)
            .await?
            .ok_or(ServiceError::Unauthorized)
    }

    /// The merchant row from the cache while it is younger than [`MERCHANT_TTL`], else read
    /// through `db` (and cached again). A caller inside a transaction passes the transaction: on
    /// PostgreSQL `db.read` is the same pool, and a transaction that waits for a second connection
    /// while holding its own can stall the pool until the acquire timeout (every holder waiting
    /// for one more), which ended window approvals KCP had made in a net-cancel.
    pub(super) async fn cached_merchant(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        id: i64,
    ) -> Result<Option<Arc<merchant::Model>>, sea_orm::DbErr> {
        if let Some(m) = self.tokens.merchant(id, Instant::now()) {
            return Ok(Some(m));
        }
        let forgotten = self.tokens.forgotten();
        let Some(m) = merchants::by_id(db, id).await? else {
            return Ok(None);
        };
        let m = Arc::new(m);
        self.tokens
            .put_merchant_read(m.clone(), Instant::now(), forgotten);
        Ok(Some(m))
    }

    /// Replaces the cached row after this instance changed it, so the change applies here at once,
    /// and tells the other instances on PostgreSQL to drop theirs (`jobs::merchant_changes`);
    /// otherwise they read it again within [`MERCHANT_TTL`].
    pub(super) async fn remember_merchant(&self, m: merchant::Model) {
        let id = m.id;
        self.tokens.put_merchant(Arc::new(m), Instant::now());
        super::merchants::announce(&self.db, id).await;
    }

    /// Drops a merchant's cached row (every merchant's with None): another instance changed it.
    pub fn forget_merchant(&self, id: Option<i64>) {
        self.tokens.forget_merchant(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(id: i64) -> Arc<merchant::Model> {
        Arc::new(merchant::Model::sample(id))
    }

    #[test]
    fn a_forgotten_merchant_row_is_read_again_and_one_read_before_it_was_forgotten_is_not_kept() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put_merchant(merchant(7), t0);
        cache.put_merchant(merchant(8), t0);
        let before = cache.forgotten();
        cache.forget_merchant(Some(7));
        assert!(cache.merchant(7, t0).is_none());
        assert!(cache.merchant(8, t0).is_some(), "only the changed merchant");
        // A read that began before the change was announced may hold the old row.
        cache.put_merchant_read(merchant(7), t0, before);
        assert!(cache.merchant(7, t0).is_none());
        cache.put_merchant_read(merchant(7), t0, cache.forgotten());
        assert!(cache.merchant(7, t0).is_some());
        cache.forget_merchant(None);
        assert!(cache.merchant(7, t0).is_none() && cache.merchant(8, t0).is_none());
    }

    #[test]
    fn a_token_read_before_its_merchant_was_forgotten_is_not_cached_and_one_read_after_is() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        let expires_at = 1_000 + TOKEN_TTL_SECS;
        // Read just before `merchant new-secret` deleted it; the announcement is processed before
        // the read is cached.
        let before = cache.forgotten();
        cache.forget_merchant(Some(7));
        cache.put_read("tok", 7, expires_at, 1_000, t0, before);
        assert_eq!(
            cache.get("tok", 1_000, t0),
            None,
            "a revoked token stays out"
        );
        // Any merchant's change counts: the count is not per merchant.
        let before = cache.forgotten();
        cache.forget_merchant(Some(8));
        cache.put_read("tok", 7, expires_at, 1_000, t0, before);
        assert_eq!(cache.get("tok", 1_000, t0), None);
        // Read after the announcement: the database's answer stands, and is cached.
        cache.put_read("tok", 7, expires_at, 1_000, t0, cache.forgotten());
        assert_eq!(cache.get("tok", 1_000, t0), Some(7));
        // And is dropped by the next announcement.
        cache.forget_merchant(Some(7));
        assert_eq!(cache.get("tok", 1_000, t0), None);
    }

    #[test]
    fn a_cached_merchant_row_is_read_again_once_it_is_a_minute_old() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put_merchant(merchant(7), t0);
        assert!(cache.merchant(7, t0 + Duration::from_secs(59)).is_some());
        assert!(cache.merchant(7, t0 + MERCHANT_TTL).is_none());
        assert!(cache.merchant(8, t0).is_none());
        // Reading it again starts a new minute.
        cache.put_merchant(merchant(7), t0 + MERCHANT_TTL);
        assert!(cache.merchant(7, t0 + MERCHANT_TTL).is_some());
    }

    #[test]
    fn a_cached_token_is_checked_against_the_database_again_once_it_is_a_minute_old() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put_read(
            "tok",
            7,
            1_000 + TOKEN_TTL_SECS,
            1_000,
            t0,
            cache.forgotten(),
        );
        assert_eq!(
            cache.get("tok", 1_059, t0 + Duration::from_secs(59)),
            Some(7)
        );
        assert_eq!(
            cache.get("tok", 1_060, t0 + MERCHANT_TTL),
            None,
            "revoked tokens are found out"
        );
        assert_eq!(
            cache.get("tok", 1_000 + TOKEN_TTL_SECS, t0),
            None,
            "expired"
        );
        assert_eq!(cache.get("other", 1_000, t0), None);
    }
}
