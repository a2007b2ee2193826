//! Typed configuration: defaults → optional TOML file → environment.
//!
//! Environment names: `OPENPORT_*` with `__` for nesting (e.g. `OPENPORT_KCP__TIMEOUT_MS`), plus
//! `DATABASE_URL` and the seed documents' single-merchant KCP names (`KCP_SITE_CD`, `KCP_CERT_INFO`,
//! `KCP_PAYMENT_URL`, `KCP_REGISTER_URL`, `KCP_PRIVATE_KEY_PATH`, `KCP_PRIVATE_KEY_PASSWORD`, `KCP_API_BASE`,
//! `KCP_GROUP_ID`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::kcp_origin::{self, OriginError};
use crate::net::{AddressList, BadAddress};

mod raw_env;
pub use raw_env::LoadError;

/// The most PostgreSQL connections `database_pool_size` may ask for.
pub const MAX_DATABASE_POOL_SIZE: u32 = 1000;

/// The shortest `kcp.timeout_ms`. A KCP call that times out is an unknown outcome: the buyer may
/// have been charged while the merchant is told "being checked", and the inquiries that settle
/// it time out alike. 0 (hoping for "no timeout") failed every call before it was sent, and 30
/// (meant as seconds) cut off calls KCP went on to approve; KCP takes longer than this.
pub const MIN_KCP_TIMEOUT_MS: u64 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// `sqlite://…` (default, embedded) or `postgres://…`.
    pub database_url: String,
    /// PostgreSQL connections one instance's pool opens at most (SQLite uses one writer and its
    /// own readers). Each `serve` also holds one connection outside the pool for as long as it
    /// runs (the merchant-change `LISTEN`, jobs/merchant_changes.rs) and one more while it starts
    /// (the startup lock, store/startup_lock.rs). Instances sharing a server must together stay
    /// under what it lets their role open: `max_connections` (100 by default) less
    /// `superuser_reserved_connections` (3) unless the role is a superuser, so 97. Three
    /// instances at the default 32 take 3 × (32 + 1) = 99, past it: give each fewer, leaving
    /// room for an operator command's own pool and a restarting instance's startup lock.
    pub database_pool_size: u32,
    /// Test mode: payments are `sandbox: true`, KCP's test URLs (or the embedded sandbox) are used,
    /// and an empty database gets the documented demo merchant.
    pub test_mode: bool,
    /// Token that authenticates operator endpoints (`/admin/*`, cross-merchant queries).
    #[serde(skip_serializing)]
    pub admin_token: Option<SecretString>,
    /// Base64 of 32 bytes: seals KCP private keys (AES-256-GCM) and keys the imp_secret hash.
    /// Required when test mode is off.
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    /// Old master keys still accepted while rotating (comma-separated base64); see
    /// `service::secrets` and `openport reseal`.
    #[serde(skip_serializing)]
    pub previous_master_keys: Option<SecretString>,
    /// Reverse proxies in front of openport (addresses or CIDR blocks, commas between): a request
    /// from one of them is taken to come from the last address its `X-Forwarded-For` names that is
    /// not itself a trusted proxy. Unset: none, and `X-Forwarded-For` is ignored (a client could
    /// write anything there).
    pub trusted_proxies: Option<String>,
    /// The URL buyers' browsers (and KCP's window) reach openport at, e.g.
    /// `https://pay.example.com` or `https://example.com/pay`: the base of `Ret_URL` and the
    /// checkout hand-off URL. Unset: taken from each request's `Host` (and `X-Forwarded-Proto`
    /// from a trusted proxy), which outside test mode is done only for a loopback `Host`
    /// (docs/operations.md "Public URL").
    pub public_url: Option<String>,
    pub kcp: KcpSettings,
    pub sandbox: SandboxSettings,
    pub resolver: ResolverSettings,
    pub scheduler: SchedulerSettings,
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub checkout: CheckoutSettings,
    /// `json` for production log lines, `pretty` for humans.
    pub log_format: String,
    /// Whether this process runs the background jobs: the unknown-outcome resolver, the scheduler
    /// and webhook delivery. Off only for operator commands and tests, which drive them
    /// themselves. Neither the file nor the environment sets it: an instance without them serves
    /// payments whose unknown outcomes, due schedules and webhooks then wait for another
    /// instance, or for ever when it is alone (which `resolver.interval_ms = 0` did unannounced).
    #[serde(skip, default = "on")]
    pub background_jobs: bool,
    /// Whether starting applies this version's pending migrations to a database in use (an
    /// upgrade). On for `serve`; off for operator commands, which migrate only a new database and
    /// refuse one in use that lacks migrations (`store::Db::migrate_if_new`). Neither the file
    /// nor the environment sets it.
    #[serde(skip, default = "on")]
    pub upgrade_schema: bool,
}

fn on() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KcpSettings {
    /// Origin that serves KCP's REST paths (`/gw/hub/v1/payment`, …). Unset: the embedded sandbox in
    /// test mode, KCP's production hosts otherwise. Set it to KCP's staging host to test against KCP.
    pub api_base: Option<String>,
    /// Per-call timeout towards KCP, in milliseconds: at least [`MIN_KCP_TIMEOUT_MS`]
    /// ([`Config::validate`]).
    pub timeout_ms: u64,
    /// How long, in milliseconds, a connection to KCP stays pooled for the next call. A server
    /// closes a keep-alive connection that stayed idle for its own timeout (the embedded sandbox
    /// after `http.header_read_timeout_ms`, Apache and Node after 5 s), and a call sent on it as
    /// it closes fails after it was sent: an unknown outcome for a charge KCP never saw. So it
    /// must be shorter than KCP's keep-alive; 0 opens a connection for every call. With the
    /// embedded sandbox at most half its header timeout is used ([`Config::kcp_pool_idle_timeout`]).
    pub pool_idle_timeout_ms: u64,
    /// Single-merchant setups: the demo/default merchant's KCP site code and credentials.
    pub site_cd: Option<String>,
    pub cert_info: Option<String>,
    pub private_key_path: Option<String>,
    #[serde(skip_serializing)]
    pub private_key_password: Option<SecretString>,
    /// Single-merchant setups: the KCP batch (billing-key) group id KCP assigned to that merchant
    /// with the batch contract (e.g. `A52Q71000489` for the test site `A52Q7`, spec/kcp.md §1),
    /// given to the merchant `serve` makes first (`KCP_GROUP_ID`). Unset: billing keys work only
    /// in test mode until `openport merchant set-group-id` sets one.
    pub group_id: Option<String>,
    /// The seed's `KCP_PAYMENT_URL` (window approval, `gw/enc/v1/payment`) and `KCP_REGISTER_URL`
    /// (trade registration): replace those URLs of the environment chosen; unused with the
    /// embedded sandbox.
    pub payment_url: Option<String>,
    pub register_url: Option<String>,
    /// Whether "no such trade" from an inquiry by order number (no `tno` known, docs/kcp.md §4) is
    /// taken as proof that KCP approved nothing. KCP documents inquiries by `tno` only, so against
    /// real KCP such an order stays open for an operator until this is confirmed with KCP. Unset:
    /// trusted when the embedded sandbox plays KCP (it implements the form), not otherwise.
    pub order_no_inquiry: Option<bool>,
    /// Who may post KCP's common notifications (`/kcp/notify`, spec/kcp.md §2.12): IP addresses or
    /// CIDR blocks separated by commas, or `any`. The form is unsigned, so anyone who can reach
    /// the endpoint can make openport record a row and ask KCP about a trade. Unset: the addresses
    /// KCP sends from (production 103.215.144.173 and .174; in test mode KCP's test sender
    /// 210.122.176.144 and this host, where the sandbox runs: loopback and the addresses the
    /// gateway and the embedded sandbox listen on).
    pub notify_sources: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSettings {
    /// Serve the KCP sandbox in the same process (default: on in test mode unless
    /// `kcp.api_base` is set). Test mode only: outside it `true` refuses to start
    /// ([`Config::validate`]), since the sandbox would answer live payments.
    pub embedded: Option<bool>,
    /// Where the embedded sandbox listens (`127.0.0.1:0` = any free port).
    pub listen: SocketAddr,
    /// The file the embedded sandbox keeps its ledger, batch keys, Benepia balances, virtual
    /// accounts and deposits in across restarts (docs/sandbox.md §7), as openport's database keeps
    /// the payments they belong to. Unset: `<database file stem>-kcp-sandbox.json` next to a SQLite
    /// database file, none otherwise (PostgreSQL, in-memory SQLite). Empty: none, the sandbox
    /// forgets everything when openport stops ([`Config::sandbox_state_file`]).
    #[serde(default)]
    pub state_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolverSettings {
    /// How often the unknown-outcome resolver looks for open attempts, and webhook delivery for
    /// due webhooks; the scheduler runs at this interval or once a second, whichever is sooner.
    /// More than 0 ([`Config::validate`]).
    pub interval_ms: u64,
    /// How long after the last KCP call made under an attempt (not its creation: one attempt can
    /// carry calls sent at different times, e.g. an escrow cancel's `STSC` fallback) before "KCP
    /// has no such transaction", or a trade still as it was, is believed, and before the resolver
    /// first looks at it. Must be longer than a request can hold an attempt
    /// ([`Config::attempt_hold`], three KCP timeouts): the request's own inquiry then never
    /// believes "no such transaction" for a call KCP may still be processing, and the resolver
    /// only meets attempts whose request has let go (the lease still guards a slower one). Longer
    /// by twice [`Self::max_clock_skew_secs`] too: each instance may be that far off the
    /// database's clock, in opposite directions, so one judges another's lease and settle delay
    /// up to twice the skew early. [`Config::validate`] refuses to start otherwise.
    pub settle_secs: i64,
    /// How far this host's clock may be off the database server's (PostgreSQL) before openport
    /// refuses to start, and, found by the clock check that runs every minute on its own timer
    /// (`app::spawn_clock_check`), claims no KCP attempt and charges no schedule:
    /// leases and the settle delay compare times written by different instances' clocks
    /// (service/clock_check.rs). 0 = not checked.
    #[serde(default = "default_max_clock_skew_secs")]
    pub max_clock_skew_secs: u64,
}

fn default_max_clock_skew_secs() -> u64 {
    5
}

/// How each instance drains due schedules (docs/operations.md "Schedules and webhooks"). The
/// scheduler runs at the resolver's interval but at least once a second, and again at once while its
/// last batch found work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerSettings {
    /// Schedules one instance charges at the same time. Each holds a database connection for
    /// its writes and one KCP call: keep it below the PostgreSQL pool (32 per instance), which
    /// HTTP requests share. 0 counts as 1.
    pub concurrency: usize,
    /// Schedules claimed by one statement. A batch is charged before the next is claimed, so a
    /// few times `concurrency` keeps the charges flowing; much more only holds schedules that
    /// other instances could be charging.
    pub batch: u64,
    /// Start with the scheduler held: this instance claims and charges no schedule until it is
    /// started again without it; everything else runs (the API, which still takes schedules, the
    /// resolver, webhook delivery). For the first start on a restored backup: the schedules that
    /// ran after the backup are `scheduled` again there, and charging them would charge their
    /// buyers twice under new order numbers, which KCP does not refuse. The operator compares
    /// what is due (`openport schedule list --due`) with KCP's admin first (docs/operations.md
    /// "Restoring a backup").
    #[serde(default)]
    pub paused: bool,
}

/// Webhook delivery (docs/operations.md "Schedules and webhooks").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// May webhooks go to this host, private networks, link-local addresses (cloud metadata) and
    /// other non-public addresses? A `notice_url` can come from a checkout page, so allowing them
    /// lets anyone make openport POST inside its network. Unset: allowed in test mode (local
    /// receivers), refused otherwise.
    pub private_targets: Option<bool>,
    /// Days a finished delivery (delivered or given up) and its attempts stay in the history
    /// before the worker deletes them; 0 keeps them forever. Every payment writes at least one
    /// row when the merchant has a webhook URL, so without a limit the table only grows.
    pub retention_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            private_targets: None,
            retention_days: 90,
        }
    }
}

/// How long openport's HTTP server waits for a client (docs/operations.md "HTTP timeouts and the connection cap"). A
/// client that stops sending part-way held its connection, and a file descriptor shared with
/// the database and the embedded sandbox, for ever; the same values apply to the embedded
/// sandbox's server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// From a connection's opening, or from the end of its previous response, to the end of a
    /// request's headers. Past it the connection is closed without an answer, so this is also
    /// how long an idle keep-alive connection is kept.
    pub header_read_timeout_ms: u64,
    /// From the end of a request's headers to the end of its body (at most 256 KiB): a whole-body
    /// deadline, not one per read, so a body dripped a byte at a time is cut off too. Past it the
    /// request is answered 408 and the connection closed.
    pub body_read_timeout_ms: u64,
    /// How long a response may go without the client taking a byte of it. Past it the connection
    /// is closed: a client that stops reading its response kept its connection, and a connection
    /// slot, for ever.
    pub write_stall_timeout_ms: u64,
    /// Client connections open at once; more wait in the listen backlog until one closes. Unset:
    /// what the process's open-file limit leaves after the embedded sandbox, the database and
    /// outgoing calls (`app::open_files`), which openport raises to its hard limit at every start.
    /// Set: it must fit in that limit with the same reserve, or `serve` refuses to start.
    pub max_connections: Option<usize>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            write_stall_timeout_ms: 30_000,
            max_connections: None,
        }
    }
}

/// Browser checkout (docs/operations.md "Checkout windows").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckoutSettings {
    /// How long a checkout window may be completed after `IMP.request_pay` opened it, in
    /// seconds: a `Ret_URL` post that would claim it later (and a hand-off page loaded later) fails
    /// its payment with nothing sent to KCP. Without a limit a window the shop had long written off
    /// (its stock sold, the buyer gone on to order again under another merchant_uid) was approved
    /// and announced `paid` a day later. The default, an hour ([`DEFAULT_WINDOW_TTL_SECS`]),
    /// is long enough for a buyer who takes their time in KCP's window and in the card, bank or
    /// carrier app a mobile window hands them to (app-to-app authentication, an OTP, an ARS call
    /// take minutes), and short enough that an order abandoned in the morning is not paid in the
    /// afternoon. spec/kcp.md and the seeds state no validity for the trade registration's
    /// `approval_key` or the window's `enc_data`; the sandbox keeps a registered trade and its
    /// window's result an hour too (docs/sandbox.md §7). At least [`MIN_WINDOW_TTL_SECS`]
    /// ([`Config::validate`]).
    pub window_ttl_secs: u64,
}

/// [`CheckoutSettings::window_ttl_secs`] unless configured: an hour.
pub const DEFAULT_WINDOW_TTL_SECS: u64 = 60 * 60;

/// The shortest [`CheckoutSettings::window_ttl_secs`]: five minutes. A buyer sent to a card or
/// bank app takes a few minutes, and a value meant in minutes (`60` for an hour) would fail nearly
/// every window, in the buyer's face.
pub const MIN_WINDOW_TTL_SECS: u64 = 5 * 60;

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            window_ttl_secs: DEFAULT_WINDOW_TTL_SECS,
        }
    }
}

impl HttpSettings {
    pub fn header_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn write_stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.write_stall_timeout_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            database_url: "sqlite://openport.db?mode=rwc".into(),
            database_pool_size: crate::store::DEFAULT_PG_POOL_SIZE,
            test_mode: true,
            admin_token: None,
            master_key: None,
            previous_master_keys: None,
            trusted_proxies: None,
            public_url: None,
            kcp: KcpSettings {
                api_base: None,
                timeout_ms: 30_000,
                pool_idle_timeout_ms: 2_000,
                site_cd: None,
                cert_info: None,
                private_key_path: None,
                private_key_password: None,
                group_id: None,
                payment_url: None,
                register_url: None,
                order_no_inquiry: None,
                notify_sources: None,
            },
            sandbox: SandboxSettings {
                embedded: None,
                listen: "127.0.0.1:0".parse().expect("static address"),
                state_file: None,
            },
            resolver: ResolverSettings {
                interval_ms: 2_000,
                settle_secs: 120,
                max_clock_skew_secs: default_max_clock_skew_secs(),
            },
            scheduler: SchedulerSettings {
                concurrency: 16,
                batch: 64,
                paused: false,
            },
            webhooks: WebhookSettings::default(),
            http: HttpSettings::default(),
            checkout: CheckoutSettings::default(),
            log_format: "pretty".into(),
            background_jobs: true,
            upgrade_schema: true,
        }
    }
}

/// The addresses KCP posts its common notifications from (spec/kcp.md §1).
const KCP_SENDERS: &[&str] = &["103.215.144.173", "103.215.144.174"];
/// In test mode: KCP's test sender, and this host (the sandbox, embedded or not).
const KCP_TEST_SENDERS: &[&str] = &["210.122.176.144", "127.0.0.0/8", "::1"];

/// KCP's production hosts (spec/kcp.md §1: REST and trade registration, the mobile window, the
/// PC window script). Test mode refuses a KCP URL naming one: its merchants' payments are marked
/// `sandbox: true` and the README's demo credentials work there.
const KCP_PRODUCTION_HOSTS: &[&str] = &["spl.kcp.co.kr", "smpay.kcp.co.kr", "spay.kcp.co.kr"];

/// KCP's test hosts (spec/kcp.md §1: REST and trade registration, the older mobile registration
/// and the mobile window, the PC window script). Outside test mode a window-approval or
/// registration URL naming one is refused unless the instance's api base is KCP's staging too
/// ([`Config::validate`]): its approvals would be test approvals recorded as live payments.
const KCP_STAGING_HOSTS: &[&str] = &[
    "stg-spl.kcp.co.kr",
    "testsmpay.kcp.co.kr",
    "testspay.kcp.co.kr",
];

/// KCP's public test site codes (spec/kcp.md §1: `T0000` general, `T0007` escrow, `A52Q7`
/// batch). A live merchant under one of them sends every payment under KCP's test site; with the
/// certificate of the merchant's own site each is refused as a site mismatch, which the shop sees
/// as a declined card, not as a configuration error. `openport merchant create` refuses them
/// outside test mode, and so does the start for the seed's `KCP_SITE_CD` ([`Config::validate`]).
pub const KCP_PUBLIC_TEST_SITES: &[&str] = &["T0000", "T0007", "A52Q7"];

/// Whether `site_cd` is one of [`KCP_PUBLIC_TEST_SITES`].
pub fn is_kcp_public_test_site(site_cd: &str) -> bool {
    KCP_PUBLIC_TEST_SITES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(site_cd.trim()))
}

/// The host of `hosts` that `url` names, if any (a URL without a scheme is read as https).
fn kcp_host_among(url: &str, hosts: &[&'static str]) -> Option<&'static str> {
    let url = url.trim();
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| u.host_str().is_some())
        .or_else(|| url::Url::parse(&format!("https://{url}")).ok())?;
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    hosts.iter().copied().find(|h| *h == host)
}

/// The KCP production host `url` names, if any (a URL without a scheme is read as https).
pub fn kcp_production_host(url: &str) -> Option<&'static str> {
    kcp_host_among(url, KCP_PRODUCTION_HOSTS)
}

/// The KCP staging (test) host `url` names, if any (a URL without a scheme is read as https).
pub fn kcp_staging_host(url: &str) -> Option<&'static str> {
    kcp_host_among(url, KCP_STAGING_HOSTS)
}

/// `url` as an error message may show it: without any credentials it carries.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) if url.contains('@') => "(unreadable URL)".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// Whether `url`'s host is this machine (`localhost`, a loopback address): plain http there never
/// crosses a network.
fn names_this_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A configuration openport refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("OPENPORT_DATABASE_POOL_SIZE ({size}) must be between 1 and {MAX_DATABASE_POOL_SIZE}")]
    BadPoolSize { size: u32 },
    #[error(
        "OPENPORT_KCP__TIMEOUT_MS ({ms} ms) must be at least {MIN_KCP_TIMEOUT_MS} ms; it is in \
         milliseconds (30000 = 30 s): a KCP call that times out is an unknown outcome, which a \
         payment KCP approved may become"
    )]
    KcpTimeoutTooShort { ms: u64 },
    #[error(
        "OPENPORT_SANDBOX__EMBEDDED=true needs test mode (OPENPORT_TEST_MODE=true): a live \
         instance's KCP calls would go to the in-process sandbox instead of KCP. Unset it, or \
         set it to false, outside test mode"
    )]
    EmbeddedSandboxOutsideTestMode,
    #[error(
        "resolver.settle_secs ({settle_secs} s) must be longer than a request can hold a KCP attempt \
         ({hold_ms} ms: three times kcp.timeout_ms, the call, its inquiry and a margin) plus twice \
         the clock skew allowed (resolver.max_clock_skew_secs, {skew_secs} s: two instances may be \
         off the database's clock in opposite directions, and one judges the other's leases and \
         settle delays that much early); set OPENPORT_RESOLVER__SETTLE_SECS to at least {minimum}, or lower \
         OPENPORT_KCP__TIMEOUT_MS or OPENPORT_RESOLVER__MAX_CLOCK_SKEW_SECS"
    )]
    SettleTooShort {
        settle_secs: i64,
        hold_ms: u64,
        skew_secs: u64,
        minimum: u64,
    },
    #[error("{setting}: {error}")]
    BadAddressList {
        setting: &'static str,
        error: BadAddress,
    },
    #[error(
        "OPENPORT_KCP__API_BASE / KCP_API_BASE {url:?} must be an origin such as \
         https://stg-spl.kcp.co.kr: {why}"
    )]
    BadKcpApiBase { url: String, why: &'static str },
    #[error(
        "KCP_SITE_CD, KCP_CERT_INFO and KCP_PRIVATE_KEY_PATH make the first merchant's KCP \
         credentials together: {missing} missing (set all three, or only KCP_SITE_CD in test mode)"
    )]
    PartialKcpCredentials { missing: String },
    #[error(
        "KCP_SITE_CD {site} is one of KCP's public test sites ({sites}), refused outside test mode: \
         the first live merchant would be made under KCP's test site. Set KCP_SITE_CD to the site \
         code KCP gave your contract, or unset KCP_SITE_CD, KCP_CERT_INFO and KCP_PRIVATE_KEY_PATH"
    )]
    KcpPublicTestSiteOutsideTestMode { site: String, sites: String },
    #[error(
        "OPENPORT_TRUSTED_PROXIES cannot be `any`: every client could then name its own address"
    )]
    AnyProxy,
    #[error(
        "OPENPORT_ADMIN_TOKEN has {length} characters; the operator token reads every merchant's \
         payments and must have at least {MIN_ADMIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
    )]
    AdminTokenTooShort { length: usize },
    #[error(
        "OPENPORT_PUBLIC_URL {0:?} must be an http(s) URL without credentials, query or fragment, \
         such as https://pay.example.com or https://example.com/pay"
    )]
    BadPublicUrl(String),
    #[error(
        "OPENPORT_PUBLIC_URL {0:?} must be https while test mode is off: buyers' payment pages, \
         the checkout hand-off link and KCP's post back to Ret_URL would cross the network in \
         clear (plain http is taken only for localhost or a loopback address, for a local \
         rehearsal)"
    )]
    PlainHttpPublicUrl(String),
    #[error("{setting} must be more than 0 ms: without a deadline a client that stops sending holds its connection for ever")]
    NoHttpTimeout { setting: &'static str },
    #[error(
        "OPENPORT_RESOLVER__INTERVAL_MS must be more than 0 ms: it paces the unknown-outcome \
         resolver, the scheduler and webhook delivery, which do not run without it"
    )]
    NoJobInterval,
    #[error("OPENPORT_HTTP__MAX_CONNECTIONS must be more than 0: with no connection allowed nothing is served")]
    NoConnectionsAllowed,
    #[error(
        "OPENPORT_CHECKOUT__WINDOW_TTL_SECS ({secs}) must be at least {MIN_WINDOW_TTL_SECS}: it is \
         in seconds (3600 = an hour), and a buyer sent to a card or bank app takes minutes; a \
         shorter limit fails their payment when they come back"
    )]
    WindowTtlTooShort { secs: u64 },
    #[error("{setting} {url:?} must be an http(s) URL, such as https://stg-spl.kcp.co.kr/gw/enc/v1/payment")]
    BadKcpUrl { setting: &'static str, url: String },
    #[error(
        "{setting} {url:?} must be https while test mode is off (plain http only to this host, \
         e.g. a local sandbox or egress proxy): site_cd, kcp_cert_info and the buyer's window \
         data go there, and its answer names the page buyers type their card into"
    )]
    PlainHttpKcpUrl { setting: &'static str, url: String },
    #[error(
        "{setting} names KCP's staging host {host} while test mode is off and the instance's other \
         KCP calls go to {other}: its approvals would be KCP test approvals recorded as live \
         payments. Use KCP's production URL (or unset it), or, to rehearse against KCP's staging, \
         set OPENPORT_KCP__API_BASE=https://stg-spl.kcp.co.kr too (or OPENPORT_TEST_MODE=true)"
    )]
    StagingKcpOutsideTestMode {
        setting: &'static str,
        host: &'static str,
        other: String,
    },
    #[error(
        "{setting} names KCP's production host {host} while OPENPORT_KCP__API_BASE is KCP's \
         staging: its approvals would be charged for real while cancels and inquiries go to KCP's \
         test environment. Use KCP's staging URL, or unset OPENPORT_KCP__API_BASE for production"
    )]
    ProductionKcpBesideStaging {
        setting: &'static str,
        host: &'static str,
    },
    #[error(
        "{setting} names KCP's production host {host} while test mode is on: test payments and the \
         README's demo credentials would reach real KCP. Use KCP's staging hosts (stg-spl.kcp.co.kr, \
         testsmpay.kcp.co.kr) or set OPENPORT_TEST_MODE=false"
    )]
    ProductionKcpInTestMode {
        setting: &'static str,
        host: &'static str,
    },
}

/// The longest a cancel waits for another cancel of its payment in flight ([`Config::cancel_wait`]).
pub const MAX_CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The operator token's minimum length: it is compared on every request and guessing it opens
/// every merchant's data.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

impl Config {
    /// The longest one holder of a KCP attempt (the request that made the call, or the resolver)
    /// works on it without renewing its lease: two KCP calls (the call whose answer is lost and the
    /// inquiry that follows it, or an inquiry and the net-cancel it decides) plus one more timeout
    /// for the database writes around them. A holder renews its lease before every further call
    /// with an effect at KCP (service/attempts.rs).
    pub fn attempt_hold(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.kcp.timeout_ms.saturating_mul(3))
    }

    /// How long a cancel that meets another cancel of its payment in flight waits for it to end
    /// before it is refused as in flight (service/cancel.rs): one KCP timeout, at most
    /// [`MAX_CANCEL_WAIT`]. An ordinary cancel holds its payment's slot for one KCP call, well
    /// under a second; one still open after a whole KCP timeout has lost its answer and is being
    /// settled by inquiry, or is left to the resolver after the settle delay, which no merchant's
    /// request can wait for. The cap keeps a waiting cancel's answer (the wait, then its own KCP
    /// call, normally well under a second) inside the 30 s an iamport client commonly gives a
    /// request, with the default 30 s KCP timeout.
    pub fn cancel_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.kcp.timeout_ms).min(MAX_CANCEL_WAIT)
    }

    /// How long a connection to KCP stays pooled for the next call: `kcp.pool_idle_timeout_ms`,
    /// and with the embedded sandbox at most half of `http.header_read_timeout_ms`, after which
    /// the sandbox's server closes an idle connection: an operator who shortens the header
    /// timeout would otherwise have calls sent on connections the sandbox is closing.
    pub fn kcp_pool_idle_timeout(&self) -> std::time::Duration {
        let mut ms = self.kcp.pool_idle_timeout_ms;
        if self.embedded_sandbox() {
            ms = ms.min(self.http.header_read_timeout_ms / 2);
        }
        std::time::Duration::from_millis(ms)
    }

    /// [`Self::attempt_hold`] as the lease written on an attempt, in whole seconds: rounded up,
    /// plus one because leases are compared with Unix seconds, which floor the current time.
    pub fn attempt_lease_secs(&self) -> i64 {
        let secs = self.attempt_hold().as_millis().div_ceil(1000) + 1;
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// Refuses settings that break the money rules (docs/operations.md "Unknown outcomes").
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Before the settle delay, which a timeout this short always passes.
        if self.kcp.timeout_ms < MIN_KCP_TIMEOUT_MS {
            return Err(ConfigError::KcpTimeoutTooShort {
                ms: self.kcp.timeout_ms,
            });
        }
        // The embedded sandbox wins over every KCP URL (app.rs): a live instance's payments
        // would be answered by it.
        if !self.test_mode && self.sandbox.embedded == Some(true) {
            return Err(ConfigError::EmbeddedSandboxOutsideTestMode);
        }
        // Each instance may be the allowed skew off the database's clock (service/clock_check.rs),
        // in opposite directions: one running ahead judges the lease and settle delay a holder
        // running behind wrote up to twice the skew early. The settle delay must outlast the hold
        // by that too, or it could believe "KCP has no such trade" while the request still holds
        // its attempt.
        let hold_ms = u64::try_from(self.attempt_hold().as_millis()).unwrap_or(u64::MAX);
        let skew_secs = self.resolver.max_clock_skew_secs;
        let needed_ms = hold_ms.saturating_add(skew_secs.saturating_mul(2000));
        let settle_ms = u64::try_from(self.resolver.settle_secs)
            .unwrap_or(0)
            .saturating_mul(1000);
        if settle_ms <= needed_ms {
            return Err(ConfigError::SettleTooShort {
                settle_secs: self.resolver.settle_secs,
                hold_ms,
                skew_secs,
                minimum: needed_ms / 1000 + 1,
            });
        }
        if !(1..=MAX_DATABASE_POOL_SIZE).contains(&self.database_pool_size) {
            return Err(ConfigError::BadPoolSize {
                size: self.database_pool_size,
            });
        }
        if let Some(token) = &self.admin_token {
            // Counted as it is compared: surrounding whitespace trimmed (app.rs).
            let length = token.expose_secret().trim().chars().count();
            if length < MIN_ADMIN_TOKEN_CHARS {
                return Err(ConfigError::AdminTokenTooShort { length });
            }
        }
        for (setting, ms) in [
            (
                "OPENPORT_HTTP__HEADER_READ_TIMEOUT_MS",
                self.http.header_read_timeout_ms,
            ),
            (
                "OPENPORT_HTTP__BODY_READ_TIMEOUT_MS",
                self.http.body_read_timeout_ms,
            ),
            (
                "OPENPORT_HTTP__WRITE_STALL_TIMEOUT_MS",
                self.http.write_stall_timeout_ms,
            ),
        ] {
            if ms == 0 {
                return Err(ConfigError::NoHttpTimeout { setting });
            }
        }
        if self.http.max_connections == Some(0) {
            return Err(ConfigError::NoConnectionsAllowed);
        }
        if self.resolver.interval_ms == 0 {
            return Err(ConfigError::NoJobInterval);
        }
        if self.checkout.window_ttl_secs < MIN_WINDOW_TTL_SECS {
            return Err(ConfigError::WindowTtlTooShort {
                secs: self.checkout.window_ttl_secs,
            });
        }
        self.kcp_notify_sources()?;
        self.trusted_proxies()?;
        self.public_base()?;
        if self.test_mode {
            for (setting, url) in [
                ("OPENPORT_KCP__API_BASE / KCP_API_BASE", &self.kcp.api_base),
                ("KCP_PAYMENT_URL", &self.kcp.payment_url),
                ("KCP_REGISTER_URL", &self.kcp.register_url),
            ] {
                if let Some(host) = url.as_deref().and_then(kcp_production_host) {
                    return Err(ConfigError::ProductionKcpInTestMode { setting, host });
                }
            }
        }
        self.check_kcp_api_base()?;
        self.check_kcp_urls()?;
        self.check_kcp_credentials()?;
        self.check_kcp_site_code()?;
        Ok(())
    }

    /// The seed's whole KCP URLs (`KCP_PAYMENT_URL`, `KCP_REGISTER_URL`), which replace those of
    /// the instance's KCP environment (app.rs). They carry what the api base carries (site_cd,
    /// kcp_cert_info, the window's `enc_data`), and the registration's answer names the `PayUrl`
    /// buyers' browsers post to, so they take the api base's rule ([`Self::check_kcp_api_base`]):
    /// https, or plain http only to this host outside test mode. Outside test mode they must also
    /// name the environment the other calls go to: KCP's staging hosts only beside a staging api
    /// base (a live rehearsal against KCP staging, README), KCP's production hosts not beside one.
    /// The seed's own `.env` names staging hosts, and copied onto a live instance they sent every
    /// window approval to KCP's test environment while key-in, cancels and inquiries went to
    /// production.
    fn check_kcp_urls(&self) -> Result<(), ConfigError> {
        let base = self.kcp.api_base.as_deref();
        let base_staging = base.and_then(kcp_staging_host).is_some();
        for (setting, url) in [
            ("KCP_PAYMENT_URL", &self.kcp.payment_url),
            ("KCP_REGISTER_URL", &self.kcp.register_url),
        ] {
            let Some(url) = url else { continue };
            let shown = without_credentials(url);
            let parsed = reqwest::Url::parse(url.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| ConfigError::BadKcpUrl {
                    setting,
                    url: shown.clone(),
                })?;
            // The api base's scheme rule, applied to this URL's origin (its path is KCP's).
            if let Err(OriginError::PlainHttp) =
                kcp_origin::parse(&parsed.origin().ascii_serialization(), self.test_mode)
            {
                return Err(ConfigError::PlainHttpKcpUrl {
                    setting,
                    url: shown,
                });
            }
            if self.test_mode {
                continue;
            }
            if let Some(host) = kcp_staging_host(url) {
                if !base_staging {
                    let other = match base {
                        None => "KCP's production hosts".to_owned(),
                        Some(b) => without_credentials(b),
                    };
                    return Err(ConfigError::StagingKcpOutsideTestMode {
                        setting,
                        host,
                        other,
                    });
                }
            }
            if let Some(host) = kcp_production_host(url) {
                if base_staging {
                    return Err(ConfigError::ProductionKcpBesideStaging { setting, host });
                }
            }
        }
        Ok(())
    }

    /// The instance's KCP origin, checked as a merchant's own is (`domain::kcp_origin`): without
    /// a scheme every KCP call would fail to build, which reads as an unknown outcome (payments
    /// left pending until an operator looks), and card data goes there, so plain http is for this
    /// host only, or for a sandbox elsewhere in test mode.
    fn check_kcp_api_base(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.kcp.api_base else {
            return Ok(());
        };
        let shown = without_credentials(url);
        let bad = |why| ConfigError::BadKcpApiBase {
            url: shown.clone(),
            why,
        };
        match kcp_origin::parse(url, self.test_mode) {
            Ok(_) => Ok(()),
            Err(OriginError::NotUrl | OriginError::NoHost) => {
                Err(bad("a URL with a scheme and a host"))
            }
            Err(OriginError::PlainHttp) => Err(bad(
                "https, or http only to this host (or to a sandbox in test mode): card data goes there",
            )),
            Err(OriginError::NotOrigin) => Err(bad(
                "no path, query or credentials (KCP's paths are appended to it)",
            )),
        }
    }

    /// The seed's single-merchant credentials go together: with only some of them, `serve` would
    /// start without the merchant they describe (live) or with the sandbox's (test mode), and say
    /// nothing. A site code alone names the demo merchant's in test mode.
    fn check_kcp_credentials(&self) -> Result<(), ConfigError> {
        let k = &self.kcp;
        let given = [
            ("KCP_SITE_CD", k.site_cd.is_some()),
            ("KCP_CERT_INFO", k.cert_info.is_some()),
            ("KCP_PRIVATE_KEY_PATH", k.private_key_path.is_some()),
        ];
        let site_code_alone = self.test_mode && !given[1].1 && !given[2].1;
        if given.iter().all(|(_, set)| *set)
            || given.iter().all(|(_, set)| !*set)
            || site_code_alone
        {
            return Ok(());
        }
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, set)| !*set)
            .map(|(name, _)| *name)
            .collect();
        Err(ConfigError::PartialKcpCredentials {
            missing: missing.join(", "),
        })
    }

    /// Outside test mode the seed's `KCP_SITE_CD` names the site of the first live merchant
    /// (app/first_merchant.rs), and `openport merchant create` refuses KCP's public test sites
    /// there: a live merchant under one sends every payment under KCP's test site, each refused as
    /// a site mismatch that the shop sees as a declined card. The seed is refused the same way,
    /// at start, before any merchant is made.
    fn check_kcp_site_code(&self) -> Result<(), ConfigError> {
        match self.kcp.site_cd.as_deref() {
            Some(site) if !self.test_mode && is_kcp_public_test_site(site) => {
                Err(ConfigError::KcpPublicTestSiteOutsideTestMode {
                    site: site.trim().to_owned(),
                    sites: KCP_PUBLIC_TEST_SITES.join(", "),
                })
            }
            _ => Ok(()),
        }
    }

    /// [`Config::public_url`] without its trailing slash, checked: the base URLs handed out are
    /// built on.
    pub fn public_base(&self) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.public_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        // Credentials are refused, and never echoed.
        let bad = || ConfigError::BadPublicUrl(crate::store::redact_url(raw));
        let url = reqwest::Url::parse(raw).map_err(|_| bad())?;
        let usable = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none();
        if !usable {
            return Err(bad());
        }
        // A live buyer's payment page, the checkout link (a bearer capability) and KCP's post back
        // with `enc_data` all go to this base: over plain http only on this machine.
        if !self.test_mode && url.scheme() == "http" && !names_this_host(&url) {
            return Err(ConfigError::PlainHttpPublicUrl(crate::store::redact_url(
                raw,
            )));
        }
        Ok(Some(url.as_str().trim_end_matches('/').to_string()))
    }

    /// [`KcpSettings::notify_sources`], parsed, or KCP's senders for this mode.
    pub fn kcp_notify_sources(&self) -> Result<AddressList, ConfigError> {
        match &self.kcp.notify_sources {
            Some(list) => AddressList::parse(list).map_err(|error| ConfigError::BadAddressList {
                setting: "OPENPORT_KCP__NOTIFY_SOURCES",
                error,
            }),
            None if self.test_mode => {
                // The sandbox posts to the gateway's listen address; on a LAN or container
                // address (a browser on another machine, README) its posts come from that
                // address, not loopback.
                let mut senders = AddressList::of(KCP_TEST_SENDERS);
                if let AddressList::Only(nets) = &mut senders {
                    nets.extend(
                        [self.listen.ip(), self.sandbox.listen.ip()]
                            .into_iter()
                            .filter(|ip| !ip.is_unspecified())
                            .map(ipnet::IpNet::from),
                    );
                }
                Ok(senders)
            }
            None => Ok(AddressList::of(KCP_SENDERS)),
        }
    }

    /// [`Config::trusted_proxies`], parsed; empty when unset.
    pub fn trusted_proxies(&self) -> Result<AddressList, ConfigError> {
        let Some(list) = &self.trusted_proxies else {
            return Ok(AddressList::Only(vec![]));
        };
        match AddressList::parse(list) {
            Ok(AddressList::Any) => Err(ConfigError::AnyProxy),
            Ok(list) => Ok(list),
            Err(error) => Err(ConfigError::BadAddressList {
                setting: "OPENPORT_TRUSTED_PROXIES",
                error,
            }),
        }
    }

    /// Whether webhooks may go to non-public addresses: as configured, else only in test mode.
    pub fn webhook_private_targets(&self) -> bool {
        self.webhooks.private_targets.unwrap_or(self.test_mode)
    }

    /// Loads defaults, then `file` (if given), then the environment. Secrets, `DATABASE_URL` and
    /// the seed's `KCP_*` strings are taken from the environment verbatim (config/raw_env.rs), and
    /// no error message shows a secret's value.
    pub fn load(file: Option<&Path>) -> Result<Self, LoadError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            // `Toml::file` skips a file that is not there (and looks for a relative one in the
            // parent directories): `--config /etc/openport/openport.tmol`, a typo, started in
            // test mode with the demo merchant. The file named is read, or nothing starts.
            if let Err(error) = std::fs::read(f) {
                return Err(LoadError::unreadable_file(f, &error));
            }
            fig = fig.merge(Toml::file_exact(f));
            let unknown = unread_keys(&fig);
            if !unknown.is_empty() {
                return Err(LoadError::unknown_keys(f, unknown));
            }
        }
        fig = fig
            .merge(
                Env::prefixed("OPENPORT_")
                    .split("__")
                    .filter(|k| !raw_env::is_raw(k.as_str())),
            )
            .merge(raw_env::RawEnv);
        fig.extract().map_err(LoadError::from_figment)
    }

    pub fn embedded_sandbox(&self) -> bool {
        self.sandbox
            .embedded
            .unwrap_or(self.test_mode && self.kcp.api_base.is_none())
    }

    /// Where the embedded sandbox keeps its state ([`SandboxSettings::state_file`]): `None` without
    /// an embedded sandbox, when set empty, or by default on anything but a SQLite database file,
    /// whose sandbox state goes next to it (`openport.db` → `openport-kcp-sandbox.json`).
    pub fn sandbox_state_file(&self) -> Option<PathBuf> {
        if !self.embedded_sandbox() {
            return None;
        }
        match self.sandbox.state_file.as_deref().map(str::trim) {
            Some("") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => {
                let db = crate::store::sqlite_file(&self.database_url)?;
                let stem = db.file_stem()?.to_string_lossy();
                Some(db.with_file_name(format!("{stem}-kcp-sandbox.json")))
            }
        }
    }

    /// Whether the embedded sandbox forgets at each stop the trades of payments the database keeps:
    /// no state file ([`Self::sandbox_state_file`]) while the database outlives the process (a
    /// SQLite file, PostgreSQL). After a restart such a sandbox knows none of them: a cancel of an
    /// earlier payment ends in a conflict for an operator, a billing key's charge is refused. An
    /// in-memory SQLite database forgets its payments with the sandbox.
    pub fn sandbox_forgets_what_the_database_keeps(&self) -> bool {
        self.embedded_sandbox()
            && self.sandbox_state_file().is_none()
            && (crate::store::sqlite_file(&self.database_url).is_some()
                || !self.database_url.starts_with("sqlite:"))
    }
}

/// `OPENPORT_…` variables that openport's own tools read, not the gateway's configuration: the
/// Python and browser test suites (`OPENPORT_URL`, `OPENPORT_IMP_CODE`, `OPENPORT_TEST_PIN`,
/// `OPENPORT_TEST_CARD_EXPIRY`), the benchmarks (`OPENPORT_BENCH`, `OPENPORT_SANDBOX_URL`) and CI
/// (`OPENPORT_CI_PG_URL`, `OPENPORT_FUZZ_TOKEN`). A shell that runs them may start openport too:
/// they are not warned about ([`Config::unread_environment`]).
pub const OPENPORT_TOOLS_VARS: &[&str] = &[
    "OPENPORT_URL",
    "OPENPORT_SANDBOX_URL",
    "OPENPORT_IMP_CODE",
    "OPENPORT_TEST_PIN",
    "OPENPORT_TEST_CARD_EXPIRY",
    "OPENPORT_BENCH",
    "OPENPORT_CI_PG_URL",
    "OPENPORT_FUZZ_TOKEN",
];

/// The names of the `OPENPORT_…` environment variables no setting reads, by the check the TOML
/// file's keys get ([`unread_keys`]) run on the defaults with the environment merged over them;
/// `None` when the environment does not make a configuration (`Config::load` says why).
fn unread_env_vars() -> Option<Vec<String>> {
    let fig = Figment::from(Serialized::defaults(Config::default()))
        .merge(
            Env::prefixed("OPENPORT_")
                .split("__")
                .filter(|k| !raw_env::is_raw(k.as_str())),
        )
        .merge(raw_env::RawEnv);
    let unread = try_unread_keys(&fig)?;
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            let name = name.trim();
            // The key figment's `Env` makes of it: the prefix matched without regard to case,
            // `__` a table, lower case.
            let Some(key) = name
                .get(..9)
                .filter(|p| p.eq_ignore_ascii_case("OPENPORT_"))
                .map(|_| name[9..].replace("__", ".").to_ascii_lowercase())
            else {
                return false;
            };
            !key.split('.').any(str::is_empty)
                && !OPENPORT_TOOLS_VARS
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(name))
                && unread
                    .iter()
                    .any(|u| key == *u || key.starts_with(&format!("{u}.")))
        })
        .collect();
    names.sort();
    Some(names)
}

impl Config {
    /// The `OPENPORT_…` environment variables no setting reads (misspelt, or from an older
    /// version): names only, never values, for a warning at start. [`Config::load`] refuses a
    /// TOML file's unknown keys but not these: the environment may hold other programs'
    /// `OPENPORT_…` variables, which a warning leaves working. Those of openport's own tools
    /// ([`OPENPORT_TOOLS_VARS`]) are not among them.
    pub fn unread_environment() -> Vec<String> {
        unread_env_vars().unwrap_or_default()
    }
}

/// The keys of `fig` (the defaults with a TOML file merged over them) that no setting reads: a
/// misspelt `[kcp] api_bas` would otherwise leave `api_base` at its default, outside test mode
/// KCP's production URLs, without a word. Only the file is checked: the environment may hold
/// other programs' `OPENPORT_…` variables. A value of the wrong type is left to `extract`, which
/// names it.
fn unread_keys(fig: &Figment) -> Vec<String> {
    try_unread_keys(fig).unwrap_or_default()
}

/// [`unread_keys`], or `None` when `fig` does not make a configuration.
fn try_unread_keys(fig: &Figment) -> Option<Vec<String>> {
    let value = fig.extract::<figment::value::Value>().ok()?;
    let mut unread = Vec::new();
    serde_ignored::deserialize(&value, |path| unread.push(path.to_string()))
        .map(|_: Config| ())
        .ok()?;
    Some(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcp_notifications_are_taken_from_kcps_senders_and_in_test_mode_from_this_host() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut config = Config {
            test_mode: false,
            ..Config::default()
        };
        let production = config.kcp_notify_sources().unwrap();
        assert!(production.contains(ip("103.215.144.173")));
        assert!(production.contains(ip("103.215.144.174")));
        assert!(!production.contains(ip("127.0.0.1")));
        assert!(!production.contains(ip("210.122.176.144")));
        config.test_mode = true;
        let test = config.kcp_notify_sources().unwrap();
        assert!(test.contains(ip("210.122.176.144")));
        assert!(test.contains(ip("127.0.0.1")));
        assert!(!test.contains(ip("103.215.144.173")));
        assert!(!test.contains(ip("192.168.1.5")));
        // A gateway on a LAN address gets the sandbox's posts from that address.
        config.listen = "192.168.1.5:8080".parse().unwrap();
        assert!(config
            .kcp_notify_sources()
            .unwrap()
            .contains(ip("192.168.1.5")));
        config.test_mode = false;
        assert!(!config
            .kcp_notify_sources()
            .unwrap()
            .contains(ip("192.168.1.5")));
    }

    #[test]
    fn http_timeouts_default_to_ten_and_thirty_seconds_and_zero_refuses_to_start() {
        let mut config = Config::default();
        assert_eq!(config.http.header_read_timeout_ms, 10_000);
        assert_eq!(config.http.body_read_timeout_ms, 30_000);
        assert_eq!(config.http.write_stall_timeout_ms, 30_000);
        config.http.write_stall_timeout_ms = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("OPENPORT_HTTP__WRITE_STALL_TIMEOUT_MS"),
            "{err}"
        );
        config.http.write_stall_timeout_ms = 30_000;
        config.http.body_read_timeout_ms = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("OPENPORT_HTTP__BODY_READ_TIMEOUT_MS"), "{err}");
        config.http.body_read_timeout_ms = 30_000;
        config.http.max_connections = Some(0);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::NoConnectionsAllowed)
        ));
    }

    /// reqwest kept idle connections to KCP for 90 s while servers close them after 5 to 10 s:
    /// a charge sent on a connection as the server closed it was an unknown outcome.
    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn kcp_connections_idle_two_seconds_by_default_and_under_the_embedded_sandboxs_keep_alive() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let ms = |c: &Config| c.kcp_pool_idle_timeout().as_millis();
            let mut config = Config::load(None).expect("loads");
            assert_eq!(config.kcp.pool_idle_timeout_ms, 2_000);
            assert_eq!(ms(&config), 2_000);
            // The embedded sandbox closes idle connections after the header timeout.
            config.http.header_read_timeout_ms = 3_000;
            assert_eq!(ms(&config), 1_500);
            config.sandbox.embedded = Some(false);
            assert_eq!(ms(&config), 2_000, "without the embedded sandbox, as set");

            jail.create_file("pool.toml", "[kcp]\npool_idle_timeout_ms = 500\n")?;
            let config = Config::load(Some(Path::new("pool.toml"))).expect("loads");
            assert_eq!(ms(&config), 500);
            jail.set_env("OPENPORT_KCP__POOL_IDLE_TIMEOUT_MS", "0");
            let config = Config::load(Some(Path::new("pool.toml"))).expect("loads");
            assert_eq!(ms(&config), 0, "the environment wins; 0 reuses nothing");
            Ok(())
        });
    }

    /// A checkout window never expired: one completed a day later was approved and announced
    /// paid. It lasts an hour unless the file or the environment says otherwise, and a limit under
    /// five minutes (likely meant in minutes) refuses to start.
    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn a_checkout_window_lasts_an_hour_unless_configured_and_under_five_minutes_refuses_to_start() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let config = Config::load(None).expect("loads");
            assert_eq!(config.checkout.window_ttl_secs, 3_600);
            assert!(config.validate().is_ok());
            jail.create_file("checkout.toml", "[checkout]\nwindow_ttl_secs = 1800\n")?;
            let config = Config::load(Some(Path::new("checkout.toml"))).expect("loads");
            assert_eq!(config.checkout.window_ttl_secs, 1_800);
            jail.set_env("OPENPORT_CHECKOUT__WINDOW_TTL_SECS", "7200");
            let config = Config::load(Some(Path::new("checkout.toml"))).expect("loads");
            assert_eq!(
                config.checkout.window_ttl_secs, 7_200,
                "the environment wins over the file"
            );
            jail.set_env("OPENPORT_CHECKOUT__WINDOW_TTL_SECS", "60");
            let refused = Config::load(None)
                .expect("loads")
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("OPENPORT_CHECKOUT__WINDOW_TTL_SECS (60)")
                    && refused.contains("at least 300"),
                "{refused}"
            );
            jail.set_env("OPENPORT_CHECKOUT__WINDOW_TTL_SECS", "300");
            assert!(Config::load(None).expect("loads").validate().is_ok());
            Ok(())
        });
    }

    /// An interval of 0 once switched the resolver, the scheduler and webhook delivery off
    /// without a word: schedules never ran and unknown outcomes stayed open.
    #[test]
    fn a_resolver_interval_of_0_refuses_to_start() {
        let mut config = Config::default();
        assert!(config.validate().is_ok());
        config.resolver.interval_ms = 0;
        let refused = config.validate().unwrap_err().to_string();
        assert!(
            refused.contains("OPENPORT_RESOLVER__INTERVAL_MS") && refused.contains("scheduler"),
            "{refused}"
        );
    }

    /// A restored backup holds schedules that ran after it was taken: the first start on it must
    /// be able to hold them (docs/operations.md "Restoring a backup").
    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn the_scheduler_runs_unless_the_file_or_the_environment_starts_it_paused() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            assert!(!Config::load(None).expect("loads").scheduler.paused);
            jail.create_file("batch.toml", "[scheduler]\nbatch = 8\n")?;
            let config = Config::load(Some(Path::new("batch.toml"))).expect("loads");
            assert_eq!(
                (config.scheduler.batch, config.scheduler.paused),
                (8, false)
            );
            jail.create_file("paused.toml", "[scheduler]\npaused = true\n")?;
            let config = Config::load(Some(Path::new("paused.toml"))).expect("loads");
            assert!(config.scheduler.paused);
            assert_eq!(config.scheduler.batch, 64, "the rest keeps its defaults");
            jail.set_env("OPENPORT_SCHEDULER__PAUSED", "true");
            assert!(Config::load(None).expect("loads").scheduler.paused);
            jail.set_env("OPENPORT_SCHEDULER__PAUSED", "false");
            let config = Config::load(Some(Path::new("paused.toml"))).expect("loads");
            assert!(
                !config.scheduler.paused,
                "the environment wins over the file"
            );
            Ok(())
        });
    }

    #[test]
    fn an_address_list_that_does_not_parse_or_proxies_set_to_any_refuse_to_start() {
        let mut config = Config::default();
        config.kcp.notify_sources = Some("103.215.144.173, spl.kcp.co.kr".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("OPENPORT_KCP__NOTIFY_SOURCES") && err.contains("spl.kcp.co.kr"),
            "{err}"
        );
        config.kcp.notify_sources = Some("any".into());
        assert!(config.validate().is_ok());
        config.trusted_proxies = Some("any".into());
        assert!(matches!(config.validate(), Err(ConfigError::AnyProxy)));
        config.trusted_proxies = Some("10.0.0.0/8".into());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_seeds_kcp_urls_must_be_http_urls_or_openport_refuses_to_start() {
        let mut config = Config::default();
        config.kcp.payment_url = Some("https://stg-spl.kcp.co.kr/gw/enc/v1/payment".into());
        config.kcp.register_url = Some("https://testsmpay.kcp.co.kr/trade/register.do".into());
        assert!(config.validate().is_ok());
        config.kcp.register_url = Some("testsmpay.kcp.co.kr/trade/register.do".into());
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("KCP_REGISTER_URL"), "{refused}");
    }

    #[test]
    fn an_operator_token_under_32_characters_refuses_to_start() {
        let mut config = Config {
            admin_token: Some(SecretString::from("x".repeat(31))),
            ..Config::default()
        };
        let refused = config.validate().expect_err("31 characters");
        assert!(refused.to_string().contains("at least 32"), "{refused}");
        assert!(
            !refused.to_string().contains(&"x".repeat(31)),
            "never echoed"
        );
        config.admin_token = Some(SecretString::from("x".repeat(32)));
        assert!(config.validate().is_ok());
        config.admin_token = None;
        assert!(config.validate().is_ok(), "no operator token at all");
    }

    #[test]
    fn a_database_pool_of_none_or_over_a_thousand_connections_refuses_to_start() {
        let mut config = Config::default();
        assert_eq!(config.database_pool_size, 32);
        for size in [0, 1001] {
            config.database_pool_size = size;
            let refused = config.validate().expect_err("out of range").to_string();
            assert!(refused.contains("OPENPORT_DATABASE_POOL_SIZE"), "{refused}");
        }
        config.database_pool_size = 8;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_public_url_is_an_http_base_without_its_trailing_slash_or_refuses_to_start() {
        let mut config = Config::default();
        assert_eq!(config.public_base().unwrap(), None);
        for (given, base) in [
            ("https://pay.example.com", "https://pay.example.com"),
            ("https://pay.example.com/", "https://pay.example.com"),
            ("https://example.com/pay/", "https://example.com/pay"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ] {
            config.public_url = Some(given.into());
            assert_eq!(
                config.public_base().unwrap().as_deref(),
                Some(base),
                "{given}"
            );
        }
        for bad in [
            "pay.example.com",
            "ftp://pay.example.com",
            "https://user:pw@pay.example.com",
            "https://pay.example.com/?x=1",
            "https://pay.example.com/#top",
        ] {
            config.public_url = Some(bad.into());
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("OPENPORT_PUBLIC_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_defaults_let_the_settle_delay_outlast_a_requests_hold_on_an_attempt() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.attempt_hold().as_secs(), 90);
        assert_eq!(config.attempt_lease_secs(), 91);
    }

    #[test]
    fn a_cancel_waits_for_another_of_its_payment_one_kcp_timeout_and_at_most_ten_seconds() {
        let mut config = Config::default();
        assert_eq!(config.cancel_wait(), MAX_CANCEL_WAIT);
        config.kcp.timeout_ms = 1_500;
        assert_eq!(config.cancel_wait().as_millis(), 1_500);
    }

    #[test]
    fn a_settle_delay_shorter_than_a_requests_hold_refuses_to_start_and_names_the_minimum() {
        let mut config = Config::default();
        // The hold alone: the clock skew's share is the next test's.
        config.resolver.max_clock_skew_secs = 0;
        config.resolver.settle_secs = 60;
        let refused = config.validate().expect_err("60 s < three 30 s timeouts");
        let message = refused.to_string();
        assert!(message.contains("at least 91"), "{message}");
        config.resolver.settle_secs = 90;
        assert!(config.validate().is_err(), "equal is not longer");
        config.kcp.timeout_ms = 29_000;
        assert!(config.validate().is_ok());
    }

    /// The settle check allowed `settle_secs` = hold + 1 while the clock check allows instances
    /// `max_clock_skew_secs` off the database's each, so two of them up to twice that apart: an
    /// instance whose clock ran ahead claimed an attempt and believed "KCP has no such trade"
    /// while the request, on an instance running behind, still held it. The settle delay must now
    /// outlast the hold by twice the allowed skew.
    #[test]
    fn a_settle_delay_that_outlasts_the_hold_by_no_more_than_the_allowed_clock_skew_refuses_to_start_and_names_the_minimum(
    ) {
        let mut config = Config::default();
        assert_eq!(config.attempt_hold().as_secs(), 90);
        assert_eq!(config.resolver.max_clock_skew_secs, 5);
        config.resolver.settle_secs = 91;
        let refused = config
            .validate()
            .expect_err("91 s < 90 s of hold + twice 5 s of skew")
            .to_string();
        assert!(
            refused.contains("at least 101") && refused.contains("max_clock_skew_secs, 5 s"),
            "{refused}"
        );
        config.resolver.settle_secs = 100;
        assert!(config.validate().is_err(), "equal is not longer");
        config.resolver.settle_secs = 101;
        assert!(config.validate().is_ok());

        config.resolver.max_clock_skew_secs = 10;
        let refused = config.validate().expect_err("101 s < 110 s").to_string();
        assert!(refused.contains("at least 111"), "{refused}");
        config.resolver.max_clock_skew_secs = 0;
        config.resolver.settle_secs = 91;
        assert!(config.validate().is_ok(), "no skew allowed: the hold alone");
    }

    /// A KCP call that times out is an unknown outcome. With 0 every call timed out before it
    /// was sent; with 30 (meant as seconds) calls were sent and approved, then timed out: buyers
    /// charged, merchants told "being checked", and inquiries timing out as well.
    #[test]
    fn a_kcp_timeout_under_a_second_refuses_to_start_and_says_it_is_in_milliseconds() {
        let mut config = Config::default();
        for ms in [0, 30, 999] {
            config.kcp.timeout_ms = ms;
            let refused = config.validate().expect_err("under a second").to_string();
            assert!(
                refused.contains("OPENPORT_KCP__TIMEOUT_MS")
                    && refused.contains("at least 1000 ms")
                    && refused.contains("milliseconds"),
                "{ms}: {refused}"
            );
        }
        for ms in [1_000, 1_500] {
            config.kcp.timeout_ms = ms;
            assert!(config.validate().is_ok(), "{ms}");
        }
    }

    /// A live instance with the embedded sandbox on sent every KCP call to the sandbox: live
    /// payments failed on the sandbox's CA, or were "paid" against it.
    #[test]
    fn the_embedded_sandbox_turned_on_outside_test_mode_refuses_to_start() {
        let mut live = Config {
            test_mode: false,
            ..Config::default()
        };
        live.sandbox.embedded = Some(true);
        let refused = live.validate().expect_err("a live instance on the sandbox");
        let message = refused.to_string();
        assert!(
            message.contains("OPENPORT_SANDBOX__EMBEDDED")
                && message.contains("OPENPORT_TEST_MODE"),
            "{message}"
        );
        live.sandbox.embedded = Some(false);
        assert!(live.validate().is_ok(), "turned off");
        live.sandbox.embedded = None;
        assert!(live.validate().is_ok(), "unset");
        assert!(!live.embedded_sandbox(), "unset is off outside test mode");

        let mut test = Config::default();
        test.sandbox.embedded = Some(true);
        assert!(test.validate().is_ok(), "in test mode");
        test.kcp.api_base = Some("https://stg-spl.kcp.co.kr".into());
        assert!(
            test.validate().is_ok(),
            "in test mode the sandbox wins over an api base"
        );
    }

    #[test]
    fn the_sandbox_state_goes_next_to_a_sqlite_database_file_unless_set_or_turned_off() {
        let mut config = Config::default();
        assert_eq!(
            config.sandbox_state_file(),
            Some(PathBuf::from("openport-kcp-sandbox.json"))
        );
        config.database_url = "sqlite:///var/lib/openport/pay.db?mode=rwc".into();
        assert_eq!(
            config.sandbox_state_file(),
            Some(PathBuf::from("/var/lib/openport/pay-kcp-sandbox.json"))
        );
        config.sandbox.state_file = Some("/tmp/kcp.json".into());
        assert_eq!(
            config.sandbox_state_file(),
            Some(PathBuf::from("/tmp/kcp.json"))
        );
        config.sandbox.state_file = Some(String::new());
        assert_eq!(config.sandbox_state_file(), None, "empty turns it off");

        config.sandbox.state_file = None;
        for url in [
            "sqlite::memory:",
            "postgres://postgres@127.0.0.1:5432/openport",
        ] {
            config.database_url = url.into();
            assert_eq!(config.sandbox_state_file(), None, "{url}");
        }
        config.database_url = "sqlite://openport.db?mode=rwc".into();
        config.sandbox.state_file = Some("/tmp/kcp.json".into());
        config.sandbox.embedded = Some(false);
        assert_eq!(config.sandbox_state_file(), None, "no embedded sandbox");
    }

    #[test]
    fn a_sandbox_without_a_state_file_is_warned_about_only_beside_a_database_that_outlives_it() {
        let with = |url: &str, state_file: Option<&str>, embedded: Option<bool>| {
            let mut config = Config {
                database_url: url.into(),
                ..Config::default()
            };
            config.sandbox.state_file = state_file.map(str::to_string);
            config.sandbox.embedded = embedded;
            config.sandbox_forgets_what_the_database_keeps()
        };
        let pg = "postgres://postgres@127.0.0.1:5432/openport";
        assert!(
            with(pg, None, None),
            "PostgreSQL has no state file by default"
        );
        assert!(!with(pg, Some("/srv/kcp.json"), None));
        assert!(with("sqlite://pay.db?mode=rwc", Some(""), None));
        assert!(
            !with("sqlite://pay.db?mode=rwc", None, None),
            "next to the file"
        );
        assert!(!with("sqlite::memory:", None, None), "both forget");
        assert!(!with(pg, None, Some(false)), "no embedded sandbox");
    }

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn an_empty_state_file_variable_turns_the_sandbox_state_off() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OPENPORT_SANDBOX__STATE_FILE", "");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.sandbox.state_file.as_deref(), Some(""));
            assert_eq!(config.sandbox_state_file(), None);
            jail.set_env("OPENPORT_SANDBOX__STATE_FILE", "/srv/kcp.json");
            let config = Config::load(None).expect("loads");
            assert_eq!(
                config.sandbox_state_file(),
                Some(PathBuf::from("/srv/kcp.json"))
            );
            Ok(())
        });
    }

    #[test]
    fn a_lease_rounds_the_hold_up_to_whole_seconds_and_one_more() {
        let mut config = Config::default();
        config.kcp.timeout_ms = 1_500;
        assert_eq!(config.attempt_lease_secs(), 6);
        // The hold alone, as the api tests' instances run (tests/api/helpers.rs).
        config.resolver.max_clock_skew_secs = 0;
        config.resolver.settle_secs = 5;
        assert!(config.validate().is_ok(), "4.5 s of hold fit in 5 s");
    }

    #[test]
    fn in_test_mode_a_kcp_url_naming_a_production_host_refuses_to_start() {
        let mut config = Config::default();
        for (field, url) in [
            ("api_base", "https://spl.kcp.co.kr"),
            ("payment_url", "https://SPL.kcp.co.kr./gw/enc/v1/payment"),
            ("register_url", "https://smpay.kcp.co.kr/trade/register.do"),
            ("api_base", "spay.kcp.co.kr:443"),
        ] {
            let mut c = config.clone();
            let slot = match field {
                "api_base" => &mut c.kcp.api_base,
                "payment_url" => &mut c.kcp.payment_url,
                _ => &mut c.kcp.register_url,
            };
            *slot = Some(url.into());
            let refused = c.validate().expect_err(url).to_string();
            assert!(refused.contains("production host"), "{url}: {refused}");
            c.test_mode = false;
            if url.contains("://") {
                assert!(c.validate().is_ok(), "outside test mode: {url}");
            } else {
                let refused = c.validate().expect_err(url).to_string();
                assert!(refused.contains("must be an origin"), "{url}: {refused}");
            }
        }
        config.kcp.api_base = Some("https://stg-spl.kcp.co.kr".into());
        config.kcp.payment_url = Some("https://stg-spl.kcp.co.kr/gw/enc/v1/payment".into());
        config.kcp.register_url = Some("https://testsmpay.kcp.co.kr/trade/register.do".into());
        assert!(config.validate().is_ok(), "KCP's staging hosts");
        config.kcp.api_base = Some("http://127.0.0.1:9090".into());
        assert!(config.validate().is_ok(), "a standalone sandbox");
    }

    #[test]
    fn a_kcp_api_base_that_is_not_an_https_origin_refuses_to_start() {
        let live = Config {
            test_mode: false,
            ..Config::default()
        };
        for url in [
            "stg-spl.kcp.co.kr",
            "http://10.0.0.5:9090",
            "https://stg-spl.kcp.co.kr/gw/hub/v1/payment",
            "https://user:pw@stg-spl.kcp.co.kr",
        ] {
            let mut c = live.clone();
            c.kcp.api_base = Some(url.into());
            let refused = c.validate().expect_err(url).to_string();
            assert!(
                refused.contains("OPENPORT_KCP__API_BASE") && refused.contains("must be an origin"),
                "{url}: {refused}"
            );
            assert!(!refused.contains("pw@"), "{refused}");
        }
        let mut c = live.clone();
        c.kcp.api_base = Some("http://127.0.0.1:9090/".into());
        assert!(c.validate().is_ok(), "a local sandbox or egress proxy");
        let mut c = Config::default();
        c.kcp.api_base = Some("http://10.0.0.5:9090".into());
        assert!(
            c.validate().is_ok(),
            "a sandbox on another host, in test mode"
        );
    }

    /// `KCP_PAYMENT_URL` / `KCP_REGISTER_URL` replace the environment's window-approval and
    /// registration URLs. On a live instance plain http to another host sent site_cd and
    /// kcp_cert_info in clear, and the answer's `PayUrl` (where buyers type their card) came from
    /// whoever answered; they now take the api base's rule.
    #[test]
    fn a_live_kcp_payment_or_register_url_over_plain_http_to_another_host_refuses_to_start() {
        let live = Config {
            test_mode: false,
            ..Config::default()
        };
        for (field, url) in [
            ("KCP_PAYMENT_URL", "http://10.0.0.5/gw/enc/v1/payment"),
            (
                "KCP_REGISTER_URL",
                "http://192.0.2.2:19091/std/tradeReg/register",
            ),
            ("KCP_PAYMENT_URL", "http://spl.kcp.co.kr/gw/enc/v1/payment"),
            (
                "KCP_REGISTER_URL",
                "http://kcp:pw@192.0.2.2/std/tradeReg/register",
            ),
        ] {
            let mut c = live.clone();
            let slot = if field == "KCP_PAYMENT_URL" {
                &mut c.kcp.payment_url
            } else {
                &mut c.kcp.register_url
            };
            *slot = Some(url.into());
            let refused = c.validate().expect_err(url).to_string();
            assert!(
                refused.contains(field) && refused.contains("must be https"),
                "{url}: {refused}"
            );
            assert!(!refused.contains("pw@"), "{refused}");
            c.test_mode = true;
            assert!(
                c.validate().is_ok() || url.contains("spl.kcp"),
                "a sandbox on another host, in test mode: {url}"
            );
        }
        for url in [
            "http://127.0.0.1:19090/gw/enc/v1/payment",
            "http://localhost:19090/gw/enc/v1/payment",
            "http://[::1]:19090/gw/enc/v1/payment",
            "https://spl.kcp.co.kr/gw/enc/v1/payment",
        ] {
            let mut c = live.clone();
            c.kcp.payment_url = Some(url.into());
            c.kcp.register_url = Some(url.replace("gw/enc/v1/payment", "std/tradeReg/register"));
            assert!(c.validate().is_ok(), "{url}");
        }
    }

    /// The seed's `.env` names KCP's staging hosts. Copied onto a live instance (no api base:
    /// KCP's production), every window approval and billing-key window went to KCP's test
    /// environment while key-in, cancels and inquiries went to production.
    #[test]
    fn a_live_instance_refuses_kcp_staging_urls_unless_its_api_base_is_kcp_staging_too() {
        let live = Config {
            test_mode: false,
            ..Config::default()
        };
        for (field, url, host) in [
            (
                "KCP_PAYMENT_URL",
                "https://stg-spl.kcp.co.kr/gw/enc/v1/payment",
                "stg-spl.kcp.co.kr",
            ),
            (
                "KCP_REGISTER_URL",
                "https://testsmpay.kcp.co.kr/trade/register.do",
                "testsmpay.kcp.co.kr",
            ),
            (
                "KCP_REGISTER_URL",
                "https://TESTSPAY.kcp.co.kr./x",
                "testspay.kcp.co.kr",
            ),
        ] {
            for base in [
                None,
                Some("http://127.0.0.1:9090"),
                Some("https://spl.kcp.co.kr"),
            ] {
                let mut c = live.clone();
                c.kcp.api_base = base.map(Into::into);
                if field == "KCP_PAYMENT_URL" {
                    c.kcp.payment_url = Some(url.into());
                } else {
                    c.kcp.register_url = Some(url.into());
                }
                let refused = c.validate().expect_err(url).to_string();
                assert!(
                    refused.contains(field)
                        && refused.contains(&format!("staging host {host}"))
                        && refused.contains("OPENPORT_KCP__API_BASE=https://stg-spl.kcp.co.kr"),
                    "{url} beside {base:?}: {refused}"
                );
                // A live rehearsal against KCP's staging (README), and test mode, take them.
                c.kcp.api_base = Some("https://stg-spl.kcp.co.kr".into());
                assert!(c.validate().is_ok(), "{url} beside a staging api base");
                c.kcp.api_base = base.map(Into::into);
                c.test_mode = true;
                if base.is_none_or(|b| !b.contains("spl.kcp")) {
                    assert!(c.validate().is_ok(), "{url} in test mode beside {base:?}");
                }
            }
        }

        // The opposite mix: production approvals beside staging cancels and inquiries.
        let mut c = live.clone();
        c.kcp.api_base = Some("https://stg-spl.kcp.co.kr".into());
        c.kcp.payment_url = Some("https://spl.kcp.co.kr/gw/enc/v1/payment".into());
        let refused = c
            .validate()
            .expect_err("production beside staging")
            .to_string();
        assert!(
            refused.contains("KCP_PAYMENT_URL")
                && refused.contains("production host spl.kcp.co.kr"),
            "{refused}"
        );
    }

    /// A live instance took `OPENPORT_PUBLIC_URL=http://pay.example.com` silently: buyers' payment
    /// pages, the checkout link and KCP's post back with `enc_data` then crossed the network in
    /// clear.
    #[test]
    fn a_live_public_url_over_plain_http_to_another_host_refuses_to_start() {
        let live = Config {
            test_mode: false,
            ..Config::default()
        };
        for url in ["http://pay.example.com", "HTTP://10.0.0.5:8080/pay/"] {
            let mut c = live.clone();
            c.public_url = Some(url.into());
            let refused = c.validate().expect_err(url).to_string();
            assert!(
                refused.contains("OPENPORT_PUBLIC_URL")
                    && refused.contains("must be https while test mode is off"),
                "{url}: {refused}"
            );
            c.test_mode = true;
            assert!(c.validate().is_ok(), "in test mode: {url}");
        }
        for url in [
            "https://pay.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:8080/pay",
            "http://[::1]:8080",
        ] {
            let mut c = live.clone();
            c.public_url = Some(url.into());
            assert!(c.validate().is_ok(), "{url}");
        }
    }

    #[test]
    fn kcps_public_test_site_codes_are_known_whatever_their_case() {
        for site in ["T0000", "T0007", "A52Q7", "t0000", " a52q7 "] {
            assert!(is_kcp_public_test_site(site), "{site}");
        }
        for site in ["AB123", "T0001", ""] {
            assert!(!is_kcp_public_test_site(site), "{site}");
        }
    }

    #[test]
    fn kcp_credentials_given_in_part_refuse_to_start_naming_what_is_missing() {
        let mut c = Config {
            test_mode: false,
            ..Config::default()
        };
        c.kcp.site_cd = Some("A52Q7".into());
        c.kcp.cert_info = Some("-----BEGIN CERTIFICATE-----".into());
        let refused = c.validate().unwrap_err().to_string();
        assert!(
            refused.contains("KCP_PRIVATE_KEY_PATH missing"),
            "{refused}"
        );
        c.kcp.cert_info = None;
        let refused = c.validate().unwrap_err().to_string();
        assert!(
            refused.contains("KCP_CERT_INFO, KCP_PRIVATE_KEY_PATH missing"),
            "a live site code alone: {refused}"
        );
        c.test_mode = true;
        assert!(c.validate().is_ok(), "the demo merchant's site code");
        c.kcp.cert_info = Some("-----BEGIN CERTIFICATE-----".into());
        c.kcp.private_key_path = Some("/etc/openport/kcp.key".into());
        assert!(c.validate().is_ok(), "all three");
    }

    /// With test mode off, the seed's `KCP_SITE_CD=T0000` (with its certificate and key) made the
    /// first live merchant under KCP's public test site, which `openport merchant create` refuses:
    /// every payment of the shop then went under KCP's test site.
    #[test]
    #[allow(clippy::result_large_err)]
    fn a_live_start_whose_kcp_site_cd_is_a_public_test_site_refuses_to_start_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("OPENPORT_TEST_MODE", "false");
            jail.set_env(
                "KCP_CERT_INFO",
                "-----BEGIN CERTIFICATE-----MIIB-----END CERTIFICATE-----",
            );
            jail.set_env("KCP_PRIVATE_KEY_PATH", "/etc/openport/kcp.key");
            for site in ["T0000", "T0007", "A52Q7", "t0000"] {
                jail.set_env("KCP_SITE_CD", site);
                let config = Config::load(None).expect("loads");
                assert!(!config.test_mode);
                let refused = config.validate().expect_err(site).to_string();
                assert!(
                    refused.contains(&format!(
                        "KCP_SITE_CD {site} is one of KCP's public test sites"
                    )) && refused.contains("refused outside test mode"),
                    "{site}: {refused}"
                );
            }
            jail.set_env("KCP_SITE_CD", "AB123");
            let config = Config::load(None).expect("loads");
            assert!(config.validate().is_ok(), "the contract's own site code");

            jail.set_env("OPENPORT_TEST_MODE", "true");
            jail.set_env("KCP_SITE_CD", "T0000");
            let config = Config::load(None).expect("loads");
            assert!(
                config.validate().is_ok(),
                "in test mode: the demo merchant's site"
            );
            Ok(())
        });
    }

    #[test]
    fn a_public_url_with_credentials_is_refused_without_showing_its_password() {
        let config = Config {
            public_url: Some("https://shop:hunter2@pay.example.com".into()),
            ..Config::default()
        };
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("OPENPORT_PUBLIC_URL"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn secrets_and_the_seeds_kcp_strings_are_read_from_the_environment_as_typed() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KCP_PRIVATE_KEY_PASSWORD", "482913");
            jail.set_env(
                "OPENPORT_ADMIN_TOKEN",
                "\"quoted\" [and] 12345678901234567890123",
            );
            jail.set_env("OPENPORT_MASTER_KEY", "true");
            jail.set_env("OPENPORT_PREVIOUS_MASTER_KEYS", "[a, b]");
            jail.set_env("KCP_SITE_CD", "12345");
            jail.set_env("OPENPORT_KCP__TIMEOUT_MS", "1500");
            let config = Config::load(None).expect("loads");
            let secret =
                |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
            assert_eq!(
                secret(&config.kcp.private_key_password).as_deref(),
                Some("482913")
            );
            assert_eq!(
                secret(&config.admin_token).as_deref(),
                Some("\"quoted\" [and] 12345678901234567890123"),
                "quotes kept as typed"
            );
            assert_eq!(secret(&config.master_key).as_deref(), Some("true"));
            assert_eq!(
                secret(&config.previous_master_keys).as_deref(),
                Some("[a, b]")
            );
            assert_eq!(config.kcp.site_cd.as_deref(), Some("12345"));
            assert_eq!(
                config.kcp.timeout_ms, 1500,
                "other settings are still typed"
            );

            // The seed's name wins over the OPENPORT_ one, as before.
            jail.set_env("OPENPORT_KCP__PRIVATE_KEY_PASSWORD", "other");
            let config = Config::load(None).expect("loads");
            assert_eq!(
                secret(&config.kcp.private_key_password).as_deref(),
                Some("482913")
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_configuration_error_names_a_secrets_setting_and_never_shows_its_value() {
        figment::Jail::expect_with(|jail| {
            // The environment wins over the file: a DATABASE_URL of the test run (the PostgreSQL
            // suite sets one) would hide the file's bad value.
            jail.clear_env();
            for (toml, setting, hidden) in [
                ("master_key = 482913", "OPENPORT_MASTER_KEY", "482913"),
                (
                    "admin_token = [\"tok-3141592653\"]",
                    "OPENPORT_ADMIN_TOKEN",
                    "tok-3141592653",
                ),
                (
                    "previous_master_keys = 1.5",
                    "OPENPORT_PREVIOUS_MASTER_KEYS",
                    "1.5",
                ),
                ("database_url = 80", "DATABASE_URL", "80"),
                (
                    "[kcp]\nprivate_key_password = 271828",
                    "KCP_PRIVATE_KEY_PASSWORD",
                    "271828",
                ),
            ] {
                jail.create_file("openport.toml", toml)?;
                let refused = Config::load(Some(Path::new("openport.toml")))
                    .expect_err(toml)
                    .to_string();
                assert!(refused.contains("bad value for"), "{toml}: {refused}");
                assert!(refused.contains(setting), "{toml}: {refused}");
                assert!(!refused.contains(hidden), "{toml}: {refused}");
            }

            jail.create_file(
                "broken.toml",
                "log_format = \"json\"\nmaster_key = \"c2VjcmV0LWtleQ\n",
            )?;
            let refused = Config::load(Some(Path::new("broken.toml")))
                .expect_err("an unterminated string")
                .to_string();
            assert!(refused.contains("line 2"), "{refused}");
            assert!(!refused.contains("c2VjcmV0LWtleQ"), "{refused}");

            // A misspelt key would leave its setting at the default (outside test mode, KCP's
            // production URLs for `api_base`): refused, naming the keys, never their values.
            jail.create_file(
                "misspelt.toml",
                "listen = \"127.0.0.1:9\"\nbogus = \"v-1\"\n[kcp]\napi_bas = \"http://x\"\ntimeout_ms = 5000\n",
            )?;
            let refused = Config::load(Some(Path::new("misspelt.toml")))
                .expect_err("unknown keys")
                .to_string();
            assert!(refused.contains("`bogus`"), "{refused}");
            assert!(refused.contains("`kcp.api_bas`"), "{refused}");
            assert!(
                !refused.contains("listen") && !refused.contains("timeout_ms"),
                "{refused}"
            );
            assert!(
                !refused.contains("http://x") && !refused.contains("v-1"),
                "{refused}"
            );
            jail.create_file(
                "known.toml",
                "listen = \"127.0.0.1:9\"\n[kcp]\ntimeout_ms = 5000\n[resolver]\ninterval_ms = 50\n[http]\nmax_connections = 99\n",
            )?;
            let config = Config::load(Some(Path::new("known.toml"))).expect("known keys load");
            assert_eq!(config.listen.to_string(), "127.0.0.1:9");

            jail.create_file("typo.toml", "log_format = 5\n")?;
            let refused = Config::load(Some(Path::new("typo.toml")))
                .expect_err("a number is not a log format")
                .to_string();
            assert!(refused.contains("log_format"), "{refused}");
            Ok(())
        });
    }

    /// `serve --config /etc/openport/openport.tmol` (a typo) started in test mode with the demo
    /// merchant: figment skips a file that is not there, and looks for a relative one in the
    /// parent directories too. A file that cannot be read refuses the start, naming it.
    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn a_configuration_file_that_cannot_be_read_refuses_to_start_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let refused = Config::load(Some(Path::new("openport.tmol")))
                .expect_err("a file that is not there")
                .to_string();
            assert!(refused.contains("openport.tmol"), "{refused}");

            // A relative name is the file in the working directory, not one above it.
            jail.create_file("openport.toml", "test_mode = false\n")?;
            let sub = jail.create_dir("sub")?;
            jail.create_dir("sub/dir")?;
            jail.change_dir(&sub)?;
            let refused = Config::load(Some(Path::new("openport.toml")))
                .expect_err("the parent directory's file is not read")
                .to_string();
            assert!(refused.contains("openport.toml"), "{refused}");

            // Nor is a directory a configuration file.
            let refused = Config::load(Some(Path::new("dir")))
                .expect_err("a directory")
                .to_string();
            assert!(refused.contains("dir"), "{refused}");

            let config = Config::load(Some(Path::new("../openport.toml"))).expect("loads");
            assert!(!config.test_mode);
            Ok(())
        });
    }

    /// Only a TOML file's unknown keys were refused: a misspelt `OPENPORT_…` variable (docs once
    /// said `OPENPORT_DATABASE__URL`) was ignored without a word. The names no setting reads are
    /// given (for a warning at start), never their values; the names openport's own tools and
    /// tests read (`OPENPORT_URL`, …) are not among them.
    #[test]
    #[allow(clippy::result_large_err)]
    fn an_openport_variable_no_setting_reads_is_named_unless_openports_own_tools_read_it() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            assert_eq!(Config::unread_environment(), Vec::<String>::new());
            jail.set_env("OPENPORT_DATABASE__URL", "postgres://u:pw@db/x");
            jail.set_env("OPENPORT_KCP__API_BAS", "https://stg-spl.kcp.co.kr");
            jail.set_env("OPENPORT_TESTMODE", "false");
            jail.set_env("OPENPORT_DATABASE_URL", "sqlite://x.db");
            jail.set_env("OPENPORT_TEST_MODE", "true");
            jail.set_env("OPENPORT_MASTER_KEY", "12345");
            jail.set_env("OPENPORT_KCP__TIMEOUT_MS", "5000");
            jail.set_env("OPENPORT_KCP__SITE_CD", "T0000");
            jail.set_env("openport_log_format", "json");
            jail.set_env("OPENPORT_URL", "http://127.0.0.1:8080/");
            jail.set_env("OPENPORT_IMP_CODE", "imp00000000");
            jail.set_env("KCP_SITE_CD", "T0000");
            jail.set_env("OTHER_PROGRAM", "x");
            assert!(Config::load(None).is_ok());
            let mut unread = Config::unread_environment();
            unread.sort();
            assert_eq!(
                unread,
                [
                    "OPENPORT_DATABASE__URL",
                    "OPENPORT_KCP__API_BAS",
                    "OPENPORT_TESTMODE"
                ]
            );
            Ok(())
        });
    }

    /// Every `OPENPORT_…` name README.md and docs/*.md give is one openport (or its own tools)
    /// reads: docs/operations.md told operators to check `OPENPORT_DATABASE__URL`, which nothing
    /// reads.
    #[test]
    #[allow(clippy::result_large_err)]
    fn every_openport_variable_the_readme_and_the_docs_name_is_one_openport_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
            let path = entry.expect("a docs/ entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        let name = regex::Regex::new(r"OPENPORT_[A-Z0-9_]+").unwrap();
        let mut named = std::collections::BTreeMap::<String, String>::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("readable");
            for m in name.find_iter(&text) {
                named
                    .entry(m.as_str().to_owned())
                    .or_insert_with(|| file.display().to_string());
            }
        }
        assert!(named.contains_key("OPENPORT_MASTER_KEY"), "{named:?}");
        figment::Jail::expect_with(|jail| {
            let mut unread = vec![];
            for (var, file) in &named {
                // Some value of the setting's type reads it; an unknown name is unread whatever
                // its value.
                let read = ["true", "1", "x", "127.0.0.1:1"].iter().any(|value| {
                    jail.clear_env();
                    jail.set_env(var, value);
                    unread_env_vars().is_some_and(|u| u.is_empty())
                });
                if !read {
                    unread.push(format!("{var} ({file})"));
                }
            }
            assert!(unread.is_empty(), "read by nothing: {unread:?}");
            Ok(())
        });
    }
}
