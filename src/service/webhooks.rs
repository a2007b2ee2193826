//! Webhook outbox: enqueue in the state change's transaction, deliver with retries.
//!
//! iamport calls the payment's `notice_url` (or the merchant's configured URL) after a payment
//! changes state (spec/iamport-v1.md §5). openport writes one `webhook_deliveries` row per target
//! URL in the SAME transaction as the change ([`Gateway::enqueue_webhook`]), so an event is
//! announced if and only if it was committed. Workers on any number of instances then claim due
//! rows with a lease ([`Gateway::claim_webhook`]) and POST them outside any transaction
//! ([`Gateway::send_webhook`]); `jobs::webhooks` schedules them.
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DbErr, Set};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{outbound, Gateway, ServiceError, ServiceResult};
use crate::store::entity::{merchant, payment, webhook_attempt, webhook_delivery};
use crate::store::merchants;
use crate::store::webhooks::{self as store, AttemptResult, DeliveryQuery, DueDelivery, LeftOut};

/// Minutes to wait after the 1st, 2nd, … failed attempt, counted from when it failed (its POST
/// ended, up to the 30 s timeout after it began). After the last one the delivery is `failed`
/// (6 attempts in all: PortOne V2's schedule 0, 1, 4, 16, 64, 256 min, spec §5).
pub const BACKOFF_MINUTES: [i64; 5] = [1, 4, 16, 64, 256];

/// How long one worker owns a claimed delivery: longer than the 30 s request timeout, so a lease
/// never expires while its POST can still be in flight.
const LEASE_SECS: i64 = 120;

/// After a database error between a claim and its POST, when the delivery is due again: soon,
/// for a passing error (a pool with no connection free, a database restart), but not at once,
/// so that an error that stays (a row the worker cannot read) is not claimed again in a loop.
const RETRY_AFTER_DB_ERROR_SECS: i64 = 10;

/// iamport's timeouts towards the merchant (spec §5).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// What is kept of a receiver's answer (it is the merchant's data, not ours).
const EXCERPT_CHARS: usize = 200;

/// Deliveries one instance POSTs at once.
pub const PARALLEL_DELIVERIES: usize = 16;

/// How long a replaced signing secret keeps signing beside the new one. Standard Webhooks makes
/// `webhook-signature` a list so that a secret can be rotated without downtime: the webhook is
/// "signed both using the current key, and using an old key (for a set period of time)". A day
/// covers a receiver that deploys its new key within working hours, and every retry of a
/// delivery queued before the change that is still due within it (retries are signed when sent).
pub const PREVIOUS_SECRET_SECS: i64 = 24 * 3600;

/// How a merchant wants webhook bodies encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookContentType {
    /// `application/json`
    Json,
    /// `application/x-www-form-urlencoded`
    Form,
}

impl WebhookContentType {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Form => "form",
        }
    }

    /// Unknown words fall back to JSON, iamport's default.
    pub fn from_db(s: &str) -> Self {
        match s {
            "form" => Self::Form,
            _ => Self::Json,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// A merchant's webhook configuration as the operator sees it: never the secret itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookSettings {
    pub merchant_id: i64,
    pub url: Option<String>,
    pub content_type: WebhookContentType,
    /// True when webhooks carry Standard Webhooks signature headers.
    pub signed: bool,
    /// While a replaced secret still signs beside the current one: until when (Unix seconds).
    /// Null when webhooks carry one signature.
    pub previous_secret_until: Option<i64>,
}

impl WebhookSettings {
    fn of(m: &merchant::Model, now: i64) -> Self {
        Self {
            merchant_id: m.id,
            url: m.webhook_url.clone(),
            content_type: WebhookContentType::from_db(&m.webhook_content_type),
            signed: m.webhook_secret_sealed.is_some(),
            previous_secret_until: previous_secret(m, now).map(|(_, until)| until),
        }
    }
}

/// The sealed secret a rotation replaced and until when it signs, while it still does at `now`
/// (and a current secret is set: turning signatures off ends it too). Past that it is never
/// opened again, so `openport reseal` and the startup key check leave it alone; the next PUT
/// clears it.
pub(crate) fn previous_secret(m: &merchant::Model, now: i64) -> Option<(&str, i64)> {
    let until = m
        .webhook_previous_secret_until
        .filter(|until| *until > now)?;
    m.webhook_secret_sealed.as_ref()?;
    Some((m.webhook_previous_secret_sealed.as_deref()?, until))
}

/// A delivery this instance holds the lease on, until [`Gateway::send_webhook`] records its
/// attempt. Only [`Gateway::claim_webhook`] makes one.
#[derive(Debug)]
pub struct ClaimedWebhook {
    id: i64,
    lease: i64,
}

/// A delivery with its attempts, oldest attempt first (operator history).
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery: webhook_delivery::Model,
    pub attempts: Vec<webhook_attempt::Model>,
}

/// The webhook body (spec §5): `cancellation_id` only when the event is a cancellation.
#[derive(Debug, Serialize)]
struct WebhookBody<'a> {
    imp_uid: &'a str,
    merchant_uid: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancellation_id: Option<&'a str>,
}

fn body_of(d: &webhook_delivery::Model) -> Result<String, String> {
    let body = WebhookBody {
        imp_uid: &d.imp_uid,
        merchant_uid: &d.merchant_uid,
        status: &d.status,
        cancellation_id: d.cancellation_id.as_deref(),
    };
    match WebhookContentType::from_db(&d.content_type) {
        WebhookContentType::Json => serde_json::to_string(&body).map_err(|e| e.to_string()),
        WebhookContentType::Form => serde_urlencoded::to_string(&body).map_err(|e| e.to_string()),
    }
}

/// Target URLs from a payment's `notice_url` column: a JSON array of strings (a bare string is
/// accepted too); blanks dropped, each in its [`target_url`] form, duplicates (in that form) kept
/// once, order kept.
fn notice_urls(column: Option<&str>) -> Vec<String> {
    let Some(raw) = column.map(str::trim).filter(|s| !s.is_empty()) else {
        return vec![];
    };
    let listed: Vec<String> = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Ok(serde_json::Value::String(s)) => vec![s],
        Ok(_) => vec![],
        Err(_) => vec![raw.to_string()],
    };
    let mut urls: Vec<String> = Vec::new();
    for u in listed {
        let u = target_url(u.trim());
        if !u.is_empty() && !urls.contains(&u) {
            urls.push(u);
        }
    }
    urls
}

/// A delivery's target as it is stored on its row and compared: the order key of a payment's
/// events to one URL (`store::webhooks` `no_older_pending`, `move_held_back`, the resend's
/// `newer_sent_or_queued`) and the test of whether a `notice_url` is the merchant's configured
/// URL (`to_merchant_url`). Kept as written, `https://h/x` and `https://H:443/x` were two queues:
/// the same receiver got a payment's events side by side, out of order, when its `notice_url`
/// and the merchant's setting (or two payments' steps) spelled it differently.
///
/// The URL as `url::Url` parses and writes it back: scheme and host lower-cased, the scheme's
/// default port dropped, an empty path made `/`, dot segments resolved, characters a URL may not
/// hold percent-encoded. That is exactly what the POST goes to (reqwest parses the string the
/// same way), so no receiver sees a difference. The path and query stay case-sensitive, and
/// `/x` and `/x/` stay two URLs: a server may answer them differently. Anything that is not an
/// absolute `http(s)` URL is kept as written (its row is `failed` at once and shows it).
///
/// Rows written by an older version are rewritten in this form once, by migration
/// `m20261221_000041_webhook_urls_normalised` (which spells the rule out again, as of its
/// writing): kept as written, a `paid` stored as `https://h` and a `cancelled` stored so too
/// were not seen by the resend of that `paid` to `https://h/` (review rN, F2).
pub(crate) fn target_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if crate::domain::payment::is_web_url(url) => parsed.into(),
        _ => url.to_string(),
    }
}

/// The HMAC key of a Standard Webhooks secret: base64, with or without the `whsec_` prefix, as
/// the standard's libraries decode it (a merchant verifies with `Webhook(secret)`). New secrets
/// must decode ([`standard_key`]); a secret stored before that rule that does not decode is used
/// as its UTF-8 bytes, as it was then.
fn signing_key(secret: &str) -> Vec<u8> {
    standard_key(secret).unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Bounds of a new secret's decoded key: Standard Webhooks asks for a random signing secret of
/// "at least 24 bytes (192 bits, 512 maximum)" (spec/standard-webhooks.md, signature scheme),
/// so its libraries and receivers may refuse keys outside them.
pub const SECRET_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

fn standard_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` (Standard Webhooks, spec §5).
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&signing_key(secret))
        .expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one `v1,…` signature per secret, space-separated, the current
/// secret's first (Standard Webhooks: receivers try each until one verifies).
pub fn signature_header<S: AsRef<str>>(
    secrets: &[S],
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    secrets
        .iter()
        .map(|s| sign(s.as_ref(), msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A target URL as the delivery history shows and keeps it: each query value and any password
/// replaced by `***`. iamport V1 webhooks are unsigned, so merchants often put a token of their
/// own in the `notice_url`'s query; the delivery keeps the whole URL (it is what every retry
/// POSTs to), but the attempts, kept for the retention, and the operator API never show it. A
/// URL that does not parse (one never sent, recorded `failed`) is shown up to its query.
pub fn shown_url(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once('?') {
            Some((before, _)) => format!("{before}?{MASK}"),
            None => url.to_string(),
        };
    };
    // Userinfo is Basic auth: a key may be the user name alone (`https://KEY@host/`, `KEY:@`).
    if !parsed.username().is_empty() {
        let _ = parsed.set_username(MASK);
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if parsed.query().is_some_and(|q| !q.is_empty()) {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for key in keys {
            query.append_pair(&key, MASK);
        }
        parsed.set_query(Some(&query.finish()));
    }
    parsed.to_string()
}

/// Where a merchant's webhooks go by default, and in which encoding.
struct MerchantTarget {
    url: Option<String>,
    content_type: WebhookContentType,
}

/// One client for all webhook POSTs: iamport's timeouts, no redirects (a redirected POST would
/// turn into a GET, a 3xx is not the 200 the spec asks for, and a redirect could lead past the
/// address check). Unless private targets are allowed, names resolve to public addresses only
/// (`outbound`).
fn http(private_targets: bool) -> &'static reqwest::Client {
    static CLIENTS: outbound::GuardedClients = outbound::GuardedClients::new();
    CLIENTS.get(private_targets, |b| {
        b.connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .user_agent(concat!("openport-webhook/", env!("CARGO_PKG_VERSION")))
    })
}

/// What one POST came to.
#[derive(Default)]
struct Sent {
    http_status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    duration_ms: i64,
    /// Not sent: the target is not a public address (`outbound`), by its literal address or by
    /// every address its name resolves to.
    refused: bool,
}

impl Sent {
    fn delivered(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }

    /// iamport retries on network errors and 5xx (spec §5); 408 and 429 say "later" too.
    /// Anything else (other 4xx, 3xx) will not change by retrying, and neither does a target
    /// refused as not public: it was retried six times over almost 6 hours to the same refusal
    /// (review rA).
    fn retryable(&self) -> bool {
        if self.refused {
            return false;
        }
        match self.http_status {
            None => true,
            Some(s) => s >= 500 || s == 408 || s == 429,
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of the answer, reading no more than needed.
async fn excerpt(mut res: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < EXCERPT_CHARS * 4 {
        match res.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&buf)
        .chars()
        .take(EXCERPT_CHARS)
        .collect();
    (!text.trim().is_empty()).then_some(text)
}

/// Describes a failed request without its URL (which may carry the merchant's own tokens).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "error reading the answer"
    } else {
        "request error"
    };
    // The innermost cause (e.g. "Connection refused"); reqwest's own message names the URL.
    let mut detail = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = Some(s.to_string());
        source = s.source();
    }
    let text = match detail {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_string(),
    };
    text.chars().take(EXCERPT_CHARS).collect()
}

impl Gateway {
    /// Writes the webhook(s) announcing `status` of `payment` into the outbox, inside the caller's
    /// transaction `txn` (the one that commits the state change), so the event is delivered if
    /// and only if the change is committed. No network I/O happens here.
    ///
    /// Targets are resolved now: the payment's `notice_url` when it lists any URL (the merchant's
    /// default is then NOT called, spec §5), else the merchant's `webhook_url`, else nothing is
    /// written. One row per URL. The caller decides which changes fire (spec §5: paid, vbank
    /// `ready`, vbank deposit, scheduled `paid`/`failed`, admin cancel, API cancel with
    /// `enable_webhook`); `cancellation_id` goes with cancellations.
    pub async fn enqueue_webhook(
        &self,
        txn: &impl ConnectionTrait,
        payment: &payment::Model,
        status: &str,
        cancellation_id: Option<&str>,
    ) -> Result<(), DbErr> {
        // Read through the caller's transaction: never a second pooled connection while it
        // holds one (`cached_merchant`).
        let target = self.merchant_target(txn, payment).await?;
        let rows = self.webhook_rows(&target, payment, status, cancellation_id);
        if !rows.is_empty() {
            self.webhooks_written.notify_one();
        }
        for row in rows {
            store::insert_delivery(txn, row).await?;
        }
        Ok(())
    }

    /// The outbox rows announcing `status` of `payment`: for a caller that writes them together
    /// with its change (`store::payments::conclude_charge`).
    pub async fn webhooks_announcing(
        &self,
        payment: &payment::Model,
        status: &str,
    ) -> Result<Vec<webhook_delivery::ActiveModel>, DbErr> {
        let target = self.merchant_target(&self.db.read, payment).await?;
        let rows = self.webhook_rows(&target, payment, status, None);
        if !rows.is_empty() {
            self.webhooks_written.notify_one();
        }
        Ok(rows)
    }

    /// The merchant's webhook settings from the merchant row cache (`auth`), not a database read
    /// per payment: a payment's outcome is written with one statement on PostgreSQL, and this read
    /// was a round trip of its own. A change made on this instance applies at once (the cache is
    /// refreshed by [`Self::set_webhook_settings`]); one made on another instance on PostgreSQL as
    /// soon as its announcement arrives (`jobs::merchant_changes`), at the latest once the cached
    /// row is a minute old. An event resolved here before that uses the old settings: with no URL
    /// before, it writes no webhook (docs/webhooks.md).
    ///
    /// A row not cached is read through `db`: the caller's transaction when it has one.
    async fn merchant_target(
        &self,
        db: &impl ConnectionTrait,
        payment: &payment::Model,
    ) -> Result<MerchantTarget, DbErr> {
        let m = self
            .cached_merchant(db, payment.merchant_id)
            .await?
            .ok_or_else(|| {
                DbErr::RecordNotFound(format!("merchant {} of a payment", payment.merchant_id))
            })?;
        Ok(MerchantTarget {
            url: m.webhook_url.clone(),
            content_type: WebhookContentType::from_db(&m.webhook_content_type),
        })
    }

    /// The outbox rows [`Self::enqueue_webhook`] writes.
    fn webhook_rows(
        &self,
        merchant: &MerchantTarget,
        payment: &payment::Model,
        status: &str,
        cancellation_id: Option<&str>,
    ) -> Vec<webhook_delivery::ActiveModel> {
        let merchant_url = merchant
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(target_url);
        let mut urls = notice_urls(payment.notice_url.as_deref());
        if urls.is_empty() {
            urls.extend(merchant_url.clone());
        }
        let now = self.clock.unix();
        let content_type = merchant.content_type;
        urls.into_iter()
            .map(|url| {
                // An unusable notice_url is kept (failed at once) so the operator can see why the
                // merchant heard nothing.
                let usable = crate::domain::payment::is_web_url(&url);
                // A notice_url naming the merchant's own URL goes there all the same: the slot
                // kept for that URL may carry it (jobs::webhooks). Both in their `target_url`
                // form, however each was spelled.
                let to_merchant_url = merchant_url.as_deref() == Some(url.as_str());
                webhook_delivery::ActiveModel {
                    // Random, stored with the row: the `webhook-id` of every attempt and resend
                    // of this delivery, never a row id another event may get again.
                    message_id: Set(webhook_delivery::new_message_id()),
                    merchant_id: Set(payment.merchant_id),
                    imp_uid: Set(payment.imp_uid.clone()),
                    merchant_uid: Set(payment.merchant_uid.clone()),
                    status: Set(status.to_string()),
                    cancellation_id: Set(cancellation_id.map(str::to_string)),
                    url: Set(url),
                    to_merchant_url: Set(to_merchant_url),
                    content_type: Set(content_type.as_db().to_string()),
                    state: Set(if usable { "pending" } else { "failed" }.into()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(0),
                    last_http_status: Set(None),
                    last_error: Set((!usable).then(|| "not an absolute http(s) URL".into())),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Sets a merchant's default webhook URL (None = no default), body encoding and signing
    /// secret (None = unsigned, as iamport V1). The whole setting is replaced.
    pub async fn set_webhook_settings(
        &self,
        merchant_id: i64,
        url: Option<String>,
        content_type: WebhookContentType,
        secret: Option<SecretString>,
    ) -> ServiceResult<WebhookSettings> {
        let url = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        if let Some(u) = &url {
            if !crate::domain::payment::is_web_url(u) {
                return Err(ServiceError::BadRequest(
                    "webhook url은 http(s)로 시작하는 절대 URL이어야 합니다.".into(),
                ));
            }
        }
        let secret = secret.filter(|s| !s.expose_secret().is_empty());
        if let Some(s) = &secret {
            if standard_key(s.expose_secret()).is_none_or(|k| !SECRET_KEY_BYTES.contains(&k.len()))
            {
                return Err(ServiceError::BadRequest(
                    "webhook secret은 24~64바이트 키를 base64로 나타낸 값이어야 합니다. (whsec_ 접두어 허용)".into(),
                ));
            }
        }
        let current = merchants::by_id(&self.db.write, merchant_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("가맹점을 찾을 수 없습니다.".into()))?;
        let now = self.clock.unix();
        let (secret_sealed, previous_secret) = match &secret {
            Some(new) => {
                let (sealed, previous) = self.rotate_secret(&current, new, now);
                (Some(sealed), previous)
            }
            None => (None, None),
        };
        let m = store::set_merchant_settings(
            &self.db.write,
            merchant_id,
            store::MerchantWebhookSettings {
                url,
                content_type: content_type.as_db(),
                secret_sealed,
                previous_secret,
            },
        )
        .await?;
        let settings = WebhookSettings::of(&m, now);
        self.remember_merchant(m).await;
        Ok(settings)
    }

    /// The sealed secret to store when `new` is set on `m`, and the previous one that keeps
    /// signing beside it. The same key set again (a PUT that changes only the URL sends it
    /// again) leaves the secrets, and a rotation under way, as they are; a different key makes
    /// the current secret the previous one for [`PREVIOUS_SECRET_SECS`] (the one it replaced, if
    /// any, stops signing). A current secret no master key opens is kept as previous all the
    /// same: it is skipped, with a warning, when webhooks are signed.
    fn rotate_secret(
        &self,
        m: &merchant::Model,
        new: &SecretString,
        now: i64,
    ) -> (String, Option<(String, i64)>) {
        let Some(current) = &m.webhook_secret_sealed else {
            return (self.secrets.seal(new.expose_secret().as_bytes()), None);
        };
        let same = self
            .secrets
            .open_string(current)
            .map(SecretString::from)
            .is_ok_and(|old| {
                let (old, new) = (
                    signing_key(old.expose_secret()),
                    signing_key(new.expose_secret()),
                );
                old.ct_eq(&new).into()
            });
        if same {
            let previous = previous_secret(m, now).map(|(p, until)| (p.to_string(), until));
            return (current.clone(), previous);
        }
        (
            self.secrets.seal(new.expose_secret().as_bytes()),
            Some((current.clone(), now + PREVIOUS_SECRET_SECS)),
        )
    }

    /// One run over what is due now: claims up to `limit` deliveries (each exactly once across
    /// all instances) and POSTs them, at most [`PARALLEL_DELIVERIES`] at a time, returning how
    /// many this instance attempted. Tests and tools step deliveries with it; `openport serve`
    /// runs `jobs::webhooks`, which claims batches continuously ([`Self::claim_due_webhooks`])
    /// for [`Self::send_webhook`] and caps each merchant's share.
    pub async fn deliver_due_webhooks(&self, limit: u64) -> ServiceResult<usize> {
        // The claim refuses while the clock is off (or this instance is older than its
        // database); this only spares the listing.
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(0);
        }
        // A delivery that ends lets the next event of its payment to its URL go
        // (`store::webhooks` `no_older_pending`): that one is due now too, so the run lists
        // again until a round finds nothing it has not attempted yet.
        let mut tried = std::collections::HashSet::new();
        let mut attempted = 0;
        while (tried.len() as u64) < limit {
            let due: Vec<DueDelivery> = self
                .due_webhooks(limit)
                .await?
                .into_iter()
                .filter(|d| !tried.contains(&d.id))
                .take(usize::try_from(limit).unwrap_or(usize::MAX) - tried.len())
                .collect();
            if due.is_empty() {
                break;
            }
            let mut running = tokio::task::JoinSet::new();
            for d in due {
                while running.len() >= PARALLEL_DELIVERIES {
                    attempted += joined(running.join_next().await);
                }
                tried.insert(d.id);
                let gateway = self.clone();
                running.spawn(async move { gateway.deliver_one(d.id).await });
            }
            while let Some(done) = running.join_next().await {
                attempted += joined(Some(done));
            }
        }
        Ok(attempted)
    }

    /// Up to `limit` due deliveries of the merchants this instance runs (its mode's: a live
    /// merchant's receivers are held to the live private-address rule), oldest due first.
    /// Listing claims nothing: another instance may take any of them first.
    pub async fn due_webhooks(&self, limit: u64) -> ServiceResult<Vec<DueDelivery>> {
        Ok(store::due_deliveries(
            &self.db.read,
            self.clock.unix(),
            limit,
            self.served_merchants(),
        )
        .await?)
    }

    /// Claims up to `limit` due deliveries of the merchants this instance runs, none of those
    /// `left_out`, oldest due first, in one statement (on PostgreSQL skipping rows another
    /// instance is claiming: `store::webhooks::claim_due_deliveries`). Each comes with its
    /// merchant and whether it goes to the merchant's configured URL. Nothing while this host's
    /// clock is off the database's (see [`Self::claim_webhook`]).
    pub async fn claim_due_webhooks(
        &self,
        limit: u64,
        left_out: LeftOut<'_>,
    ) -> ServiceResult<Vec<(DueDelivery, ClaimedWebhook)>> {
        if self.clock_is_skewed() || self.is_outdated() || limit == 0 {
            return Ok(vec![]);
        }
        let now = self.clock.unix();
        let lease = now + LEASE_SECS;
        let claimed = store::claim_due_deliveries(
            &self.db.write,
            now,
            lease,
            limit,
            self.served_merchants(),
            left_out,
        )
        .await?;
        Ok(claimed
            .into_iter()
            .map(|d| (d, ClaimedWebhook { id: d.id, lease }))
            .collect())
    }

    /// Gives claimed deliveries back unsent: due again at once, for any instance.
    pub async fn release_webhooks(&self, claims: Vec<ClaimedWebhook>) -> ServiceResult<()> {
        // One claim statement made them all, so they share its lease.
        let Some(lease) = claims.first().map(|c| c.lease) else {
            return Ok(());
        };
        let ids: Vec<i64> = claims.iter().map(|c| c.id).collect();
        store::release_deliveries(&self.db.write, &ids, lease, 0).await?;
        Ok(())
    }

    /// Claims and POSTs one delivery. Ok(false) when another worker holds it or it is not due.
    pub async fn deliver_one(&self, id: i64) -> ServiceResult<bool> {
        let Some(claim) = self.claim_webhook(id).await? else {
            return Ok(false);
        };
        self.send_webhook(claim).await?;
        Ok(true)
    }

    /// Takes the lease on a due delivery for `LEASE_SECS`; None when another worker holds it,
    /// it is no longer due, or this host's clock is off the database's. Every path that POSTs a
    /// webhook claims it here.
    pub async fn claim_webhook(&self, id: i64) -> ServiceResult<Option<ClaimedWebhook>> {
        // As the scheduler: with this host's clock off the database's, a delivery whose lease
        // another instance holds could look expired and be sent twice. An instance older than its
        // database sends nothing (service/schema_check.rs).
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(None);
        }
        let now = self.clock.unix();
        let lease = now + LEASE_SECS;
        if !store::claim_delivery(&self.db.write, id, now, lease).await? {
            return Ok(None);
        }
        Ok(Some(ClaimedWebhook { id, lease }))
    }

    /// POSTs a claimed delivery and records the attempt, while the claim's lease still holds.
    /// Ok(true) when the delivery is done with (`delivered` or `failed`): the next event of its
    /// payment to its URL, which waited for it, may be due now.
    pub async fn send_webhook(&self, claim: ClaimedWebhook) -> ServiceResult<bool> {
        let ClaimedWebhook { id, lease } = claim;
        // A database error before the POST (a pool with no connection free, a restart) gives the
        // claim back, due again in a few seconds instead of when its lease runs out. If the
        // release fails too, the lease still ends it: late, never lost.
        let (delivery, merchant, attempted_at) = match self.ready_to_send(id, lease).await {
            Ok(Some(ready)) => ready,
            Ok(None) => return Ok(false),
            Err(e) => {
                let free_from = self.clock.unix() + RETRY_AFTER_DB_ERROR_SECS;
                let released =
                    store::release_deliveries(&self.db.write, &[id], lease, free_from).await;
                if let Err(release) = released {
                    tracing::warn!(
                        delivery_id = id,
                        error = %release,
                        "webhook claim not given back after a database error; due again when its lease ends"
                    );
                }
                return Err(e);
            }
        };
        let sent = match self.post(&delivery, &merchant, attempted_at).await {
            Ok(sent) => sent,
            Err(why) => Sent {
                error: Some(why),
                ..Sent::default()
            },
        };
        // The wait before a retry runs from the failure, not from the attempt's start: counted
        // from the start, a receiver that timed out after 30 s was tried again 30 s later, not
        // after the minute the schedule promises (review r4, finding 3).
        let finished_at = self.clock.unix();
        let attempts = delivery.attempts + 1;
        let (state, next_attempt_at) = if sent.delivered() {
            ("delivered", attempted_at)
        } else if let Some(minutes) = BACKOFF_MINUTES
            .get(usize::try_from(delivery.attempts).unwrap_or(0))
            .filter(|_| sent.retryable())
        {
            ("pending", finished_at + 60 * minutes)
        } else {
            ("failed", attempted_at)
        };
        tracing::info!(
            delivery_id = delivery.id,
            imp_uid = %delivery.imp_uid,
            attempt = attempts,
            http_status = sent.http_status,
            state,
            "webhook attempt"
        );
        if state == "failed" {
            // Given up for good: the merchant lost a notice, which only an operator can make up
            // for (a resend, docs/webhooks.md); an ERROR, as docs/operations.md "Logs" promises
            // of a webhook endpoint failing for good.
            tracing::error!(
                delivery_id = delivery.id,
                imp_uid = %delivery.imp_uid,
                "webhook delivery given up, the merchant was not notified; resend it once its endpoint works (POST /admin/webhooks/{{id}}/resend, refused once a newer event of the payment reached that URL; docs/webhooks.md)"
            );
        }

        let txn = self.db.write.begin().await?;
        store::insert_attempt(
            &txn,
            webhook_attempt::ActiveModel {
                delivery_id: Set(delivery.id),
                url: Set(shown_url(&delivery.url)),
                attempted_at: Set(attempted_at),
                http_status: Set(sent.http_status.map(i32::from)),
                error: Set(sent.error.clone()),
                response_excerpt: Set(sent.excerpt.clone()),
                duration_ms: Set(sent.duration_ms),
                ..Default::default()
            },
        )
        .await?;
        let kept = store::finish_attempt(
            &txn,
            delivery.id,
            lease,
            AttemptResult {
                state,
                attempts,
                next_attempt_at,
                last_http_status: sent.http_status.map(i32::from),
                last_error: sent.error.clone(),
                now: finished_at,
            },
        )
        .await?;
        if kept {
            // The payment's next events to this URL follow this one in the due index.
            let until = (state == "pending").then_some(next_attempt_at);
            store::move_held_back(
                &txn,
                delivery.id,
                &delivery.imp_uid,
                &delivery.url,
                until,
                finished_at,
            )
            .await?;
        }
        txn.commit().await?;
        if !kept {
            tracing::warn!(
                delivery_id = delivery.id,
                "webhook lease expired during the attempt"
            );
        }
        Ok(kept && state != "pending")
    }

    /// The claimed delivery, its merchant and the attempt's time, when the claim still holds with
    /// enough lease left for a POST; None when it must not be sent (given back if the lease is
    /// short).
    async fn ready_to_send(
        &self,
        id: i64,
        lease: i64,
    ) -> ServiceResult<Option<(webhook_delivery::Model, merchant::Model, i64)>> {
        let delivery = store::delivery_by_id(&self.db.write, id)
            .await?
            .ok_or_else(|| ServiceError::Internal("webhook delivery vanished".into()))?;
        // The lease is checked once more before the POST, which nothing can take back: a worker
        // that stalled between its claim and here (a paused VM, a starved runtime) may have lost
        // the row to another instance, which sent it; and with less of the lease left than a POST
        // may take, the lease could run out in flight and another instance send it again.
        let attempted_at = self.clock.unix();
        if delivery.lease_until != lease || delivery.state != "pending" {
            tracing::warn!(
                delivery_id = delivery.id,
                "webhook not sent: another worker took it over after this one's lease ran out"
            );
            return Ok(None);
        }
        if attempted_at + TOTAL_TIMEOUT.as_secs() as i64 >= lease {
            tracing::warn!(
                delivery_id = delivery.id,
                "webhook not sent: too little of its lease left for a POST; given back"
            );
            store::release_deliveries(&self.db.write, &[id], lease, 0).await?;
            return Ok(None);
        }
        let merchant = merchants::by_id(&self.db.read, delivery.merchant_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("merchant of a webhook vanished".into()))?;
        Ok(Some((delivery, merchant, attempted_at)))
    }

    /// One POST. Err only when the request could not even be built (bad secret, bad body).
    async fn post(
        &self,
        d: &webhook_delivery::Model,
        m: &merchant::Model,
        timestamp: i64,
    ) -> Result<Sent, String> {
        let private_targets = self.settings.webhook_private_targets;
        if !private_targets {
            if let Err(why) = outbound::refuse_private_literal(&d.url) {
                return Ok(Sent {
                    error: Some(why),
                    refused: true,
                    ..Sent::default()
                });
            }
        }
        let body = body_of(d)?;
        let content_type = WebhookContentType::from_db(&d.content_type);
        let mut req = http(private_targets)
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, content_type.mime());
        if let Some(sealed) = &m.webhook_secret_sealed {
            let mut secrets = vec![SecretString::from(
                self.secrets
                    .open_string(sealed)
                    .map_err(|e| format!("webhook secret: {e}"))?,
            )];
            if let Some((previous, _)) = previous_secret(m, timestamp) {
                // Only a courtesy to receivers not switched yet: the webhook goes out signed
                // with the current secret either way.
                match self.secrets.open_string(previous) {
                    Ok(p) => secrets.push(SecretString::from(p)),
                    Err(e) => {
                        tracing::warn!(merchant_id = m.id, "previous webhook secret not used: {e}")
                    }
                }
            }
            let id = &d.message_id;
            let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
            let signature = signature_header(&exposed, id, timestamp, &body);
            req = req
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
        }
        let started = Instant::now();
        let result = req.body(body).send().await;
        let sent = match result {
            Ok(res) => {
                let status = res.status().as_u16();
                Sent {
                    http_status: Some(status),
                    excerpt: excerpt(res).await,
                    ..Sent::default()
                }
            }
            Err(e) => Sent {
                error: Some(describe(&e)),
                refused: outbound::is_not_public(&e),
                ..Sent::default()
            },
        };
        Ok(Sent {
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            ..sent
        })
    }

    /// Deletes up to `limit` finished deliveries whose last attempt is more than
    /// `retention_days` old, with their attempts; 0 days keeps everything. Returns how many
    /// deliveries went. Any number of instances may run it at once.
    pub async fn prune_webhook_history(
        &self,
        retention_days: u64,
        limit: u64,
    ) -> ServiceResult<u64> {
        let Some(before) = self.retention_cutoff(retention_days) else {
            return Ok(0);
        };
        Ok(store::prune_finished(&self.db.write, before, limit).await?)
    }

    /// The Unix time before which rows `retention_days` old go; None when 0 keeps everything, and
    /// on an instance older than its database, which deletes nothing (service/schema_check.rs):
    /// the one gate of both prunings, webhook history and KCP notifications.
    pub(crate) fn retention_cutoff(&self, retention_days: u64) -> Option<i64> {
        if retention_days == 0 || self.is_outdated() {
            return None;
        }
        let age = i64::try_from(retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        Some(self.clock.unix().saturating_sub(age))
    }

    /// Operator resend: the delivery is due now with a fresh retry schedule. Refused while one of
    /// its attempts is in flight (`store::requeue`): the operator asks again once it is done.
    ///
    /// A delivery to the merchant's configured URL (`to_merchant_url`) goes to the merchant's
    /// current URL in its current content type (signed, as every attempt, with its current
    /// secret): a wrong or moved URL is the usual reason a webhook is given up, and the give-up's
    /// ERROR says to resend once the endpoint works; resent to the URL stored on the row, it
    /// could never reach the corrected one (review rF, F2). A `notice_url`'s keeps its URL (the
    /// payment named it), and so does one whose merchant has no URL now.
    ///
    /// Refused while a newer event of the payment has been delivered to the URL it would go to, or
    /// is pending there (`store::requeue`): sent after it, this older one would move the
    /// receiver's order back, e.g. `paid` after `cancelled` once the URL was corrected and the
    /// cancel reached the new one (review rG, F2). Not for the newer pending events a pending
    /// delivery holds back on its own URL: its retry is brought forward and they follow it, in
    /// order (review rN, F1).
    pub async fn resend_webhook(&self, id: i64) -> ServiceResult<DeliveryRecord> {
        // Judged by a clock that is off, a worker's lease could look run out while it is sending.
        if self.clock_is_skewed() {
            return Err(ServiceError::Refused(
                "이 서버의 시계가 데이터베이스와 맞지 않아 지금은 재전송할 수 없습니다.".into(),
            ));
        }
        let delivery = self.webhook_delivery(id).await?.delivery;
        let merchant = if delivery.to_merchant_url {
            merchants::by_id(&self.db.write, delivery.merchant_id).await?
        } else {
            None
        };
        // The merchant's current URL in the form new deliveries store (`target_url`), so the
        // resend joins the queue of the payment's events to it.
        let retarget_url = merchant.as_ref().and_then(|m| {
            let url = m
                .webhook_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())?;
            Some((
                target_url(url),
                WebhookContentType::from_db(&m.webhook_content_type).as_db(),
            ))
        });
        let retarget = retarget_url
            .as_ref()
            .map(|(url, content_type)| (url.as_str(), *content_type));
        if !store::requeue(&self.db.write, id, self.clock.unix(), retarget).await? {
            let url = retarget.map_or(delivery.url.as_str(), |(url, _)| url);
            // As the row is now: the refusal may have been its lease.
            let current = self.webhook_delivery(id).await?.delivery;
            let states = store::refusing_states(&current, url);
            let newer = store::newer_sent_or_queued_than(
                &self.db.write,
                id,
                &delivery.imp_uid,
                url,
                states,
            )
            .await?;
            if let Some(newer) = newer {
                return Err(ServiceError::Refused(format!(
                    "이 결제의 더 최근 웹훅(id: {}, status: {}, state: {})이 같은 URL로 이미 전송되었거나 전송을 기다리고 있어 재전송하지 않습니다: 수신측은 결제의 더 최근 상태를 이미 받았거나 곧 받습니다. 현재 상태는 GET /payments/{}로 확인할 수 있습니다. (재전송을 요청한 id: {id})",
                    newer.id, newer.status, newer.state, delivery.imp_uid
                )));
            }
            let delivery = self.webhook_delivery(id).await?;
            return Err(ServiceError::Refused(format!(
                "웹훅이 지금 전송 중입니다. 전송이 끝난 뒤 다시 요청해 주세요. (id: {}, 임대 만료: {})",
                delivery.delivery.id, delivery.delivery.lease_until
            )));
        }
        self.webhook_delivery(id).await
    }

    pub async fn webhook_delivery(&self, id: i64) -> ServiceResult<DeliveryRecord> {
        let delivery = store::delivery_by_id(&self.db.write, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("웹훅 전송 내역을 찾을 수 없습니다.".into()))?;
        let attempts = store::attempts_of(&self.db.write, &[id]).await?;
        Ok(DeliveryRecord { delivery, attempts })
    }

    /// Delivery history, newest first, each with its attempts.
    pub async fn webhook_history(&self, q: &DeliveryQuery) -> ServiceResult<Vec<DeliveryRecord>> {
        let list = store::deliveries(&self.db.read, q).await?;
        let ids: Vec<i64> = list.iter().map(|d| d.id).collect();
        let mut attempts = store::attempts_of(&self.db.read, &ids).await?;
        Ok(list
            .into_iter()
            .map(|delivery| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut attempts)
                    .into_iter()
                    .partition(|a| a.delivery_id == delivery.id);
                attempts = rest;
                DeliveryRecord {
                    delivery,
                    attempts: mine,
                }
            })
            .collect())
    }

    pub async fn webhook_settings(&self, merchant_id: i64) -> ServiceResult<WebhookSettings> {
        let m = merchants::by_id(&self.db.read, merchant_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("가맹점을 찾을 수 없습니다.".into()))?;
        Ok(WebhookSettings::of(&m, self.clock.unix()))
    }
}

/// 1 when a joined delivery task made an attempt; errors are logged once here.
fn joined(done: Option<Result<ServiceResult<bool>, tokio::task::JoinError>>) -> usize {
    match done {
        Some(Ok(Ok(true))) => 1,
        Some(Ok(Ok(false))) | None => 0,
        Some(Ok(Err(e))) => {
            tracing::error!("webhook delivery: {e}");
            0
        }
        Some(Err(e)) => {
            tracing::error!("webhook delivery task: {e}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_url_column_lists_each_url_once_and_drops_blanks() {
        assert_eq!(
            notice_urls(Some(
                r#"["https://a.example/h", " ", "https://a.example/h", "HTTPS://A.example:443/h", "https://b.example"]"#
            )),
            vec!["https://a.example/h", "https://b.example/"],
            "one URL however it is spelled"
        );
        assert_eq!(notice_urls(Some("[]")), Vec::<String>::new());
        assert_eq!(notice_urls(None), Vec::<String>::new());
        assert_eq!(
            notice_urls(Some("https://plain.example/x")),
            vec!["https://plain.example/x"]
        );
    }

    #[test]
    fn a_cancellation_body_carries_its_cancellation_id_in_json_and_form() {
        let mut d = webhook_delivery::Model {
            id: 1,
            message_id: "msg_1".into(),
            merchant_id: 1,
            imp_uid: "imp_1".into(),
            merchant_uid: "order 1&2".into(),
            status: "cancelled".into(),
            cancellation_id: Some("c1".into()),
            url: "http://x".into(),
            to_merchant_url: true,
            content_type: "json".into(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: 0,
            lease_until: 0,
            last_http_status: None,
            last_error: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(
            body_of(&d).unwrap(),
            r#"{"imp_uid":"imp_1","merchant_uid":"order 1&2","status":"cancelled","cancellation_id":"c1"}"#
        );
        d.content_type = "form".into();
        d.cancellation_id = None;
        assert_eq!(
            body_of(&d).unwrap(),
            "imp_uid=imp_1&merchant_uid=order+1%262&status=cancelled"
        );
    }

    #[test]
    fn a_target_url_is_lower_cased_without_its_default_port_and_keeps_its_path_as_written() {
        for (url, target) in [
            ("https://H/x", "https://h/x"),
            ("https://H:443/x", "https://h/x"),
            (
                "HTTP://Shop.Example:80/Hook?Token=A",
                "http://shop.example/Hook?Token=A",
            ),
            ("http://shop.example:8080", "http://shop.example:8080/"),
            ("https://shop.example:80/x", "https://shop.example:80/x"),
            ("https://shop.example/x/", "https://shop.example/x/"),
            ("https://shop.example/X", "https://shop.example/X"),
            ("https://shop.example/a/../x", "https://shop.example/x"),
            // Not an absolute http(s) URL: kept, and shown, as written (failed at once).
            ("ftp://Shop.example/x", "ftp://Shop.example/x"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(target_url(url), target, "{url}");
            assert_eq!(target_url(target), target, "{target} is its own form");
            assert_eq!(
                migration::webhook_url_stored_form(url),
                target,
                "the migration that rewrote older rows agrees: {url}"
            );
        }
    }

    #[test]
    fn a_signature_matches_the_standard_webhooks_test_vector() {
        // https://github.com/standard-webhooks/standard-webhooks (libraries' shared test vector).
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_shown_url_masks_each_query_value_and_the_user_info_and_keeps_the_rest() {
        for (url, shown) in [
            (
                "https://shop.example/hook?token=s3cret&shop=1",
                "https://shop.example/hook?token=***&shop=***",
            ),
            (
                "https://user:pw@shop.example:8443/a/b",
                "https://***:***@shop.example:8443/a/b",
            ),
            ("https://shop.example/hook", "https://shop.example/hook"),
            // A key as the user name alone is Basic auth's secret as much as a password.
            (
                "https://KEY123@shop.example/hook",
                "https://***@shop.example/hook",
            ),
            (
                "https://KEY123:@shop.example/hook",
                "https://***@shop.example/hook",
            ),
            ("http://127.0.0.1:9/h?", "http://127.0.0.1:9/h?"),
            (
                "https://shop.example/h?flag",
                "https://shop.example/h?flag=***",
            ),
            ("not a url?token=s3cret", "not a url?***"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
        // Showing a shown URL again changes nothing (rows recorded before and after).
        let once = shown_url("https://shop.example/hook?token=s3cret");
        assert_eq!(shown_url(&once), once);
    }

    #[test]
    fn only_network_errors_5xx_408_and_429_are_retried() {
        let s = |http_status| Sent {
            http_status,
            ..Sent::default()
        };
        assert!(s(None).retryable());
        assert!(s(Some(500)).retryable());
        assert!(s(Some(503)).retryable());
        assert!(s(Some(429)).retryable());
        assert!(s(Some(408)).retryable());
        assert!(!s(Some(400)).retryable());
        assert!(!s(Some(404)).retryable());
        assert!(!s(Some(302)).retryable());
        assert!(s(Some(200)).delivered() && s(Some(204)).delivered());
        let refused = Sent {
            error: Some("refused: 10.0.0.1 is not a public address".into()),
            refused: true,
            ..Sent::default()
        };
        assert!(!refused.retryable());
    }
}
