//! Merchant accounts: iamport credentials (imp_code, imp_key, imp_secret) bound to one KCP site.
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sea_orm::Set;
use secrecy::{ExposeSecret, SecretString};

use super::key_check::{UnderKey, UnknownKeys};
use super::secrets::{hash_key_id, sealed_key_id};
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::kcp_origin::{self, OriginError};
use crate::pg::kcp::{KcpCertificate, KcpConfig, KcpConnector, KcpUrls};
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

/// A merchant's sealed values, as `(column, name shown to an operator, value)`, the previous
/// webhook secret only while it is still honoured: what `reseal` re-seals and the start-up key
/// check (service/key_check.rs) requires a configured key for, one list for both.
pub(crate) fn sealed_columns(
    m: &merchant::Model,
    now: i64,
) -> [(merchant::Column, &'static str, Option<&str>); 4] {
    [
        (
            merchant::Column::KcpPrivateKeySealed,
            "KCP private key",
            Some(m.kcp_private_key_sealed.as_str()),
        ),
        (
            merchant::Column::KcpPassphraseSealed,
            "KCP key passphrase",
            Some(m.kcp_passphrase_sealed.as_str()),
        ),
        (
            merchant::Column::WebhookSecretSealed,
            "webhook secret",
            m.webhook_secret_sealed.as_deref(),
        ),
        (
            merchant::Column::WebhookPreviousSecretSealed,
            "previous webhook secret",
            super::webhooks::previous_secret(m, now).map(|(sealed, _)| sealed),
        ),
    ]
}

/// Whether merchant `m` is served by an instance in test mode (`test_mode`) or not. A merchant
/// made in test mode (the demo merchant above all: its credentials are in the README) serves
/// only test-mode instances: the same database run with `OPENPORT_TEST_MODE=false` gives it no
/// token and no checkout, whatever its stored secret (docs/operations.md "From test mode to
/// live").
pub fn serves_in_mode(test_mode: bool, m: &merchant::Model) -> bool {
    test_mode || (!m.test_mode && m.imp_key != DEMO_IMP_KEY)
}

/// Whether an instance in test mode (`test_mode`) or not runs merchant `m`'s background work:
/// its due schedules, the resolver's settling of its open attempts, its retired keys' deletions,
/// its webhooks, and whose KCP calls it makes at all (`Connectors::for_merchant`). Stricter than
/// [`serves_in_mode`]: an instance in test mode answers a live merchant's lookups, but must not
/// take its payments (the sandbox would approve them, recorded as real), nor settle its trades
/// by asking the sandbox (which knows none of them: a real approval whose answer was lost would
/// be "not found" there, and failed), nor charge its real billing keys there, nor send its
/// webhooks under the test mode's private-address rule.
pub fn runs_in_mode(test_mode: bool, m: &merchant::Model) -> bool {
    let made_in_test_mode = m.test_mode || m.imp_key == DEMO_IMP_KEY;
    made_in_test_mode == test_mode
}

/// A merchant's own KCP origin as stored (`scheme://host[:port]`): KCP's REST paths are appended
/// to it as to the instance's `kcp.api_base`. https, unless the host is this machine (a sandbox,
/// or a local egress proxy): card data goes there. An instance in test mode refuses KCP's
/// production hosts, as it does for its own setting: it marks every payment `sandbox: true`, and
/// the demo credentials work on it.
pub fn kcp_api_base(url: &str, test_mode: bool) -> ServiceResult<String> {
    let refuse = |why: &str| ServiceError::BadRequest(format!("kcp_api_base: {why}"));
    let origin = kcp_origin::parse(url, false).map_err(|e| {
        refuse(match e {
            OriginError::NotUrl => "URL이 아닙니다.",
            OriginError::NoHost => "호스트가 없습니다.",
            OriginError::PlainHttp => "https 주소여야 합니다 (http는 이 호스트만).",
            OriginError::NotOrigin => {
                "경로, 쿼리, 계정 정보 없는 origin이어야 합니다 (예: https://stg-spl.kcp.co.kr)."
            }
        })
    })?;
    if test_mode {
        if let Some(host) = crate::config::kcp_production_host(url) {
            return Err(refuse(&format!(
                "테스트 모드에서는 KCP 운영 호스트({host})를 쓸 수 없습니다."
            )));
        }
    }
    Ok(origin.origin)
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

/// Longest KCP batch group id taken. KCP's are the site code and 7 digits (`A52Q71000489`,
/// spec/kcp.md §1); the format is not published, so only a generous bound is kept.
const KCP_GROUP_ID_MAX: usize = 20;

/// A merchant's KCP batch (billing-key) group id as given by an operator: letters and digits,
/// 1–20 of them. It goes into every batch-key issuance (`group_id`) and, stored with each key,
/// into its charges (`bt_group_id`) and deletion (spec/kcp.md §2.5–2.6), so a typo must stop here
/// rather than at KCP.
pub fn kcp_group_id(value: &str) -> ServiceResult<String> {
    if value.is_empty()
        || value.len() > KCP_GROUP_ID_MAX
        || !value.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ServiceError::BadRequest(format!(
            "kcp_group_id는 영문/숫자 1–{KCP_GROUP_ID_MAX}자입니다 (KCP가 배치키 계약 때 준 값, 예: A52Q71000489)."
        )));
    }
    Ok(value.to_owned())
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
    /// The merchant's own KCP origin ([`kcp_api_base`]); None = the instance's.
    pub kcp_api_base: Option<String>,
    /// The KCP batch (billing-key) group id KCP assigned with the batch contract
    /// ([`kcp_group_id`]). None: billing keys are refused outside test mode until
    /// [`set_kcp_group_id`] gives one (`Gateway::group_id`).
    pub kcp_group_id: Option<String>,
}

/// A new merchant and its imp_secret, which exists in clear only in this value.
pub struct CreatedMerchant {
    pub merchant: merchant::Model,
    pub imp_secret: SecretString,
}

impl Gateway {
    /// Whose background work this instance runs: [`runs_in_mode`] as a database condition.
    pub(crate) fn served_merchants(&self) -> ServedMerchants {
        if self.settings.test_mode {
            ServedMerchants::TestOnly {
                demo_imp_key: DEMO_IMP_KEY,
            }
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
        let api_base = new
            .kcp_api_base
            .as_deref()
            .map(|url| kcp_api_base(url, self.settings.test_mode))
            .transpose()?;
        let group_id = new.kcp_group_id.as_deref().map(kcp_group_id).transpose()?;
        // Refuse credentials that cannot sign before they are stored.
        let facts = usable_kcp_pair(
            &new.site_cd,
            &new.certificate_pem,
            &new.private_key_pem,
            &new.private_key_passphrase,
            self.connectors.urls_for(api_base.as_deref()),
        )
        .map_err(refused_pair)?;

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
            kcp_api_base: Set(api_base),
            kcp_group_id: Set(group_id),
            ..Default::default()
        };
        match merchants::insert(&self.db.write, model).await {
            Ok(merchant) => {
                warn_of_expiry(&merchant, &facts, self.clock.unix());
                Ok(CreatedMerchant {
                    merchant,
                    imp_secret: SecretString::from(imp_secret),
                })
            }
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
/// operator gets past that without the old key. The tokens already issued with the old secret
/// are deleted in the same transaction: running instances refuse them at once on PostgreSQL,
/// within a minute on SQLite (see below).
///
/// `test_mode` and `secrets` are the caller's configuration, which must be that of the instances
/// serving the merchant ([`configured_as_its_instances`]): otherwise nothing is changed.
pub async fn new_imp_secret(
    db: &crate::store::Db,
    secrets: &super::secrets::MasterKey,
    test_mode: bool,
    imp_code: &str,
) -> ServiceResult<CreatedMerchant> {
    let Some(mut merchant) = merchants::by_imp_code(&db.read, imp_code).await? else {
        return Err(ServiceError::NotFound(format!(
            "no merchant with imp_code {imp_code}"
        )));
    };
    configured_as_its_instances(&merchant, secrets, test_mode, KeyedChange::NewSecret)?;
    let secret = fresh_secret(&mut rand::thread_rng());
    let hash = secrets.secret_hash(&secret);
    // A secret is renewed because the old one leaked (or cannot be checked any more): the tokens
    // got with it go in the same transaction. Instances that cached one refuse it at once on
    // PostgreSQL (told by `announce`), within a minute on SQLite (`auth::TokenCache`); the
    // merchant's next getToken, with the new secret, gets a new one.
    let txn = db.write.begin().await?;
    merchants::set_secret_hash(&txn, merchant.id, &hash).await?;
    merchants::delete_tokens_of(&txn, merchant.id).await?;
    txn.commit().await?;
    announce(db, merchant.id).await;
    merchant.imp_secret_hash = hash;
    Ok(CreatedMerchant {
        merchant,
        imp_secret: SecretString::from(secret),
    })
}

/// What an operator command writes under its own master key, for the refusal of
/// [`configured_as_its_instances`].
#[derive(Clone, Copy)]
enum KeyedChange {
    /// [`new_imp_secret`]: a hash under the current key.
    NewSecret,
    /// [`set_kcp_certificate`]: the private key and its passphrase sealed under the current key.
    KcpCertificate,
}

impl KeyedChange {
    fn not_done(self) -> &'static str {
        match self {
            Self::NewSecret => "imp_secret not renewed",
            Self::KcpCertificate => "KCP certificate and private key not replaced",
        }
    }

    fn made_under_key(self) -> &'static str {
        match self {
            Self::NewSecret => "the new secret would be hashed",
            Self::KcpCertificate => "the new private key would be sealed",
        }
    }

    fn locking_out(self) -> &'static str {
        match self {
            Self::NewSecret => "locking it out and stopping their restarts",
            Self::KcpCertificate => {
                "failing every KCP call of the merchant and stopping their restarts"
            }
        }
    }

    fn refused_by_them(self) -> &'static str {
        match self {
            Self::NewSecret => "a new secret hashed here would be refused by them",
            Self::KcpCertificate => "a private key sealed here would not open on them",
        }
    }
}

/// Refuses [`new_imp_secret`] (or [`set_kcp_certificate`]) of merchant `m` from a configuration (`test_mode`, `secrets`) other
/// than its instances'. The new hash is made under `secrets`' current key, and the old secret's
/// tokens are deleted: under a key the instances serving `m` do not have, `m` is locked out (every
/// getToken 401) and no instance restarts (the start-up key check). An operator's shell without
/// the instances' environment is in test mode with the public test-mode key (`app::master_key`),
/// so a live merchant renewed from it was locked out, and so was every merchant after a suspected
/// write (docs/security.md). Two things show the configuration is not theirs:
/// - the mode: a live merchant is served by live instances, a test-mode one by test-mode ones
///   ([`runs_in_mode`]);
/// - `m`'s own sealed KCP private key: `openport reseal` keeps it under a key its instances have,
///   during a rotation and after, so one `secrets` does not have names another key (a typo, or
///   another instance's key).
///
/// The hash itself is not checked: a hash under a key that is gone is what this command mends.
fn configured_as_its_instances(
    m: &merchant::Model,
    secrets: &super::secrets::MasterKey,
    test_mode: bool,
    change: KeyedChange,
) -> ServiceResult<()> {
    let refused = |why: String| {
        ServiceError::Refused(format!(
            "merchant {}'s {}, nothing changed: {why}",
            m.imp_code,
            change.not_done()
        ))
    };
    if !runs_in_mode(test_mode, m) {
        let (merchant_is, command_is, instances) = if test_mode {
            (
                "a live merchant",
                "in test mode (OPENPORT_TEST_MODE unset or true)",
                "live instances (OPENPORT_TEST_MODE=false, their OPENPORT_MASTER_KEY)",
            )
        } else {
            (
                "a merchant made in test mode",
                "with OPENPORT_TEST_MODE=false",
                "test-mode instances (their OPENPORT_TEST_MODE and OPENPORT_MASTER_KEY)",
            )
        };
        return Err(refused(format!(
            "it is {merchant_is} and this command runs {command_is}: {} under a master key the \
             instances serving it may not have, {}. Run the command with the configuration of \
             its {instances}.",
            change.made_under_key(),
            change.locking_out()
        )));
    }
    let sealed = m.kcp_private_key_sealed.as_str();
    let missing = match sealed_key_id(sealed) {
        Some(id) if secrets.has_key(id) => None,
        Some(id) => Some(id.to_string()),
        None if secrets.open(sealed).is_ok() => None,
        None => Some("v1".to_string()),
    };
    if let Some(id) = missing {
        let mut under = UnderKey::default();
        under
            .merchants
            .insert(m.imp_code.clone(), vec!["KCP private key"]);
        let unknown = UnknownKeys {
            keys: [(id, under)].into(),
            current: secrets.key_id().to_string(),
            previous: secrets.previous_ids().map(str::to_string).collect(),
        };
        return Err(refused(format!(
            "this command's master keys are not those of the instances serving it, and {}: \
             {unknown}",
            change.refused_by_them()
        )));
    }
    Ok(())
}

/// Gives merchant `imp_code` the KCP batch group id `group_id` (`openport merchant set-group-id`).
/// Only keys issued from now on are issued under it: a key belongs to the group it was issued
/// under, so the stored keys keep theirs (`billing_keys.group_id`) for their charges and their
/// deletion. Works on the database alone, as [`new_imp_secret`]; running instances on PostgreSQL
/// are told at once, on SQLite they read the merchant row again within a minute
/// (`auth::TokenCache`).
pub async fn set_kcp_group_id(
    db: &crate::store::Db,
    imp_code: &str,
    group_id: &str,
) -> ServiceResult<merchant::Model> {
    let group_id = kcp_group_id(group_id)?;
    if merchants::set_kcp_group_id(&db.write, imp_code, &group_id).await? == 0 {
        return Err(ServiceError::NotFound(format!(
            "no merchant with imp_code {imp_code}"
        )));
    }
    let merchant = merchants::by_imp_code(&db.write, imp_code)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no merchant with imp_code {imp_code}")))?;
    announce(db, merchant.id).await;
    Ok(merchant)
}

/// A merchant's renewed KCP service certificate and private key (`openport merchant
/// set-kcp-cert`), as KCP issues them.
pub struct KcpCredentials {
    pub certificate_pem: String,
    /// The encrypted PKCS#8 PEM.
    pub private_key_pem: String,
    pub private_key_passphrase: SecretString,
}

/// Replaces merchant `imp_code`'s KCP certificate and private key (a renewal), keeping everything
/// else: its imp_code, imp_key and imp_secret (which the shop's front end and backend hold), its
/// billing keys and schedules. A new merchant instead would strand all of these.
///
/// The pair is checked as [`Gateway::create_merchant`] checks one ([`usable_kcp_pair`]: it
/// loads, the key is the certificate's, the certificate is for the merchant's site), then the key
/// and passphrase are sealed under `secrets`' current key and the three columns written in one
/// statement. `test_mode` and `secrets` must be the configuration of the instances serving the
/// merchant, as for [`new_imp_secret`]: a key sealed under a key they do not have would fail
/// every KCP call. Running instances use the new pair for their next KCP call once they read the
/// row again: at once on PostgreSQL (announced), within a minute on SQLite (a connector follows
/// the merchant row it is asked for, `Connectors::for_merchant`). Calls already on their way end
/// under the old pair, which KCP still takes until it expires.
pub async fn set_kcp_certificate(
    db: &crate::store::Db,
    secrets: &super::secrets::MasterKey,
    test_mode: bool,
    now: i64,
    imp_code: &str,
    new: KcpCredentials,
) -> ServiceResult<(merchant::Model, CertificateFacts)> {
    let not_found = || ServiceError::NotFound(format!("no merchant with imp_code {imp_code}"));
    let m = merchants::by_imp_code(&db.read, imp_code)
        .await?
        .ok_or_else(not_found)?;
    configured_as_its_instances(&m, secrets, test_mode, KeyedChange::KcpCertificate)?;
    // Nothing is sent: the URLs are only checked, as when the merchant was created.
    let urls = m
        .kcp_api_base
        .as_deref()
        .map_or_else(KcpUrls::production, KcpUrls::with_base);
    let facts = usable_kcp_pair(
        &m.site_cd,
        &new.certificate_pem,
        &new.private_key_pem,
        &new.private_key_passphrase,
        urls,
    )
    .map_err(refused_pair)?;
    let key_sealed = secrets.seal(new.private_key_pem.as_bytes());
    let passphrase_sealed = secrets.seal(new.private_key_passphrase.expose_secret().as_bytes());
    let changed = merchants::set_kcp_credentials(
        &db.write,
        m.id,
        &new.certificate_pem,
        &key_sealed,
        &passphrase_sealed,
    )
    .await?;
    if changed == 0 {
        return Err(not_found());
    }
    announce(db, m.id).await;
    let m = merchants::by_id(&db.write, m.id)
        .await?
        .ok_or_else(not_found)?;
    warn_of_expiry(&m, &facts, now);
    Ok((m, facts))
}

/// What openport reads of a KCP service certificate besides its public key (which the loader
/// checks against the private key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// The site code the certificate names: its subject CN when that has a site code's shape (5
    /// letters and digits), as the sandbox CA writes it, and as KCP checks it (`9511` when it is
    /// not the request's `site_cd`). KCP's own public test certificate (site T0000) has an
    /// issuance number there (`2021062910000024`), which names no site: None, and then the site
    /// cannot be checked here.
    pub site_cd: Option<String>,
    /// `kcp_cert_info`: the certificate on one line, as sent to KCP; equal for the same
    /// certificate in any of its text forms.
    pub cert_info: String,
}

/// Reads `pem` (a PEM file's text or KCP's one-line form) as [`KcpCertificate::from_pem`] does.
pub fn certificate_facts(pem: &str) -> Result<CertificateFacts, String> {
    use base64::Engine;
    use der::Decode;
    let cert_info = KcpCertificate::from_pem(pem)
        .map_err(|e| e.to_string())?
        .cert_info()
        .to_owned();
    let body = cert_info
        .strip_prefix("-----BEGIN CERTIFICATE-----")
        .and_then(|rest| rest.strip_suffix("-----END CERTIFICATE-----"))
        .ok_or("certificate is not a PEM CERTIFICATE")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("certificate body is not Base64: {e}"))?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let not_after = i64::try_from(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
    .unwrap_or(i64::MAX);
    let site_cd = common_name(&cert)
        .filter(|cn| cn.len() == 5 && cn.bytes().all(|b| b.is_ascii_alphanumeric()));
    Ok(CertificateFacts {
        not_after,
        site_cd,
        cert_info,
    })
}

/// The subject's CN, whichever string type the issuer chose for it.
fn common_name(cert: &x509_cert::Certificate) -> Option<String> {
    use der::Tagged;
    const COMMON_NAME: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| match attribute.value.tag() {
            der::Tag::Utf8String | der::Tag::PrintableString | der::Tag::Ia5String => {
                std::str::from_utf8(attribute.value.value())
                    .ok()
                    .map(str::to_owned)
            }
            _ => None,
        })
}

/// Loads a KCP certificate and private key with the loader a merchant's connector uses
/// ([`KcpConnector::new`]: the certificate, the key under its passphrase, the key being the
/// certificate's), and refuses a certificate that names a site other than `site_cd`: KCP refuses
/// every call made with it. `merchant create`, `merchant set-kcp-cert` and the seed's check at
/// start (app/first_merchant.rs) all check a pair here, so what one takes the others take. The
/// reason never holds key material.
pub fn usable_kcp_pair(
    site_cd: &str,
    certificate_pem: &str,
    private_key_pem: &str,
    passphrase: &SecretString,
    urls: KcpUrls,
) -> Result<CertificateFacts, String> {
    KcpConnector::new(
        KcpConfig {
            site_cd: site_cd.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
            private_key_pem: private_key_pem.to_owned(),
            private_key_passphrase: passphrase.clone(),
            urls,
            timeout: std::time::Duration::from_secs(1),
        },
        reqwest::Client::new(),
    )
    .map_err(|e| e.to_string())?;
    let facts = certificate_facts(certificate_pem)?;
    match &facts.site_cd {
        Some(named) if named != site_cd => Err(format!(
            "the certificate is KCP site {named}'s, not site {site_cd}'s: KCP would refuse every \
             call made with it"
        )),
        _ => Ok(facts),
    }
}

fn refused_pair(why: String) -> ServiceError {
    ServiceError::BadRequest(format!("KCP 인증서/개인키를 사용할 수 없습니다: {why}"))
}

/// How long before its `notAfter` a live merchant's KCP certificate is warned about: time to get
/// the renewed one from KCP and install it (`openport merchant set-kcp-cert`).
pub const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 60 * 60;

/// Logs a WARN when live merchant `m`'s certificate (`facts`) is past its `notAfter` at `now`, or
/// within [`EXPIRY_WARNING_SECS`] of it. A warning only: KCP decides what it still takes, and an
/// expired certificate must not stop the key from loading (spec/kcp.md §3). Test-mode merchants
/// are left out: the sandbox takes any certificate its CA issued, and KCP's public test
/// certificate is expired yet documented.
pub fn warn_of_expiry(m: &merchant::Model, facts: &CertificateFacts, now: i64) {
    if !runs_in_mode(false, m) {
        return;
    }
    if let Some(state) = expiry_state(facts.not_after, now) {
        tracing::warn!(
            imp_code = %m.imp_code,
            site_cd = %m.site_cd,
            "the merchant's KCP certificate {state}: get the renewed certificate and key from KCP and install them with `openport merchant set-kcp-cert --imp-code {} --cert FILE --key FILE`",
            m.imp_code
        );
    }
}

/// What [`warn_of_expiry`] says of a certificate valid until `not_after` at `now`: None while
/// more than [`EXPIRY_WARNING_SECS`] are left.
fn expiry_state(not_after: i64, now: i64) -> Option<String> {
    let left = not_after.saturating_sub(now);
    if left > EXPIRY_WARNING_SECS {
        return None;
    }
    let date = chrono::DateTime::from_timestamp(not_after, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Some(if left <= 0 {
        format!("has expired (notAfter {date}): KCP may refuse its payments")
    } else {
        let days = (left + 86_399) / 86_400;
        let plural = if days == 1 { "" } else { "s" };
        format!("expires within {days} day{plural} (notAfter {date})")
    })
}

/// [`warn_of_expiry`] for each of `merchants` (at start). A stored certificate that cannot be
/// read (it was checked when stored) is named too: KCP refuses the merchant's calls.
pub fn warn_of_expiring_certificates(merchants: &[merchant::Model], now: i64) {
    for m in merchants.iter().filter(|m| runs_in_mode(false, m)) {
        match certificate_facts(&m.kcp_certificate_pem) {
            Ok(facts) => warn_of_expiry(m, &facts, now),
            Err(e) => tracing::warn!(
                imp_code = %m.imp_code,
                "the merchant's stored KCP certificate cannot be read ({e}): install a usable one with `openport merchant set-kcp-cert`"
            ),
        }
    }
}

/// Tells running instances on PostgreSQL that merchant `id` changed (an operator command, or this
/// instance's API), so they drop its cached row and tokens at once (`jobs::merchant_changes`); a
/// failed announcement is logged: they read the row again within a minute, as on SQLite.
pub(super) async fn announce(db: &crate::store::Db, id: i64) {
    if let Err(e) = merchants::announce_change(&db.write, id).await {
        tracing::warn!(
            merchant_id = id,
            "running instances not told of the change (they read it again within a minute): {e}"
        );
    }
}

/// What `openport reseal` rewrote, and what it could not.
#[derive(Debug, Default, Clone)]
pub struct ResealReport {
    pub merchants: usize,
    pub billing_keys: usize,
    /// Live access tokens (getToken hands them out again, so they must open under the new key).
    pub access_tokens: usize,
    /// imp_codes of the merchants served in this mode whose imp_secret hash is not under the
    /// current key yet: a hash cannot be resealed (the secret is not stored), it is upgraded at
    /// the merchant's next getToken. Until this is empty, the old key must stay in
    /// `OPENPORT_PREVIOUS_MASTER_KEYS`. Merchants this mode does not serve are left out: they
    /// get no token here, so their hash could never be upgraded (docs/operations.md "From test
    /// mode to live").
    pub hashes_under_old_keys: Vec<String>,
    /// The values no configured key opens, left as they are; each named by row and column, never
    /// by its value.
    pub unopenable: Vec<Unopenable>,
}

impl ResealReport {
    /// The unopenable values this mode needs (see [`Unopenable::needed`]): while any is left, the
    /// rotation is not done, and `openport reseal` exits non-zero.
    pub fn needed_unopenable(&self) -> impl Iterator<Item = &Unopenable> {
        self.unopenable.iter().filter(|u| u.needed)
    }
}

/// A sealed value `openport reseal` could not open, so left under its old key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unopenable {
    /// The row: `merchant imp…`, `billing key of merchant imp… for customer_uid …`, `access
    /// token of merchant imp…`.
    pub row: String,
    /// The column: `KCP private key`, `webhook secret`, `batch key` ….
    pub what: &'static str,
    /// The key id the value names (a digest, never key material); None for a v1 value.
    pub key_id: Option<String>,
    /// Whether this mode needs it, as the start-up key check decides (service/key_check.rs): a
    /// served merchant's value, or a billing key of the mode's kind. False for what a live
    /// instance never uses (a merchant made in test mode, a sandbox billing key: often sealed
    /// under the public test-mode key, which a database tried out in test mode keeps) and for
    /// access tokens (getToken issues a new one, and the old one expires within 30 minutes).
    pub needed: bool,
}

impl std::fmt::Display for Unopenable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}, ", self.row, self.what)?;
        match &self.key_id {
            Some(id) if *id == super::secrets::MasterKey::test_mode_key_id() => {
                write!(f, "key id {id} (openport's public test-mode key)")?
            }
            Some(id) => write!(f, "key id {id}")?,
            None => f.write_str("no key id (v1)")?,
        }
        if !self.needed {
            f.write_str("; not used in this mode, left as it is")?;
        }
        Ok(())
    }
}

impl Gateway {
    /// Rewrites every sealed column that is not under the current master key (after a rotation).
    /// Each row is rewritten on its own: safe to interrupt and run again. A value no configured
    /// key opens does not stop it: it is left as it is and named in the report (a database tried
    /// in test mode keeps its demo merchant's values under the public test-mode key, which a
    /// live instance neither has nor needs; a damaged value must not keep every other row from
    /// being resealed).
    pub async fn reseal_secrets(&self) -> ServiceResult<ResealReport> {
        use crate::store::entity::{access_token, billing_key};
        use crate::store::replace_value;
        use sea_orm::{ColumnTrait, Condition, EntityTrait};
        use std::collections::HashMap;
        let test_mode = self.settings.test_mode;
        let mut report = ResealReport::default();
        // The new sealed value, None when there is nothing to do: empty (nothing is sealed there,
        // e.g. a retired billing key KCP has deleted, store::billing::key_deleted_at_pg erases
        // it), already under the current key, or not to be opened (then reported).
        let mut reseal = |v: &str, row: &dyn Fn() -> String, what, needed| {
            if v.is_empty() || !self.secrets.needs_reseal(v) {
                return None;
            }
            match self.secrets.open(v) {
                Ok(plain) => Some(self.secrets.seal(&plain)),
                Err(_) => {
                    report.unopenable.push(Unopenable {
                        row: row(),
                        what,
                        key_id: super::secrets::sealed_key_id(v).map(str::to_string),
                        needed,
                    });
                    None
                }
            }
        };
        let now = self.clock.unix();
        let mut resealed = (0, 0, 0);
        let mut hashes_under_old_keys = vec![];
        let all = merchants::all(&self.db.read).await?;
        let imp_codes: HashMap<i64, &str> =
            all.iter().map(|m| (m.id, m.imp_code.as_str())).collect();
        let merchant_of = |id: i64| {
            imp_codes
                .get(&id)
                .copied()
                .unwrap_or("(deleted)")
                .to_string()
        };
        // Every write replaces the value read and nothing else (`WHERE column = value read`): a
        // secret changed meanwhile (a webhook secret rotated, a KCP key replaced, a billing key
        // erased once KCP deleted it, a token slot claimed again) keeps its new value, and is
        // left for the next run if it needs one.
        for m in &all {
            let served = serves_in_mode(test_mode, m);
            if served && hash_key_id(&m.imp_secret_hash) != Some(self.secrets.key_id()) {
                hashes_under_old_keys.push(m.imp_code.clone());
            }
            let mut changed = false;
            for (column, what, value) in sealed_columns(m, now) {
                let Some(old) = value else { continue };
                let row = || format!("merchant {}", m.imp_code);
                if let Some(new) = reseal(old, &row, what, served) {
                    let row = Condition::all().add(merchant::Column::Id.eq(m.id));
                    changed |=
                        replace_value::<merchant::Entity>(&self.db.write, column, row, old, new)
                            .await?
                            == 1;
                }
            }
            if changed {
                resealed.0 += 1;
            }
        }
        for k in billing_key::Entity::find().all(&self.db.read).await? {
            let row = || {
                format!(
                    "billing key of merchant {} for customer_uid {}",
                    merchant_of(k.merchant_id),
                    k.customer_uid
                )
            };
            // As the key check: a live instance needs live keys only.
            let needed = test_mode || !k.sandbox;
            if let Some(sealed) = reseal(&k.batch_key_sealed, &row, "batch key", needed) {
                let row = Condition::all().add(billing_key::Column::Id.eq(k.id));
                resealed.1 += replace_value::<billing_key::Entity>(
                    &self.db.write,
                    billing_key::Column::BatchKeySealed,
                    row,
                    &k.batch_key_sealed,
                    sealed,
                )
                .await? as usize;
            }
        }
        for t in access_token::Entity::find().all(&self.db.read).await? {
            if t.expires_at <= now {
                continue;
            }
            let row = || format!("access token of merchant {}", merchant_of(t.merchant_id));
            if let Some(sealed) = reseal(&t.token_sealed, &row, "token", false) {
                let row =
                    Condition::all().add(access_token::Column::TokenSha256.eq(&t.token_sha256));
                resealed.2 += replace_value::<access_token::Entity>(
                    &self.db.write,
                    access_token::Column::TokenSealed,
                    row,
                    &t.token_sealed,
                    sealed,
                )
                .await? as usize;
            }
        }
        (report.merchants, report.billing_keys, report.access_tokens) = resealed;
        report.hashes_under_old_keys = hashes_under_old_keys;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::{expiry_state, kcp_api_base, kcp_group_id, EXPIRY_WARNING_SECS};

    #[test]
    fn a_certificate_is_warned_about_once_expired_or_within_30_days_of_its_not_after() {
        let not_after = 1_782_606_877; // 2026-06-28T00:34:37Z, KCP's public test certificate's
        let day = 86_400;
        assert_eq!(
            expiry_state(not_after, not_after - EXPIRY_WARNING_SECS - 1),
            None
        );
        assert_eq!(
            expiry_state(not_after, not_after - EXPIRY_WARNING_SECS).as_deref(),
            Some("expires within 30 days (notAfter 2026-06-28T00:34:37Z)")
        );
        assert_eq!(
            expiry_state(not_after, not_after - day + 1).as_deref(),
            Some("expires within 1 day (notAfter 2026-06-28T00:34:37Z)")
        );
        for now in [not_after, not_after + 160 * day] {
            assert_eq!(
                expiry_state(not_after, now).as_deref(),
                Some("has expired (notAfter 2026-06-28T00:34:37Z): KCP may refuse its payments")
            );
        }
    }

    #[test]
    fn a_kcp_group_id_is_1_to_20_letters_and_digits() {
        for taken in ["A52Q71000489", "T00001000001", "a", "ABCDEFGHIJ0123456789"] {
            assert_eq!(kcp_group_id(taken).unwrap(), taken);
        }
        for refused in [
            "",
            " A52Q71000489",
            "A52Q7-1000489",
            "A52Q71000489\n",
            "ABCDEFGHIJ01234567890",
            "그룹아이디",
        ] {
            let err = kcp_group_id(refused).unwrap_err();
            assert!(
                matches!(&err, super::ServiceError::BadRequest(m) if m.contains("kcp_group_id")),
                "{refused:?}: {err}"
            );
        }
    }

    #[test]
    fn a_merchants_kcp_origin_is_stored_as_an_origin_and_https_unless_it_is_this_host() {
        for (url, stored) in [
            ("https://stg-spl.kcp.co.kr/", "https://stg-spl.kcp.co.kr"),
            (" https://STG-SPL.kcp.co.kr ", "https://stg-spl.kcp.co.kr"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://localhost:9000/", "http://localhost:9000"),
            ("http://[::1]:9000", "http://[::1]:9000"),
        ] {
            assert_eq!(kcp_api_base(url, true).unwrap(), stored, "{url}");
        }
        for url in [
            "http://stg-spl.kcp.co.kr",
            "ftp://127.0.0.1",
            "https://stg-spl.kcp.co.kr/gw/hub/v1/payment",
            "https://stg-spl.kcp.co.kr/?x=1",
            "https://user:pw@stg-spl.kcp.co.kr",
            "stg-spl.kcp.co.kr",
            "",
        ] {
            let err = kcp_api_base(url, true).unwrap_err().to_string();
            assert!(err.contains("kcp_api_base"), "{url}: {err}");
        }
    }

    #[test]
    fn kcps_production_hosts_are_refused_in_test_mode_only() {
        assert!(kcp_api_base("https://spl.kcp.co.kr", true).is_err());
        assert_eq!(
            kcp_api_base("https://spl.kcp.co.kr", false).unwrap(),
            "https://spl.kcp.co.kr"
        );
    }
}
