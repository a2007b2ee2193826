//! Merchant accounts: iamport credentials (imp_code, imp_key, imp_secret) bound to one KCP site.
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sea_orm::Set;
use secrecy::{ExposeSecret, SecretString};

use super::secrets::hash_key_id;
use super::{Gateway, ServiceError, ServiceResult};
use crate::pg::kcp::{KcpConfig, KcpConnector};
use crate::store::billing::ServedMerchants;
use crate::store::entity::merchant;
use crate::store::{is_unique_violation, merchants};

/// The demo merchant created on an empty database in test mode. Like iamport's public test key,
/// these values are published (README, docs/api.md) and only ever work against the sandbox.
pub const DEMO_IMP_CODE: &str = "imp00000000";
pub const DEMO_IMP_KEY: &str = "imp_apikey";
pub const DEMO_IMP_SECRET: &str =
    "ekKoeW8RyKuT0zgaZsUtXXTLQ4AhPFW3ZGseDA6bkA5lamv9OqDMnxyeB9wqOsuO9W3Mx9YSJ4dTqJ3f";
pub const DEMO_SITE_CD: &str = "T0000";

/// Whether merchant `m` is served by an instance in test mode (`test_mode`) or not. A merchant
/// made in test mode (the demo merchant above all: its credentials are in the README) serves
/// only test-mode instances: the same database run with `OPENPORT_TEST_MODE=false` gives it no
/// token and no checkout, whatever its stored secret (docs/operations.md "From test mode to
/// live").
pub fn serves_in_mode(test_mode: bool, m: &merchant::Model) -> bool {
    test_mode || (!m.test_mode && m.imp_key != DEMO_IMP_KEY)
}

/// Fresh iamport credentials: imp_code, imp_key, imp_secret.
pub fn fresh_credentials() -> (String, String, String) {
    let mut rng = rand::thread_rng();
    (
        format!("imp{:08}", rng.gen_range(0..100_000_000u32)),
        format!(
            "{:016}",
            rng.gen_range(1_000_000_000_000_000u64..10_000_000_000_000_000u64)
        ),
        fresh_secret(&mut rng),
    )
}

fn fresh_secret(rng: &mut impl Rng) -> String {
    Alphanumeric.sample_string(rng, 80)
}

pub struct NewMerchant {
    pub name: String,
    pub site_cd: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub private_key_passphrase: SecretString,
    pub test_mode: bool,
    /// Fixed iamport credentials (the demo merchant); None = generate fresh ones.
    pub credentials: Option<(String, String, String)>,
}

/// A new merchant and its imp_secret, which exists in clear only in this value.
pub struct CreatedMerchant {
    pub merchant: merchant::Model,
    pub imp_secret: SecretString,
}

impl Gateway {
    /// Whose due schedules this instance runs: [`serves_in_mode`] as a database condition.
    pub(crate) fn served_merchants(&self) -> ServedMerchants {
        if self.settings.test_mode {
            ServedMerchants::All
        } else {
            ServedMerchants::LiveOnly {
                demo_imp_key: DEMO_IMP_KEY,
            }
        }
    }

    pub async fn create_merchant(&self, new: NewMerchant) -> ServiceResult<CreatedMerchant> {
        if new.site_cd.len() != 5 || !new.site_cd.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ServiceError::BadRequest(
                "site_cd는 영문/숫자 5자리입니다.".into(),
            ));
        }
        // Refuse credentials that cannot sign before they are stored.
        KcpConnector::new(
            KcpConfig {
                site_cd: new.site_cd.clone(),
                certificate_pem: new.certificate_pem.clone(),
                private_key_pem: new.private_key_pem.clone(),
                private_key_passphrase: new.private_key_passphrase.clone(),
                urls: self.connectors.urls().clone(),
                timeout: std::time::Duration::from_secs(1),
            },
            reqwest::Client::new(),
        )
        .map_err(|e| {
            ServiceError::BadRequest(format!("KCP 인증서/개인키를 사용할 수 없습니다: {e}"))
        })?;

        let (imp_code, imp_key, imp_secret) = new.credentials.unwrap_or_else(fresh_credentials);
        let model = merchant::ActiveModel {
            imp_code: Set(imp_code),
            name: Set(new.name),
            imp_key: Set(imp_key),
            imp_secret_hash: Set(self.secrets.secret_hash(&imp_secret)),
            site_cd: Set(new.site_cd),
            kcp_certificate_pem: Set(new.certificate_pem),
            kcp_private_key_sealed: Set(self.secrets.seal(new.private_key_pem.as_bytes())),
            kcp_passphrase_sealed: Set(self
                .secrets
                .seal(new.private_key_passphrase.expose_secret().as_bytes())),
            test_mode: Set(new.test_mode),
            created_at: Set(self.clock.unix()),
            ..Default::default()
        };
        match merchants::insert(&self.db.write, model).await {
            Ok(merchant) => Ok(CreatedMerchant {
                merchant,
                imp_secret: SecretString::from(imp_secret),
            }),
            Err(e) if is_unique_violation(&e) => Err(ServiceError::Refused(
                "이미 사용 중인 imp_code 또는 imp_key입니다.".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_merchants(&self) -> ServiceResult<Vec<merchant::Model>> {
        Ok(merchants::all(&self.db.read).await?)
    }
}

/// Gives merchant `imp_code` a new imp_secret, hashed under the current master key, and returns
/// it (shown once, like a new merchant's). For a merchant whose hash is under a master key that
/// is gone, or whose secret leaked. Works on the database alone: openport refuses to start while
/// a merchant's hash is under a key it does not have (service/key_check.rs), and this is how an
/// operator gets past that without the old key. Tokens already issued stay valid until they
/// expire (30 minutes at most).
pub async fn new_imp_secret(
    db: &crate::store::Db,
    secrets: &super::secrets::MasterKey,
    imp_code: &str,
) -> ServiceResult<CreatedMerchant> {
    let Some(mut merchant) = merchants::by_imp_code(&db.read, imp_code).await? else {
        return Err(ServiceError::NotFound(format!(
            "no merchant with imp_code {imp_code}"
        )));
    };
    let secret = fresh_secret(&mut rand::thread_rng());
    let hash = secrets.secret_hash(&secret);
    // A secret is renewed because the old one leaked (or cannot be checked any more): the tokens
    // got with it go in the same transaction. Instances that cached one refuse it within a minute
    // (`auth::TokenCache`); the merchant's next getToken, with the new secret, gets a new one.
    let txn = db.write.begin().await?;
    merchants::set_secret_hash(&txn, merchant.id, &hash).await?;
    merchants::delete_tokens_of(&txn, merchant.id).await?;
    txn.commit().await?;
    merchant.imp_secret_hash = hash;
    Ok(CreatedMerchant {
        merchant,
        imp_secret: SecretString::from(secret),
    })
}

/// What `openport reseal` rewrote.
#[derive(Debug, Default, Clone)]
pub struct ResealReport {
    pub merchants: usize,
    pub billing_keys: usize,
    /// Live access tokens (getToken hands them out again, so they must open under the new key).
    pub access_tokens: usize,
    /// imp_codes of the merchants whose imp_secret hash is not under the current key yet: a hash
    /// cannot be resealed (the secret is not stored), it is upgraded at the merchant's next
    /// getToken. Until this is empty, the old key must stay in `OPENPORT_PREVIOUS_MASTER_KEYS`.
    pub hashes_under_old_keys: Vec<String>,
}

impl Gateway {
    /// Rewrites every sealed column that is not under the current master key (after a rotation).
    /// Each row is rewritten on its own: safe to interrupt and run again.
    pub async fn reseal_secrets(&self) -> ServiceResult<ResealReport> {
        use crate::store::entity::{access_token, billing_key};
        use sea_orm::{ActiveModelTrait, EntityTrait};
        let reseal = |v: &str| -> ServiceResult<Option<String>> {
            // Empty: nothing is sealed there, e.g. a retired billing key KCP has deleted
            // (store::billing::key_deleted_at_pg erases it).
            if v.is_empty() || !self.secrets.needs_reseal(v) {
                return Ok(None);
            }
            let plain = self
                .secrets
                .open(v)
                .map_err(|e| ServiceError::Internal(format!("reseal: {e}")))?;
            Ok(Some(self.secrets.seal(&plain)))
        };
        let mut report = ResealReport::default();
        for m in merchants::all(&self.db.read).await? {
            if hash_key_id(&m.imp_secret_hash) != Some(self.secrets.key_id()) {
                report.hashes_under_old_keys.push(m.imp_code.clone());
            }
            let key = reseal(&m.kcp_private_key_sealed)?;
            let pass = reseal(&m.kcp_passphrase_sealed)?;
            let hook = match &m.webhook_secret_sealed {
                Some(s) => reseal(s)?,
                None => None,
            };
            if key.is_none() && pass.is_none() && hook.is_none() {
                continue;
            }
            let mut am: merchant::ActiveModel = m.into();
            if let Some(k) = key {
                am.kcp_private_key_sealed = Set(k);
            }
            if let Some(p) = pass {
                am.kcp_passphrase_sealed = Set(p);
            }
            if let Some(h) = hook {
                am.webhook_secret_sealed = Set(Some(h));
            }
            merchants::update(&self.db.write, am).await?;
            report.merchants += 1;
        }
        for k in billing_key::Entity::find().all(&self.db.read).await? {
            if let Some(sealed) = reseal(&k.batch_key_sealed)? {
                let mut am: billing_key::ActiveModel = k.into();
                am.batch_key_sealed = Set(sealed);
                am.update(&self.db.write).await?;
                report.billing_keys += 1;
            }
        }
        let now = self.clock.unix();
        for t in access_token::Entity::find().all(&self.db.read).await? {
            if t.expires_at <= now {
                continue;
            }
            if let Some(sealed) = reseal(&t.token_sealed)? {
                let mut am: access_token::ActiveModel = t.into();
                am.token_sealed = Set(sealed);
                am.update(&self.db.write).await?;
                report.access_tokens += 1;
            }
        }
        Ok(report)
    }
}
