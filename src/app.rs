//! Assembly: configuration → database → KCP side → gateway → HTTP server and background jobs.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::failures::UnchosenServerErrors;
use crate::clock::Clock;
use crate::config::Config;
use crate::net::AddressList;
use crate::pg::kcp::KcpUrls;
use crate::service::auth::TokenCache;
use crate::service::clock_check::ClockReading;
use crate::service::connectors::Connectors;
use crate::service::merchants::{serves_in_mode, CreatedMerchant};
use crate::service::schema_check::SCHEMA_CHECK_EVERY;
use crate::service::secrets::{MasterKey, SecretError};
use crate::service::{Gateway, GatewaySettings};
use crate::store::startup_lock::StartupLock;
use crate::store::{redact_url, Db};

mod first_merchant;
pub mod open_files;
mod request_body;
pub use first_merchant::Seeding;
use request_body::MAX_BODY_BYTES;

/// The master key (with the previous ones) that seals secrets and keys the imp_secret hashes.
/// Outside test mode one must be configured: the public test-mode key would hash and seal a live
/// merchant's secrets under a key anyone has (and under a key id the live instances do not use,
/// so a secret renewed that way would be refused by them). Every command that seals or hashes
/// goes through here.
///
/// For the same reason the public key is refused as `OPENPORT_MASTER_KEY` when test mode is off,
/// even when set explicitly (its base64 is in docs/operations.md, for listing it as a previous
/// key): it may only open what test mode sealed, never seal or hash anything new.
pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if !config.test_mode && config.master_key.is_none() {
        anyhow::bail!("OPENPORT_MASTER_KEY (base64 of 32 bytes) is required when test mode is off");
    }
    // The setting at fault is named (README: "a configuration error names a secret's
    // setting"), never the value.
    let keys = MasterKey::with_previous(
        config.master_key.as_ref(),
        config.previous_master_keys.as_ref(),
    )
    .map_err(|e| match e {
        SecretError::BadPreviousMasterKey(_) => {
            anyhow::anyhow!("OPENPORT_PREVIOUS_MASTER_KEYS: {e}")
        }
        e => anyhow::anyhow!("OPENPORT_MASTER_KEY: {e}"),
    })?;
    if !config.test_mode && keys.key_id() == MasterKey::test_mode_key_id() {
        anyhow::bail!(
            "OPENPORT_MASTER_KEY is openport's public test-mode key, which anyone can use to open \
             what is sealed under it: a live instance needs a key of its own (generate it once \
             with `openssl rand -base64 32` and store it, docs/operations.md \"Start\"). Values \
             a test-mode instance sealed under the public key still open when it is listed in \
             OPENPORT_PREVIOUS_MASTER_KEYS instead"
        );
    }
    Ok(keys)
}

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The use cases (database, KCP connectors, clock, secrets). Behind an `Arc`: axum clones the
    /// state for every request, and a `Gateway` holds strings, key schedules and a dozen handles.
    pub gateway: Arc<Gateway>,
    /// Who may post KCP's common notifications, and which proxies' `X-Forwarded-For` is believed.
    pub notify_sources: Arc<NotifySources>,
    /// The URLs openport hands out (checkout) and the one it calls itself on (demo verifier).
    pub urls: Arc<PublicUrls>,
}

/// [`Config::public_url`], checked, and this instance's own address.
#[derive(Debug)]
pub struct PublicUrls {
    /// `OPENPORT_PUBLIC_URL` without its trailing slash: the base of every URL handed out.
    pub configured: Option<String>,
    /// `http://` + the address this instance listens on (an unspecified address as loopback):
    /// where the demo verifier reaches this instance, whatever a request's `Host` names.
    pub local: String,
}

impl PublicUrls {
    fn new(configured: Option<String>, listen: SocketAddr) -> Self {
        let ip = match listen.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        Self {
            configured,
            local: format!("http://{}", SocketAddr::new(ip, listen.port())),
        }
    }
}

/// [`crate::config::KcpSettings::notify_sources`] and [`Config::trusted_proxies`], parsed.
#[derive(Debug)]
pub struct NotifySources {
    pub allowed: AddressList,
    pub proxies: AddressList,
}

/// The KCP sandbox served by this process (test mode).
#[derive(Clone)]
pub struct EmbeddedSandbox {
    pub sandbox: kcp_sandbox::Sandbox,
    pub addr: SocketAddr,
}

/// A running openport.
pub struct App {
    /// Where the gateway listens (the real port when configured with port 0).
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub sandbox: Option<EmbeddedSandbox>,
    /// The first merchant, when this start created it (test mode: the demo merchant on an empty
    /// database; otherwise the one of the `KCP_*` settings on a database without a live merchant).
    pub demo: Option<CreatedMerchant>,
    /// Where a live first merchant's credentials were written (mode 0600): its imp_secret is
    /// never printed, since stdout is where the logs go.
    pub credentials_file: Option<std::path::PathBuf>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    /// The scheduler job, awaited at shutdown so that the charges of its batch finish and are
    /// recorded before the process exits (a schedule left claimed is still recorded from its
    /// payment by the next run, but only once its lease runs out).
    scheduler: Option<tokio::task::JoinHandle<()>>,
    /// The webhook worker, awaited at shutdown so that POSTs in flight record their result
    /// (within `jobs::webhooks`' grace; the rest are retried once their lease expires).
    webhooks: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Builds and starts everything with the system clock, as `openport serve` does: the first
    /// merchant is made when there is none (a live one's credentials file goes to the working
    /// directory).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let seeding = Seeding::FirstMerchant {
            credentials_dir: ".".into(),
        };
        Self::build_with(config, clock, seeding).await
    }

    pub async fn build_with(
        config: Config,
        clock: Clock,
        seeding: Seeding,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        // The open-file limit is raised at every start, and a configured cap must fit in it:
        // checked before the database is opened (app/open_files.rs).
        let max_connections =
            open_files::max_connections(config.http.max_connections, config.embedded_sandbox())?;
        // Allowed (a live rehearsal against KCP staging, README), but a live instance left on it
        // records as live, and announces paid, payments that KCP's test system approved and no
        // card paid.
        if let Some(host) = config
            .kcp
            .api_base
            .as_deref()
            .filter(|_| !config.test_mode)
            .and_then(crate::config::kcp_staging_host)
        {
            tracing::warn!(
                "test mode is off but OPENPORT_KCP__API_BASE names KCP's staging host {host}: \
                 payments go to KCP's test system, no card is charged, and each is recorded as \
                 live (sandbox: false) and announced paid; unset it for KCP's production hosts"
            );
        }
        if !config.test_mode && config.public_url.is_none() {
            tracing::warn!("OPENPORT_PUBLIC_URL is not set: browser checkout (IMP.request_pay) is refused except on a loopback Host (docs/operations.md \"Public URL\")");
        }
        let Prepared {
            gateway,
            sandbox,
            first,
        } = prepare(&config, clock, &seeding, true).await?;
        let (demo, credentials_file) = match first {
            Some(f) => (Some(f.created), f.credentials_file),
            None => (None, None),
        };

        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        crate::jobs::merchant_changes::spawn(&gateway, &config.database_url, &shutdown);
        // With or without background jobs: it is what stops this instance's requests too.
        spawn_schema_check(gateway.clone(), SCHEMA_CHECK_EVERY, shutdown.subscribe());
        let mut scheduler = None;
        let mut webhooks = None;
        if config.background_jobs {
            spawn_resolver(
                gateway.clone(),
                Duration::from_millis(config.resolver.interval_ms),
                shutdown.subscribe(),
            );
            spawn_clock_check(gateway.clone(), CLOCK_CHECK_EVERY, shutdown.subscribe());
            webhooks = crate::jobs::webhooks::spawn(&gateway, &config, &shutdown);
            scheduler = Some(crate::jobs::scheduler::spawn(
                gateway.clone(),
                Duration::from_millis(config.resolver.interval_ms.min(1000)),
                &config.scheduler,
                shutdown.subscribe(),
            ));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if let Some(sb) = &sandbox {
            // The embedded KCP sends its common notifications (vbank deposits) to this gateway.
            sb.sandbox
                .set_notify_url("*", &format!("http://{addr}/kcp/notify"));
        }
        let service = http_service(
            AppState {
                gateway: Arc::new(gateway.clone()),
                notify_sources: Arc::new(NotifySources {
                    allowed: config.kcp_notify_sources()?,
                    proxies: config.trusted_proxies()?,
                }),
                urls: Arc::new(PublicUrls::new(config.public_base()?, addr)),
            },
            request_body::BodyLimits {
                max_bytes: MAX_BODY_BYTES,
                deadline: config.http.body_read_timeout(),
            },
        );
        let limits = http_server::Limits {
            header_read_timeout: config.http.header_read_timeout(),
            write_stall_timeout: config.http.write_stall_timeout(),
            // The longest a request in flight takes when its client keeps up: the rest of its
            // body, a cancel's wait for another cancel of its payment (`cancel_wait`), its KCP
            // calls (`attempt_hold`) and one stall of its response.
            shutdown_grace: config.http.body_read_timeout()
                + config.cancel_wait()
                + config.attempt_hold()
                + config.http.write_stall_timeout(),
            max_connections,
        };
        let server = tokio::spawn(async move {
            let done = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            http_server::serve(listener, service, limits, done).await;
        });
        if config.admin_token.is_none() {
            // Else an operator who never set it (README's first start sets none) reads the 401s of
            // `/admin/*` as a mistyped token.
            tracing::info!(
                %addr,
                "operator API off: OPENPORT_ADMIN_TOKEN is not set, every /admin/* call answers 401"
            );
        }
        tracing::info!(
            %addr,
            test_mode = config.test_mode,
            max_connections = limits.max_connections,
            "openport listening"
        );
        Ok(Self {
            addr,
            gateway,
            sandbox,
            demo,
            credentials_file,
            shutdown,
            server,
            scheduler,
            webhooks,
        })
    }

    /// Stops accepting requests, lets in-flight ones finish, and stops the jobs, waiting for the
    /// scheduler's charges and the webhook POSTs in flight.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the server stops (after `shutdown` or a fatal error), then stops the jobs,
    /// waits for the scheduler's charges and the webhook POSTs in flight, and writes the embedded
    /// sandbox's state, so that a clean stop loses none of it to the state writer's debounce.
    pub async fn wait(self) {
        let _ = self.server.await;
        let _ = self.shutdown.send(true);
        // Both already stop on their own; awaiting one after the other adds no time.
        for job in [self.scheduler, self.webhooks].into_iter().flatten() {
            let _ = job.await;
        }
        if let Some(embedded) = self.sandbox {
            let sandbox = embedded.sandbox;
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || sandbox.persist_now()).await
            {
                tracing::error!("{error:#}");
            }
        }
    }

    pub fn stop_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// What [`prepare`] makes.
struct Prepared {
    gateway: Gateway,
    sandbox: Option<EmbeddedSandbox>,
    first: Option<first_merchant::FirstMerchant>,
}

/// What every start makes before anything is served, `serve`'s and an operator command's alike:
/// the migrated database, the embedded sandbox when configured, the gateway over them (its clock
/// checked, its master keys matched against the stored values), and the first merchant when
/// `seeding` asks for one. Under the startup lock (store/startup_lock.rs), released before it
/// returns. No HTTP listener and no background work: [`App::build_with`] adds them for `serve`.
/// `warn_of_rotation`: warn of a master-key rotation not applied yet, which every start does but
/// `openport reseal`'s, the command that warning asks for.
async fn prepare(
    config: &Config,
    clock: Clock,
    seeding: &Seeding,
    warn_of_rotation: bool,
) -> anyhow::Result<Prepared> {
    let secrets = master_key(config)?;
    // After the check: outside test mode a missing key is refused, not used.
    if config.master_key.is_none() {
        tracing::warn!("no master key configured: using the public test-mode key (never use this in production)");
    }
    tracing::info!(database = %redact_url(&config.database_url), "connecting");
    let db = Db::connect_with_pool(&config.database_url, config.database_pool_size)
        .await
        .context("database")?;
    // Instances starting together migrate and make the first merchant one after the other
    // (store/startup_lock.rs): released once the first merchant is settled.
    let startup = StartupLock::acquire(&config.database_url)
        .await
        .context("startup lock")?;
    if config.upgrade_schema {
        db.migrate().await.context("migrations")?;
    } else {
        db.migrate_if_new().await?;
    }

    let sandbox = if config.embedded_sandbox() {
        // KCP never forgets what it approved: the sandbox keeps its books next to the database
        // that keeps the payments, or forgets them with each stop when told to.
        let state_file = config.sandbox_state_file();
        match &state_file {
            Some(path) => {
                tracing::info!(path = %path.display(), "embedded KCP sandbox keeps its state in a file")
            }
            None if config.sandbox_forgets_what_the_database_keeps() => {
                tracing::warn!(
                    "embedded KCP sandbox state in memory only, while the database keeps its \
                     payments: after a restart the sandbox knows none of them (their cancels end \
                     in conflicts for an operator, billing keys are unknown); set \
                     OPENPORT_SANDBOX__STATE_FILE to a file to keep its books"
                )
            }
            None => tracing::info!("embedded KCP sandbox state in memory only"),
        }
        let sb = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig {
            now: clock.as_fn(),
            test_mode: true,
            state_file,
            ..kcp_sandbox::SandboxConfig::default()
        })
        .context("embedded KCP sandbox (OPENPORT_SANDBOX__STATE_FILE)")?;
        let listener = TcpListener::bind(config.sandbox.listen)
            .await
            .context("sandbox listen address")?;
        let addr = listener.local_addr()?;
        let serving = sb.clone();
        let limits = kcp_sandbox::ServerLimits {
            header_read: config.http.header_read_timeout(),
            body_read: config.http.body_read_timeout(),
            max_connections: open_files::EMBEDDED_SANDBOX_CONNECTIONS,
        };
        tokio::spawn(kcp_sandbox::serve_until_with(
            serving,
            listener,
            std::future::pending(),
            limits,
        ));
        tracing::info!(%addr, "embedded KCP sandbox listening");
        Some(EmbeddedSandbox { sandbox: sb, addr })
    } else {
        None
    };
    let urls = match (&sandbox, &config.kcp.api_base) {
        (Some(sb), _) => KcpUrls::with_base(&format!("http://{}", sb.addr)),
        (None, Some(base)) => KcpUrls::with_base(base),
        (None, None) if config.test_mode => KcpUrls::test(),
        (None, None) => KcpUrls::production(),
    };
    // The embedded sandbox serves every path itself; otherwise the seed's URLs apply.
    let urls = if sandbox.is_some() {
        urls
    } else {
        urls.with_named(
            config.kcp.payment_url.as_deref(),
            config.kcp.register_url.as_deref(),
        )
    };
    let mut gateway = Gateway {
        db,
        clock,
        secrets,
        connectors: Connectors::new(
            urls,
            Duration::from_millis(config.kcp.timeout_ms),
            config.kcp_pool_idle_timeout(),
            config.test_mode,
        ),
        settings: GatewaySettings {
            test_mode: config.test_mode,
            settle_secs: config.resolver.settle_secs,
            lease_secs: config.attempt_lease_secs(),
            schedule_concurrency: config.scheduler.concurrency,
            webhook_private_targets: config.webhook_private_targets(),
            trust_order_no_inquiry: config.kcp.order_no_inquiry.unwrap_or(sandbox.is_some()),
            max_clock_skew_ms: i64::try_from(config.resolver.max_clock_skew_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            scheduler_paused: config.scheduler.paused,
            cancel_wait: config.cancel_wait(),
            window_ttl_secs: i64::try_from(config.checkout.window_ttl_secs).unwrap_or(i64::MAX),
        },
        tokens: Arc::new(TokenCache::default()),
        // As typed but for surrounding whitespace (the newline of the file it was read
        // from): a header cannot carry it, and presented tokens are trimmed.
        admin_token: config
            .admin_token
            .as_ref()
            .map(|t| Arc::new(SecretString::from(t.expose_secret().trim()))),
        clock_skewed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        newer_schema: Arc::new(std::sync::OnceLock::new()),
        webhooks_written: Arc::new(tokio::sync::Notify::new()),
    };
    // Instances sharing a database judge each other's leases by their own clocks.
    let reading = gateway.check_clock().await.context("clock check")?;
    if let ClockReading::Skewed { .. } = reading {
        anyhow::bail!("{reading}");
    }
    tracing::info!(clock = %reading, "clock checked against the database");
    let stored = gateway.stored_master_keys().await?;
    if let Some(unknown) = &stored.unknown {
        return Err(unknown.clone().into());
    }
    if warn_of_rotation {
        stored.warn_of_pending_rotation(&gateway.secrets);
    }
    gateway.secrets = gateway.secrets.upgrading_hashes_only_from(&stored.in_use);
    warn_of_test_merchants(&gateway).await?;
    let first =
        first_merchant::ensure_first_merchant(config, &gateway, sandbox.as_ref(), seeding).await?;
    startup.release().await;
    Ok(Prepared {
        gateway,
        sandbox,
        first,
    })
}

/// The gateway alone, for an operator command (`openport attempt …`, `merchant create`,
/// `reseal`): the database (migrated only when new, `store::Db::migrate_if_new`), the
/// configured KCP and the master key, and nothing that runs beside the command. No HTTP
/// listener: an operator command is not a server, and it used to serve the whole gateway API on
/// a random loopback port for as long as it ran, a port nobody asked for nor looked after. No
/// background jobs, no merchant-change listener (a PostgreSQL connection, for a cache a command
/// of a few seconds does not keep long), no embedded sandbox (one beside the serving instance
/// would be another KCP, knowing none of its trades), and no first merchant.
///
/// A database without openport's schema (a SQLite file that does not exist, an empty PostgreSQL
/// database) is refused, nothing made: these commands read or change the serving instance's
/// database, and run from another directory, or with `DATABASE_URL` unset, they made the default
/// `./openport.db` and answered "nothing" from it (`attempt list`, `schedule list --due` before
/// unpausing the scheduler after a restore, which then charged schedules charged already). Only
/// `merchant create` makes a new database ([`merchant_create_gateway`]).
pub async fn operator_gateway(config: Config) -> anyhow::Result<Gateway> {
    command_gateway(config, true, NewDatabase::Refuse).await
}

/// [`operator_gateway`] for `openport merchant create`, the one command that may be the first on
/// a new database (before any start): it makes its schema.
pub async fn merchant_create_gateway(config: Config) -> anyhow::Result<Gateway> {
    command_gateway(config, true, NewDatabase::Migrate).await
}

/// [`operator_gateway`] for `openport reseal`: without the start's warning of a master-key
/// rotation not applied yet, which told the operator running `openport reseal` to run it.
pub async fn reseal_gateway(config: Config) -> anyhow::Result<Gateway> {
    command_gateway(config, false, NewDatabase::Refuse).await
}

/// Refuses, making nothing, a database that holds no openport schema, for an operator command
/// that works on the serving instance's database ([`operator_gateway`]).
pub async fn refuse_new_database(database_url: &str) -> anyhow::Result<()> {
    if crate::store::holds_schema(database_url).await? {
        return Ok(());
    }
    anyhow::bail!(
        "database {} holds no openport data (a new, empty database; nothing was made): operator \
         commands work on the database `openport serve` uses; set DATABASE_URL (or \
         --database-url) to it. Its default, sqlite://openport.db?mode=rwc, is a file in the \
         directory the command runs in",
        redact_url(database_url)
    )
}

/// What an operator command does with a database that holds no openport schema.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NewDatabase {
    Migrate,
    Refuse,
}

async fn command_gateway(
    mut config: Config,
    warn_of_rotation: bool,
    new_database: NewDatabase,
) -> anyhow::Result<Gateway> {
    if new_database == NewDatabase::Refuse {
        refuse_new_database(&config.database_url).await?;
    }
    config.upgrade_schema = false;
    config.sandbox.embedded = Some(false);
    // Nor a client connection: `serve`'s cap is none of its business.
    config.http.max_connections = None;
    config.validate()?;
    let prepared = prepare(&config, Clock::system(), &Seeding::Off, warn_of_rotation).await?;
    Ok(prepared.gateway)
}

/// The router with its middleware, wrapped by path normalisation (which must run before routing).
fn http_service(
    state: AppState,
    body_limits: request_body::BodyLimits,
) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<
    impl tower::Service<
            Request<axum::body::Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone
        + Send,
    SocketAddr,
> {
    let request_id = HeaderName::from_static("x-request-id");
    let outdated = state.clone();
    let router = crate::api::router()
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new(UnchosenServerErrors::make_classifier())
                        .make_span_with(request_span),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                // Before the body is read: an instance older than its database takes no work
                // (service/schema_check.rs).
                .layer(axum::middleware::from_fn_with_state(
                    outdated,
                    crate::api::outdated::refuse_when_outdated,
                ))
                // The body is in, whole and within the limit, before anything below reads it.
                .layer(axum::middleware::from_fn_with_state(
                    body_limits,
                    request_body::read_whole_body,
                ))
                .layer(axum::middleware::from_fn(
                    crate::api::extract::refuse_control_characters,
                )),
        )
        .with_state(state);
    let svc = ServiceBuilder::new()
        .map_request(crate::api::normalize_path)
        .service(router);
    // The peer's address is kept for `/kcp/notify`, which only KCP's senders may use.
    axum::ServiceExt::<Request<axum::body::Body>>::into_make_service_with_connect_info::<SocketAddr>(
        svc,
    )
}

/// How often the resolver looks for deposits KCP notified while it could not confirm them
/// (`Gateway::reverify_notifications`) and for open virtual accounts due for a look at KCP
/// (`Gateway::check_open_vbanks`): each is asked about every five minutes (an hour) at most, so
/// a scan on every resolver tick would be wasted.
const REVERIFY_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How often this host's clock is compared with the database's (`Gateway::check_clock`): a clock
/// that drifts off stops this instance claiming attempts and schedules and opening KCP calls.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(60);

/// The clock check on its own timer, not in the resolver's loop: a resolver sweep makes one KCP
/// call per due item, each up to `kcp.timeout_ms`, so while KCP hangs a pass takes most of an
/// hour, and a verdict refreshed between passes would let a clock that stepped meanwhile judge
/// other instances' leases all that time. Not awaited at shutdown, like the resolver: a reading
/// holds nothing to finish.
fn spawn_clock_check(gateway: Gateway, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
    spawn_every(every, stop, move || {
        let gateway = gateway.clone();
        async move {
            // The verdict is recorded (and logged) by the check; claims obey it.
            if let Err(e) = gateway.check_clock().await {
                tracing::error!("clock check: {e}");
            }
            false
        }
    });
}

/// Reads the version table every `every` until a newer openport's migration shows up there
/// (service/schema_check.rs), then ends: the verdict is never taken back. Not awaited at
/// shutdown, like the clock check: a read holds nothing to finish.
fn spawn_schema_check(gateway: Gateway, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
    spawn_every(every, stop, move || {
        let gateway = gateway.clone();
        async move {
            match gateway.check_schema().await {
                Ok(outdated) => outdated,
                // The health check names a database that does not answer; this waits for it.
                Err(e) => {
                    tracing::warn!("schema check: {e}");
                    false
                }
            }
        }
    });
}

/// Runs `tick` every `every` until shutdown, or until `tick` answers true (nothing left to do):
/// the loop the clock and schema checks share. Not awaited at shutdown: a tick holds nothing to
/// finish.
fn spawn_every<F, Fut>(every: Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if tick().await {
                return;
            }
        }
    });
}

fn spawn_resolver(gateway: Gateway, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut next_sweep = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Nothing at all on an instance older than its database (service/schema_check.rs):
            // its steps refuse by themselves, but for the notification sweep, stopped here.
            if gateway.is_outdated() {
                continue;
            }
            if let Err(e) = gateway.resolve_due(100).await {
                tracing::error!("resolver: {e}");
            }
            // Replaced billing keys KCP has not confirmed deleted (service/retired_keys.rs): an
            // indexed read of the pending ones, nearly always empty.
            if let Err(e) = gateway.retry_key_deletions(100).await {
                tracing::error!("resolver: retired billing keys: {e}");
            }
            if std::time::Instant::now() >= next_sweep {
                next_sweep = std::time::Instant::now() + REVERIFY_SWEEP_EVERY;
                if let Err(e) = gateway.reverify_notifications(100).await {
                    tracing::error!("resolver: unverified KCP notifications: {e}");
                }
                // Virtual accounts awaiting their deposit, due for a look at KCP (hourly each):
                // a deposit whose notifications never arrived (service/vbank_checks.rs).
                if let Err(e) = gateway.check_open_vbanks(100).await {
                    tracing::error!("resolver: open virtual accounts: {e}");
                }
            }
        }
    });
}

/// Outside test mode, names the merchants made in test mode: they get no token and no checkout
/// here ([`serves_in_mode`]), which an operator who tried openport out on this database should
/// know rather than find out from a 401.
async fn warn_of_test_merchants(gateway: &Gateway) -> anyhow::Result<()> {
    let test_mode = gateway.settings.test_mode;
    let idle: Vec<String> = gateway
        .list_merchants()
        .await?
        .into_iter()
        .filter(|m| !serves_in_mode(test_mode, m))
        .map(|m| m.imp_code)
        .collect();
    if !idle.is_empty() {
        tracing::warn!(
            merchants = %idle.join(", "),
            "merchants made in test mode get no token and no checkout outside test mode (docs/operations.md \"From test mode to live\")"
        );
    }
    Ok(())
}

/// The span of one request: method, route and request id only. Bodies and queries may hold
/// personal data, and a path may hold a capability: `/checkout/session/{token}` is the buyer's
/// checkout, so the route's template is logged (`MatchedPath`), never the path itself.
fn request_span(req: &Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    tracing::info_span!("request", method = %req.method(), route = %route, request_id = %id)
}

/// A certificate and encrypted key for `site_cd` from the sandbox CA, with a fresh passphrase.
pub async fn issue_sandbox_certificate(
    sandbox: &kcp_sandbox::Sandbox,
    site_cd: &str,
) -> anyhow::Result<(String, String, SecretString)> {
    let pass = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    let sb = sandbox.clone();
    let site = site_cd.to_string();
    let p = pass.clone();
    let issued = tokio::task::spawn_blocking(move || sb.issue_certificate(&site, &p)).await??;
    Ok((
        issued.certificate_pem,
        issued.encrypted_private_key_pem,
        SecretString::from(pass),
    ))
}
