//! The `openport` command line: serve | migrate | merchant … | sandbox ….
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use openport::config::Config;
use openport::service::attempts::{PaidAtSource, ReconciledPayment};
use openport::service::merchants::{new_imp_secret, set_kcp_group_id, NewMerchant};
use openport::service::Gateway;
use openport::store::startup_lock::StartupLock;
use openport::App;
use secrecy::{ExposeSecret, SecretString};

/// A request allocates a lot of small, short-lived buffers (rows, SQL text, JSON); glibc's malloc
/// and free were ≈ 25 % of a lookup's CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "openport",
    version,
    about = "iamport (PortOne V1) compatible payment gateway over NHN KCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `serve` takes: the gateway's listen address, and what every command takes.
#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Listen address (env OPENPORT_LISTEN). Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// What every command that opens the database takes. No listen address: only `serve` listens
/// (an operator command opens no port, `openport::app::operator_gateway`), so `--listen` given
/// to one is refused rather than ignored.
#[derive(Args, Clone, Default)]
struct Common {
    /// Database URL (env DATABASE_URL). Default sqlite://openport.db?mode=rwc.
    #[arg(long)]
    database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (test mode by default, with the embedded KCP sandbox).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(Common),
    /// After a master-key rotation: re-seal every stored secret under the current key
    /// (OPENPORT_MASTER_KEY), opening old values with OPENPORT_PREVIOUS_MASTER_KEYS.
    Reseal(Common),
    /// Manage merchants.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// Open KCP attempts: list them, or settle one an operator checked in KCP's admin.
    Attempt {
        #[command(subcommand)]
        command: AttemptCommand,
    },
    /// A payment checked against KCP: bring it in line with a cancel made at KCP that openport
    /// never heard of.
    Payment {
        #[command(subcommand)]
        command: PaymentCommand,
    },
    /// Schedules not run yet: list them, e.g. those due on a restored backup before the scheduler
    /// is let run (`OPENPORT_SCHEDULER__PAUSED`).
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// The KCP sandbox alone, or its tools.
    Sandbox(SandboxArgs),
}

#[derive(Subcommand)]
enum PaymentCommand {
    /// Ask KCP what is left of the payment's trade (its current tno) and record a cancel made at
    /// KCP that openport never heard of (its notice never came: no notification URL at KCP, lost,
    /// refused), exactly as that notice would have: only a lower balance KCP holds is recorded, as
    /// a cancel settled by inquiry (nothing is sent to KCP), with the `cancelled` webhook. Prints
    /// `unchanged` or `applied`; exit status 1 when it could not tell or record (a cancel of the
    /// payment under way, KCP unreachable, no inquiry or no such trade at KCP), nothing recorded
    /// but what it says. Calls KCP: in test mode with the embedded sandbox, set
    /// OPENPORT_KCP__API_BASE to the serving instance's sandbox address.
    Recheck {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        imp_uid: String,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Every merchant's schedules not run yet (with `--due`: only those due now, which a scheduler
    /// charges as soon as it runs), oldest first: id, merchant (imp_code), merchant_uid,
    /// customer_uid, amount, schedule_at, status, and the imp_uid of a charge already opened (its
    /// payment, not a new charge, settles it). Never card data or buyer details. Reads the
    /// database only: nothing is charged, nothing changes.
    List {
        #[command(flatten)]
        common: Common,
        /// Only the schedules due now.
        #[arg(long)]
        due: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// One JSON array on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// What KCP's admin shows of an approval an approval's conflict holds pending
/// (`attempt reconciled --payment`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum HeldPayment {
    /// Cancelled or refunded there: the payment fails.
    Failed,
    /// Kept there for the payment's amount: the payment is paid.
    Paid,
}

#[derive(Subcommand)]
enum AttemptCommand {
    /// Open attempts (with `--conflicts`: those closed as conflicts, not reconciled yet; with
    /// `--issuances`: billing-key issuances whose outcome is not known), oldest first: id, kind,
    /// imp_uid, merchant_uid, the order number KCP knows.
    List {
        #[command(flatten)]
        common: Common,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// One JSON array on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// List the attempts closed as `conflict` (not reconciled yet) instead of the open ones.
        #[arg(long)]
        conflicts: bool,
        /// List the billing-key issuances whose outcome is not known instead (an answer lost, a
        /// request that died): id, kind, state, imp_code, site_cd, customer_uid and the order
        /// number KCP was asked under. KCP has no inquiry for an issuance: look each order number
        /// up in KCP's admin, then `attempt reconciled --order-no`.
        #[arg(long, conflicts_with = "conflicts")]
        issuances: bool,
    },
    /// Fail an open approval whose order number has no approval in KCP's admin (cancel any there
    /// first): the payment fails and its merchant_uid is free again.
    Fail {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: i64,
        /// Required: you checked KCP's admin and it holds no approval for the order number.
        #[arg(long, required = true)]
        none_at_kcp: bool,
        /// The order number you looked up in KCP's admin; it must be the attempt's.
        #[arg(long)]
        order_no: String,
    },
    /// Mark a `conflict` attempt reconciled once KCP's admin and the payment agree again (fixed
    /// by hand where needed); until then the payment takes no API cancel. An approval's conflict
    /// that holds its payment pending (KCP kept an approval or a deposit openport could neither
    /// record nor cancel) also settles the payment: say what KCP's admin shows with `--payment`.
    /// With `--order-no` instead of `--id`: close an open billing-key issuance (`attempt list
    /// --issuances`) once you have looked its order number up in KCP's admin and deleted a key
    /// found there.
    Reconciled {
        #[command(flatten)]
        common: Common,
        #[arg(long, required_unless_present = "order_no")]
        id: Option<i64>,
        /// The order number of an open billing-key issuance (`BK…`), instead of `--id`.
        #[arg(long, conflicts_with_all = ["id", "payment"])]
        order_no: Option<String>,
        /// What was found and done, kept on the attempt.
        #[arg(long)]
        note: String,
        /// For an approval's conflict whose payment is pending: `failed` when the approval (or
        /// deposit) is cancelled or refunded in KCP's admin (the merchant_uid is free again),
        /// `paid` when KCP keeps it for the payment's amount. Checked against KCP's inquiry by
        /// the approval's tno, and refused with nothing changed when it disagrees: `failed` while
        /// it shows the approval standing (the buyer stays charged), `paid` while it shows it
        /// cancelled, no such trade, or standing for another amount (partly cancelled at KCP).
        /// See `--despite-kcp`.
        #[arg(long, value_enum)]
        payment: Option<HeldPayment>,
        /// With `--payment`: record it so though KCP's inquiry disagrees. Only once KCP's admin
        /// shows the approval cancelled (`failed`), or kept for the payment's amount (`paid`).
        #[arg(long, requires = "payment")]
        despite_kcp: bool,
    },
    /// Turn an open attempt that inquiry cannot settle (a cancel, a net-cancel, a second look;
    /// not an approval) into a `conflict`: an open cancel blocks every API cancel of its payment.
    /// The payment then takes no API cancel until the attempt is marked `reconciled`.
    Conflict {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: i64,
        /// What was found (KCP's admin, the inquiries' errors), kept on the attempt.
        #[arg(long)]
        note: String,
    },
    /// Record that KCP's admin holds nothing under the order number an open approval (or an
    /// older version's owed point re-approval) waits for (`attempt list`), and settle it at once:
    /// an approval or an account issuance fails, a Benepia re-approval whose answer was lost is
    /// sent again. Any other attempt is refused. Exit status 3 when the attempt is still open
    /// afterwards (KCP did not answer, or before the settle delay): the word is kept and the
    /// resolver settles it. Calls KCP: in test mode with the embedded sandbox, set
    /// OPENPORT_KCP__API_BASE to the serving instance's sandbox address.
    ConfirmAbsent {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: i64,
        /// The order number you looked up in KCP's admin; it must be the attempt's.
        #[arg(long)]
        order_no: String,
    },
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and print its imp_code, imp_key, imp_secret (shown once), site_cd and
    /// mode (test_mode). In test mode (OPENPORT_TEST_MODE unset or true) a database holding live
    /// merchants is refused: run it with the live instances' configuration.
    Create {
        #[command(flatten)]
        common: Common,
        /// The merchant's name (shown in `merchant list`).
        #[arg(long)]
        name: String,
        /// KCP site code (5 characters): the one KCP gave your contract, required when test mode
        /// is off (KCP's public test sites T0000, T0007 and A52Q7 are refused there). In test
        /// mode it defaults to T0000, and the sandbox CA issues its certificate.
        #[arg(long)]
        site_cd: Option<String>,
        /// KCP service certificate (PEM file); required when test mode is off.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// KCP private key (encrypted PKCS#8 PEM file); required when test mode is off.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Passphrase of the private key. Prefer the environment variable KCP_PRIVATE_KEY_PASSWORD:
        /// an argument is visible in the process list and the shell history.
        #[arg(long, env = "KCP_PRIVATE_KEY_PASSWORD", hide_env_values = true)]
        key_password: Option<String>,
        /// This merchant's own KCP origin (e.g. KCP's staging `https://stg-spl.kcp.co.kr`);
        /// unset: the instance's (`OPENPORT_KCP__API_BASE`, the embedded sandbox in test mode).
        #[arg(long)]
        kcp_api_base: Option<String>,
        /// The KCP batch (billing-key) group id KCP assigns with the batch contract, e.g.
        /// `A52Q71000489` (1–20 letters and digits). Billing keys are issued under it. Without
        /// it, billing keys work only in test mode (with the sandbox's made-up group) until
        /// `merchant set-group-id` sets one.
        #[arg(long)]
        kcp_group_id: Option<String>,
        /// One JSON object on stdout (imp_code, imp_key, imp_secret, site_cd, test_mode) instead
        /// of lines.
        #[arg(long)]
        json: bool,
    },
    /// Set the KCP batch (billing-key) group id of an existing merchant: the one KCP assigned
    /// with the batch contract (e.g. `A52Q71000489`). Billing keys issued from now on are issued
    /// under it; keys issued earlier keep the group they were issued under (stored with each
    /// key), which their charges and deletion go on using. Running instances use it at once on
    /// PostgreSQL, within a minute on SQLite.
    SetGroupId {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        imp_code: String,
        #[arg(long)]
        kcp_group_id: String,
    },
    /// Replace the KCP service certificate and private key of an existing merchant, e.g. with the
    /// renewed pair KCP issues before the old certificate expires. The merchant keeps its
    /// imp_code, imp_key, imp_secret, billing keys and schedules. The pair is checked as
    /// `merchant create` checks one (it loads, the key is the certificate's, the certificate is
    /// for the merchant's site) and the key sealed under OPENPORT_MASTER_KEY: run it with the
    /// configuration of the instances serving the merchant. Running instances use it at once on
    /// PostgreSQL, within a minute on SQLite.
    SetKcpCert {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        imp_code: String,
        /// The new KCP service certificate (PEM file, or KCP's one-line form).
        #[arg(long)]
        cert: PathBuf,
        /// The new KCP private key (encrypted PKCS#8 PEM file).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase of the private key. Prefer the environment variable KCP_PRIVATE_KEY_PASSWORD:
        /// an argument is visible in the process list and the shell history.
        #[arg(long, env = "KCP_PRIVATE_KEY_PASSWORD", hide_env_values = true)]
        key_password: Option<String>,
    },
    /// Show, set or clear the origins (`scheme://host[:port]`) a merchant's mobile buyers may be
    /// redirected to when a payment window ends (`m_redirect_url`, or the page without one).
    /// Without a list any http(s) URL the checkout request names is taken, as at iamport: anyone
    /// holding the merchant's public imp_code can then make openport's host redirect anywhere
    /// (docs/security.md). With one, a mobile checkout redirecting elsewhere is refused, and a
    /// window's end redirects only to an origin still listed. Running instances use it from their
    /// next checkout. Without --set or --clear, prints the list.
    RedirectOrigins {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        imp_code: String,
        /// An origin to allow, e.g. `https://shop.example.com` (repeat for each, at most 50): the
        /// list is replaced by the ones given.
        #[arg(long = "set", value_name = "ORIGIN", conflicts_with = "clear")]
        set: Vec<String>,
        /// Remove the list: any http(s) URL again.
        #[arg(long)]
        clear: bool,
    },
    /// List merchants (never their secrets).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Give a merchant a new imp_secret (printed once): for a secret that leaked, or a hash left
    /// under a master key that is gone (openport then refuses to start and names the merchant).
    NewSecret {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        imp_code: String,
        /// One JSON object on stdout (imp_code, imp_key, imp_secret) instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SandboxArgs {
    /// Listen address of the standalone sandbox.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// Keep KCP's side (ledger, batch keys, point balances, virtual accounts, deposits) in this
    /// file across restarts, as the embedded sandbox does (docs/sandbox.md §7). Without it the
    /// standalone sandbox forgets everything when it stops.
    #[arg(long)]
    state_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<SandboxCommand>,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Write a service certificate and an encrypted private key (KCP's real shape) for a site.
    IssueCert {
        #[arg(long)]
        site_cd: String,
        #[arg(long)]
        out: PathBuf,
        /// Passphrase for the private key.
        #[arg(long, default_value = "changeit")]
        passphrase: String,
    },
    /// Arm a fault on a running sandbox (see docs/sandbox.md): e.g.
    /// `openport sandbox fault --url http://127.0.0.1:9090 --path /gw/hub/v1/payment --kind lose_response`.
    Fault {
        #[arg(long)]
        url: String,
        #[arg(long)]
        path: String,
        /// delay | slow_answer | hold_answer | hold_request | http_status | http_status_after |
        /// drop | lose_response (http_status_after: KCP processes the call, then the status is
        /// answered in place of its answer)
        #[arg(long)]
        kind: String,
        #[arg(long)]
        ms: Option<u64>,
        /// The HTTP status of http_status / http_status_after (e.g. 503, 504).
        #[arg(long)]
        status: Option<u16>,
        /// The gate a hold_answer / hold_request waits on (released by `sandbox open-gate`).
        #[arg(long)]
        gate: Option<String>,
        #[arg(long, default_value_t = 1)]
        times: u32,
        /// Only requests whose FIELD equals VALUE (e.g. ordr_idxx=OP123).
        #[arg(long)]
        when: Option<String>,
    },
    /// Let go what a hold_answer / hold_request fault holds on GATE in a running sandbox (else it
    /// goes after 30 s); opening a gate nothing is held on yet lets the next one through.
    OpenGate {
        #[arg(long)]
        url: String,
        #[arg(long)]
        gate: String,
    },
    /// Show, or change, the switches of a running sandbox (docs/sandbox.md §5.1): e.g.
    /// `openport sandbox settings --url http://127.0.0.1:9090 --refuse-duplicate-orders false`
    /// lets KCP approve an order number a second time, as nothing says real KCP refuses.
    Settings {
        #[arg(long)]
        url: String,
        /// true: a second approval of an order whose approval stands is refused (9520), the
        /// default; false: it is approved again.
        #[arg(long)]
        refuse_duplicate_orders: Option<bool>,
        /// true: `STRA` re-approves the rest under a new tno and leaves the original trade
        /// approved (the reading of seed 003 the gateway must catch, docs/kcp.md §8.3); false:
        /// it cancels the original and re-approves the rest, the default.
        #[arg(long)]
        stra_keeps_original: Option<bool>,
        /// true: `STRA` re-approves the rest in place, answering the trade's own tno with its
        /// balance reduced (seed 003's examples, docs/kcp.md §8.3); false: the default reading.
        #[arg(long)]
        stra_same_tno: Option<bool>,
    },
}

fn load(common: &Common) -> anyhow::Result<Config> {
    let mut config = Config::load(common.config.as_deref())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    if let Some(u) = &common.database_url {
        config.database_url = u.clone();
    }
    Ok(config)
}

/// Where a command's log lines go: a server's to stdout (its one output, for a journal or a
/// collector); an operator command's to stderr, so that what it prints (`--json` above all) is
/// the only thing on stdout and can be piped into a parser.
#[derive(Clone, Copy)]
enum LogTo {
    Stdout,
    Stderr,
}

fn init_tracing(json: bool, to: LogTo) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, ansi) = match to {
        LogTo::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            openport::logging::colours(&std::io::stdout()),
        ),
        LogTo::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            openport::logging::colours(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(openport::logging::from_env())
        .with_writer(writer)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Starts the log for a command run with `config`, and warns there of every `OPENPORT_…`
/// environment variable no setting reads (a misspelt one was ignored without a word): names
/// only, never values.
fn start_logging(config: &Config, to: LogTo) {
    init_tracing(config.log_format == "json", to);
    for name in Config::unread_environment() {
        tracing::warn!(
            "environment variable {name} is not read by any setting and is ignored (misspelt? \
             README.md \"Configuration\" lists the settings; `__` separates a table, as in \
             OPENPORT_KCP__API_BASE, and only there)"
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let mut config = load(&args.common)?;
            if let Some(l) = &args.listen {
                config.listen = l.parse().context("--listen")?;
            }
            serve(config).await
        }
        Command::Migrate(common) => {
            let (_, _, applied) = database_only(&common, true).await?;
            match applied {
                0 => println!("no migrations pending: the schema is up to date"),
                1 => println!("1 migration applied: the schema is up to date"),
                n => println!("{n} migrations applied: the schema is up to date"),
            }
            Ok(())
        }
        Command::Reseal(common) => {
            let config = load(&common)?;
            start_logging(&config, LogTo::Stderr);
            // Not [`offline_gateway`]'s: its start warns of a rotation not applied yet by telling
            // the operator to run `openport reseal`, this very command.
            let gateway = openport::app::reseal_gateway(config).await?;
            let report = gateway
                .reseal_secrets()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "resealed under key {}: {} merchants, {} billing keys, {} access tokens",
                gateway.secrets.key_id(),
                report.merchants,
                report.billing_keys,
                report.access_tokens
            );
            if report.hashes_under_old_keys.is_empty() {
                println!("every imp_secret hash is under the current key");
            } else {
                println!(
                    "imp_secret hashes still under an old key (upgraded at the merchant's next \
                     getToken; keep the old key in OPENPORT_PREVIOUS_MASTER_KEYS until then): {}",
                    report.hashes_under_old_keys.join(", ")
                );
            }
            // Named by row and column, never by value; what this mode does not use (a merchant
            // made in test mode on a live instance) is listed but does not fail the command.
            for u in &report.unopenable {
                println!("not resealed, no configured key opens it: {u}");
            }
            let needed = report.needed_unopenable().count();
            if needed > 0 {
                anyhow::bail!(
                    "no configured key opens {needed} sealed value(s) this instance needs (listed \
                     above; everything else was resealed): put the key they \
                     name back into OPENPORT_PREVIOUS_MASTER_KEYS and run `openport reseal` \
                     again; one under a configured key is damaged and must be entered again \
                     (docs/operations.md \"Rotating the master key\")"
                );
            }
            Ok(())
        }
        Command::Merchant { command } => merchant(command).await,
        Command::Attempt { command } => attempt(command).await,
        Command::Payment { command } => payment(command).await,
        Command::Schedule { command } => schedule(command).await,
        Command::Sandbox(args) => sandbox(args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    start_logging(&config, LogTo::Stdout);
    let app = App::build(config).await?;
    match (&app.demo, &app.credentials_file) {
        // stdout is where the logs go (systemd, containers): a live secret never goes there.
        (Some(created), Some(file)) => println!(
            "\nopenport: merchant {} created from KCP_SITE_CD / KCP_CERT_INFO / KCP_PRIVATE_KEY_PATH; \
             its imp_key and imp_secret are in {} (readable by this user only): copy them to your \
             secret store, then delete the file\n",
            created.merchant.imp_code,
            file.display()
        ),
        (Some(demo), None) => {
            println!(
                "\nopenport test mode: demo merchant created (public test credentials, sandbox only)"
            );
            println!("  imp_code   {}", demo.merchant.imp_code);
            println!("  imp_key    {}", demo.merchant.imp_key);
            println!("  imp_secret {}", demo.imp_secret.expose_secret());
            println!("  site_cd    {}\n", demo.merchant.site_cd);
        }
        (None, _) => {}
    }
    println!("openport listening on http://{}", app.addr);
    if let Some(sb) = &app.sandbox {
        println!("KCP sandbox listening on http://{}", sb.addr);
    }
    let stop = app.stop_handle();
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    app.wait().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM, which is how service managers and container runtimes stop a process: either
/// starts a graceful shutdown, in which requests in flight and the scheduler's charges finish and
/// are recorded, and webhook POSTs get a short grace (jobs/webhooks.rs). Without SIGTERM handled,
/// a stop killed the process in the middle of them.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!("cannot listen for SIGTERM, only for Ctrl-C: {e}"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The configuration and the migrated database, for the operator commands that need nothing else
/// (no KCP, no background work, no listener). Logs go to stderr, as for every operator command.
/// `upgrade`: apply pending migrations to a database in use, or make a new one (`openport
/// migrate`); otherwise a new database is refused, nothing made
/// ([`openport::app::refuse_new_database`]: these commands read the serving instance's).
/// The configuration and database for a command that needs nothing else, with how many
/// migrations it applied (only `upgrade` applies any to a database in use).
async fn database_only(
    common: &Common,
    upgrade: bool,
) -> anyhow::Result<(Config, openport::store::Db, usize)> {
    let config = load(common)?;
    start_logging(&config, LogTo::Stderr);
    if !upgrade {
        openport::app::refuse_new_database(&config.database_url).await?;
    }
    let db = openport::store::Db::connect(&config.database_url).await?;
    // Not beside a starting instance's migrations (store/startup_lock.rs).
    let startup = StartupLock::acquire(&config.database_url).await?;
    let migrated = if upgrade {
        db.migrate().await.map_err(anyhow::Error::from)
    } else {
        db.migrate_if_new()
            .await
            .map(|()| 0)
            .map_err(anyhow::Error::from)
    };
    startup.release().await;
    let applied = migrated?;
    Ok((config, db, applied))
}

/// The gateway for an operator command ([`openport::app::operator_gateway`]: no listener, no
/// background work, no embedded sandbox; it may still call KCP with the configured settings).
/// Logs go to stderr, as for every operator command.
async fn offline_gateway(common: &Common) -> anyhow::Result<Gateway> {
    let config = load(common)?;
    start_logging(&config, LogTo::Stderr);
    openport::app::operator_gateway(config).await
}

/// What a command that calls KCP is about: its merchant's KCP is the one called.
#[derive(Clone, Copy)]
enum CallsKcpFor<'a> {
    Attempt(i64),
    Payment(&'a str),
}

impl CallsKcpFor<'_> {
    fn noun(self) -> &'static str {
        match self {
            Self::Attempt(_) => "attempt",
            Self::Payment(_) => "payment",
        }
    }
}

/// [`offline_gateway`] for a command that calls KCP about an attempt or a payment: refused,
/// nothing changed, when the configuration's KCP is the serving instance's embedded sandbox
/// ([`embedded_sandbox_unreachable`]) and the attempt's (payment's) merchant would call it. A merchant with a
/// KCP origin of its own (`merchant create --kcp-api-base`) is called there whatever the
/// instance's KCP (`Connectors::urls_for`), from this shell as from the serving instance.
async fn offline_gateway_calling_kcp(
    common: &Common,
    about: CallsKcpFor<'_>,
) -> anyhow::Result<Gateway> {
    let config = load(common)?;
    start_logging(&config, LogTo::Stderr);
    let unreachable = embedded_sandbox_unreachable(&config, about.noun());
    let gateway = openport::app::operator_gateway(config).await?;
    if let Some(why) = unreachable {
        if calls_the_instances_kcp(&gateway, about).await? {
            anyhow::bail!(why);
        }
    }
    Ok(gateway)
}

/// Whether the attempt's (payment's) merchant calls the instance's KCP: it names no KCP origin
/// of its own. An attempt (or its payment, its merchant) not found calls no KCP at all: the
/// command refuses it itself.
async fn calls_the_instances_kcp(
    gateway: &Gateway,
    about: CallsKcpFor<'_>,
) -> anyhow::Result<bool> {
    use openport::store::{merchants, payments};
    let db = &gateway.db.read;
    let payment = match about {
        CallsKcpFor::Attempt(id) => match payments::attempt_by_id(db, id).await? {
            Some(attempt) => payments::by_id(db, attempt.payment_id).await?,
            None => None,
        },
        CallsKcpFor::Payment(imp_uid) => payments::by_imp_uid(db, None, imp_uid).await?,
    };
    let Some(payment) = payment else {
        return Ok(false);
    };
    let merchant = merchants::by_id(db, payment.merchant_id).await?;
    Ok(merchant.is_some_and(|m| m.kcp_api_base.is_none()))
}

/// Why a KCP-calling operator command cannot run with `config` for a merchant of the instance's
/// KCP (one without a KCP origin of its own, [`calls_the_instances_kcp`]), if it cannot: in test
/// mode with the embedded sandbox (no `OPENPORT_KCP__API_BASE`) such merchants' trades,
/// certificates and keys are that sandbox's, which lives in the serving process. The command starts no sandbox
/// (one beside the serving instance would be another KCP, knowing none of its trades), so its
/// calls went to KCP's staging host instead, with the sandbox's certificate: refused there, and
/// counted as tries of the attempt. The sandbox's address cannot be worked out from the
/// configuration either: it listens on `OPENPORT_SANDBOX__LISTEN`, by default any free port
/// (`127.0.0.1:0`), printed at the instance's start; and a fixed one in this shell need not be the
/// serving instance's. So the operator names it.
fn embedded_sandbox_unreachable(config: &Config, noun: &str) -> Option<String> {
    if !config.embedded_sandbox() || config.kcp.api_base.is_some() {
        return None;
    }
    let configured = if config.sandbox.listen.port() == 0 {
        String::new()
    } else {
        format!(
            " (this shell's OPENPORT_SANDBOX__LISTEN says http://{})",
            config.sandbox.listen
        )
    };
    Some(format!(
        "this command calls KCP, and in this configuration (test mode, no OPENPORT_KCP__API_BASE) the {noun}'s merchant (no KCP origin of its own) is served by the serving instance's embedded sandbox, which an operator command does not reach by itself: set OPENPORT_KCP__API_BASE to the sandbox's address, printed at the instance's start (`KCP sandbox listening on http://…`){configured}, and run it again"
    ))
}

/// Exit status of `attempt confirm-absent` when the attempt is still open afterwards (1 is a
/// refusal or an error: nothing recorded).
const NOT_SETTLED_YET: i32 = 3;

async fn attempt(cmd: AttemptCommand) -> anyhow::Result<()> {
    match cmd {
        AttemptCommand::List {
            common,
            limit,
            json,
            conflicts: _,
            issuances: true,
        } => {
            let gateway = offline_gateway(&common).await?;
            let listed = gateway.open_key_issuances(limit).await;
            let issuances = listed.map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&issuances)?);
            } else {
                for i in &issuances {
                    println!(
                        "{}\tkey_issuance {}\t{}\t{}\tsite_cd {}\tcustomer_uid {}\torder_no {}\tcreated {}\t{}",
                        i.id,
                        i.kind,
                        i.state,
                        i.imp_code,
                        i.site_cd,
                        i.customer_uid,
                        i.order_no,
                        i.created_at,
                        i.note.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        AttemptCommand::List {
            common,
            limit,
            json,
            conflicts,
            issuances: false,
        } => {
            let gateway = offline_gateway(&common).await?;
            // Issuances are not attempts of a payment and have their own listing; an operator
            // looking for what is unresolved is told they are there.
            let issuances = openport::store::key_issuances::open_summary(&gateway.db.read)
                .await
                .map(|(n, _)| n);
            let listed = if conflicts {
                gateway.conflict_attempts(limit).await
            } else {
                gateway.open_attempts(limit).await
            };
            let attempts = listed.map_err(|e| anyhow::anyhow!("{e}"))?;
            match issuances {
                Ok(0) => {}
                Ok(n) => eprintln!(
                    "{n} billing-key issuance(s) with an unknown outcome: openport attempt list --issuances"
                ),
                Err(e) => eprintln!("the open billing-key issuances could not be counted: {e}"),
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&attempts)?);
            } else {
                for a in &attempts {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\torder_no {}\ttno {}\t{} won\tcreated {}\t{}",
                        a.id,
                        a.kind,
                        a.state,
                        a.imp_uid,
                        a.merchant_uid,
                        a.order_no,
                        a.tno.as_deref().unwrap_or("-"),
                        a.amount,
                        a.created_at,
                        a.result_message.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        AttemptCommand::Fail {
            common,
            id,
            none_at_kcp,
            order_no,
        } => {
            anyhow::ensure!(none_at_kcp, "--none-at-kcp is required");
            let gateway = offline_gateway(&common).await?;
            let settled = gateway.fail_attempt_none_at_kcp(id, &order_no).await;
            let imp_uid = settled.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("attempt {id} settled: payment {imp_uid} failed, its merchant_uid is free");
            Ok(())
        }
        AttemptCommand::Reconciled {
            common,
            id: None,
            order_no: Some(order_no),
            note,
            ..
        } => {
            let gateway = offline_gateway(&common).await?;
            let done = gateway.reconcile_issuance(&order_no, &note).await;
            done.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("billing-key issuance {order_no} reconciled");
            Ok(())
        }
        AttemptCommand::Reconciled {
            common,
            id,
            note,
            payment,
            despite_kcp,
            ..
        } => {
            let id = id.ok_or_else(|| anyhow::anyhow!("--id or --order-no is required"))?;
            let outcome = match (payment, despite_kcp) {
                (Some(HeldPayment::Failed), false) => Some(ReconciledPayment::Failed),
                (Some(HeldPayment::Failed), true) => Some(ReconciledPayment::FailedDespiteKcp),
                (Some(HeldPayment::Paid), false) => Some(ReconciledPayment::Paid),
                (Some(HeldPayment::Paid), true) => Some(ReconciledPayment::PaidDespiteKcp),
                (None, _) => None,
            };
            // Only a verdict on the payment is checked against KCP.
            let gateway = if outcome.is_some() {
                offline_gateway_calling_kcp(&common, CallsKcpFor::Attempt(id)).await?
            } else {
                offline_gateway(&common).await?
            };
            let done = gateway.reconcile_conflict(id, &note, outcome).await;
            let done = done.map_err(|e| anyhow::anyhow!("{e}"))?;
            match (payment, done.paid_at) {
                (Some(HeldPayment::Failed), _) => println!(
                    "attempt {id} reconciled: its payment failed, its merchant_uid is free"
                ),
                (Some(HeldPayment::Paid), Some(paid_at)) => {
                    let when = chrono::DateTime::from_timestamp(paid_at.at, 0)
                        .map_or_else(|| paid_at.at.to_string(), |t| t.to_rfc3339());
                    let source = match paid_at.source {
                        PaidAtSource::KcpApproval => "KCP's approval time",
                        PaidAtSource::ConflictRecorded => {
                            "KCP told no approval time: when the conflict was recorded"
                        }
                    };
                    println!(
                        "attempt {id} reconciled: its payment is paid (paid_at {} = {when}, {source}) and takes cancels",
                        paid_at.at
                    )
                }
                (Some(HeldPayment::Paid), None) => {
                    println!("attempt {id} reconciled: its payment is paid and takes cancels")
                }
                (None, _) => println!("attempt {id} reconciled: its payment takes cancels again"),
            }
            // The KCP cross-check is the double-charge guard: an operator told nothing would take
            // its silence for KCP's agreement.
            if let Some(why) = done.unchecked {
                println!(
                    "not checked against KCP ({why}): the verdict was recorded on your word alone"
                );
            }
            Ok(())
        }
        AttemptCommand::Conflict { common, id, note } => {
            let gateway = offline_gateway(&common).await?;
            let done = gateway.mark_conflict_by_hand(id, &note).await;
            done.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "attempt {id} is a conflict: its payment takes no API cancel until `attempt reconciled`"
            );
            Ok(())
        }
        AttemptCommand::ConfirmAbsent {
            common,
            id,
            order_no,
        } => {
            let gateway = offline_gateway_calling_kcp(&common, CallsKcpFor::Attempt(id)).await?;
            let settled = gateway.confirm_absent_at_kcp(id, &order_no).await;
            let a = settled.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "attempt {id} is now {} ({})",
                a.state,
                a.result_message.as_deref().unwrap_or("-")
            );
            // Still open: nothing was settled, though the word is on record. A script (or an
            // operator reading `$?`) must not take that for settled.
            if openport::store::payments::OPEN_STATES.contains(&a.state.as_str()) {
                eprintln!(
                    "attempt {id} is not settled yet: the word is kept, and a serving instance's resolver settles it once KCP answers (and the settle delay has passed); `openport attempt list` shows it until then"
                );
                std::process::exit(NOT_SETTLED_YET);
            }
            Ok(())
        }
    }
}

async fn payment(cmd: PaymentCommand) -> anyhow::Result<()> {
    use openport::service::notifications::{CancelAtKcp, NotificationError};
    match cmd {
        PaymentCommand::Recheck { common, imp_uid } => {
            let gateway =
                offline_gateway_calling_kcp(&common, CallsKcpFor::Payment(&imp_uid)).await?;
            let recheck = match gateway.recheck_payment_at_kcp(&imp_uid).await {
                Ok(recheck) => recheck,
                Err(NotificationError::ChangedMeanwhile(_)) => anyhow::bail!(
                    "payment {imp_uid}: a cancel of it is under way (or it changed while KCP was \
                     asked, or this host's clock is off): nothing recorded; run it again once the \
                     cancel is settled (`openport attempt list`)"
                ),
                Err(NotificationError::Unverified { tno, source }) => anyhow::bail!(
                    "payment {imp_uid}: KCP could not be asked about tno {tno} ({source}): \
                     nothing recorded; run it again once KCP answers"
                ),
                Err(e) => anyhow::bail!("payment {imp_uid}: {e}"),
            };
            let tno = &recheck.tno;
            match recheck.found {
                CancelAtKcp::Same { remaining, balance } => println!(
                    "payment {imp_uid}: unchanged: KCP holds {remaining} won of tno {tno}, \
                     openport's balance is {balance} won"
                ),
                CancelAtKcp::NothingHeld => println!(
                    "payment {imp_uid}: unchanged: it holds no money a cancel at KCP could have \
                     taken (not paid, or cancelled whole); KCP not asked"
                ),
                CancelAtKcp::Recorded { cancelled, payment } => println!(
                    "payment {imp_uid}: applied: {cancelled} won cancelled at KCP recorded \
                     (status {}, cancel_amount {}, balance {} won; `cancelled` webhook queued)",
                    payment.status,
                    payment.cancel_amount,
                    payment.balance()
                ),
                CancelAtKcp::ReapprovalUnaccounted => anyhow::bail!(
                    "payment {imp_uid}: not checked: a point re-approval openport sent on tno \
                     {tno} is not accounted for yet (its second look is due, or a conflict names \
                     it); `openport attempt list --conflicts`"
                ),
                CancelAtKcp::NoInquiry => anyhow::bail!(
                    "payment {imp_uid}: KCP has no inquiry for its pay method: compare with KCP's \
                     admin; nothing recorded"
                ),
                CancelAtKcp::NoSuchTrade => anyhow::bail!(
                    "payment {imp_uid}: KCP knows no trade {tno}: compare with KCP's admin; \
                     nothing recorded"
                ),
                CancelAtKcp::NotRecorded {
                    attempt_id,
                    remaining,
                    balance,
                } => anyhow::bail!(
                    "payment {imp_uid}: KCP holds {remaining} won of tno {tno}, openport's \
                     balance is {balance} won, but the cancel attempt {attempt_id} opened for the \
                     difference is not recorded (open for the resolver, or a conflict): \
                     `openport attempt list` / `--conflicts`"
                ),
            }
            Ok(())
        }
    }
}

async fn schedule(cmd: ScheduleCommand) -> anyhow::Result<()> {
    match cmd {
        ScheduleCommand::List {
            common,
            due,
            limit,
            json,
        } => {
            // The database alone: no KCP, no master key (nothing sealed is read), so it works
            // before the first start on a restored backup as well as beside running instances.
            let (_, db, _) = database_only(&common, false).await?;
            let now = chrono::Utc::now().timestamp();
            let listed =
                openport::store::billing::unrun_schedules(&db.read, due.then_some(now), limit)
                    .await?;
            let merchants: std::collections::HashMap<i64, String> =
                openport::store::merchants::all(&db.read)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m.imp_code))
                    .collect();
            let merchant_of = |id: i64| merchants.get(&id).cloned().unwrap_or_default();
            if json {
                // Named fields only: a schedule's buyer details and custom data stay out.
                let rows: Vec<serde_json::Value> = listed
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id,
                            "merchant": merchant_of(s.merchant_id),
                            "merchant_uid": s.merchant_uid,
                            "customer_uid": s.customer_uid,
                            "amount": s.amount,
                            "schedule_at": s.schedule_at,
                            "status": s.status,
                            "imp_uid": s.imp_uid,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for s in &listed {
                    let at = chrono::DateTime::from_timestamp(s.schedule_at, 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                    println!(
                        "{}\t{}\t{}\t{}\t{} won\tschedule_at {} ({})\t{}\timp_uid {}",
                        s.id,
                        merchant_of(s.merchant_id),
                        s.merchant_uid,
                        s.customer_uid,
                        s.amount,
                        s.schedule_at,
                        at,
                        s.status,
                        s.imp_uid.as_deref().unwrap_or("-"),
                    );
                }
            }
            Ok(())
        }
    }
}

/// The site code `merchant create` makes a merchant under. Test mode defaults to KCP's public
/// test site T0000. Outside it that default made every payment of a live shop go under KCP's
/// test site, failing each one as a site mismatch that the shop saw as a declined card; the
/// operator must name the site of the KCP contract, and KCP's public test sites are refused.
fn live_site_code(site_cd: Option<String>, test_mode: bool) -> anyhow::Result<String> {
    match site_cd {
        None if test_mode => Ok("T0000".to_owned()),
        None => anyhow::bail!(
            "--site-cd is required outside test mode (the site code KCP gave your contract, the \
             one its certificate was issued for)"
        ),
        Some(site) if !test_mode && openport::config::is_kcp_public_test_site(&site) => {
            anyhow::bail!(
                "--site-cd {site} is one of KCP's public test sites ({}), refused outside test \
                 mode: give the site code KCP gave your contract",
                openport::config::KCP_PUBLIC_TEST_SITES.join(", ")
            )
        }
        Some(site) => Ok(site),
    }
}

/// `merchant create` in test mode (`OPENPORT_TEST_MODE` unset, its default) on a database that
/// holds live merchants: the database of live instances, reached from a shell without their
/// configuration. The merchant it made was a test-mode one, which the live instances refuse to
/// serve, and nothing said so. Refused, naming the setting, nothing made. A live merchant on a
/// database holding only test-mode ones is the usual first live setup, and is made.
async fn refuse_test_merchant_beside_live_ones(gateway: &Gateway) -> anyhow::Result<()> {
    let merchants = openport::store::merchants::all(&gateway.db.read).await?;
    let live = merchants.iter().filter(|m| !m.test_mode).count();
    if live > 0 {
        anyhow::bail!(
            "this database holds {live} live merchant(s) (test_mode=false) and this shell is in \
             test mode (OPENPORT_TEST_MODE unset or true), so the merchant would be a test-mode \
             one that the live instances do not serve: run it with the live instances' \
             configuration (OPENPORT_TEST_MODE=false, their OPENPORT_MASTER_KEY); nothing created"
        );
    }
    Ok(())
}

async fn merchant(cmd: MerchantCommand) -> anyhow::Result<()> {
    match cmd {
        MerchantCommand::Create {
            common,
            name,
            site_cd,
            cert,
            key,
            key_password,
            kcp_api_base,
            kcp_group_id,
            json,
        } => {
            // Creating a merchant needs neither the HTTP server, the resolver nor an embedded
            // sandbox: one beside a running server would rewrite its state file with a stale copy.
            // The one command that may be the first on a new database (before any start).
            let config = load(&common)?;
            start_logging(&config, LogTo::Stderr);
            let gateway = openport::app::merchant_create_gateway(config).await?;
            let test_mode = gateway.settings.test_mode;
            if test_mode {
                refuse_test_merchant_beside_live_ones(&gateway).await?;
            }
            let site_cd = live_site_code(site_cd, test_mode)?;
            let (cert_pem, key_pem, pass) = match (cert, key) {
                (Some(c), Some(k)) => (
                    std::fs::read_to_string(&c).with_context(|| format!("read {}", c.display()))?,
                    std::fs::read_to_string(&k).with_context(|| format!("read {}", k.display()))?,
                    SecretString::from(key_password.unwrap_or_default()),
                ),
                _ if test_mode => {
                    // The sandbox's CA alone: a sandbox that keeps no state and serves nothing.
                    let ca = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig {
                        now: openport::clock::Clock::system().as_fn(),
                        test_mode: true,
                        state_file: None,
                        ..kcp_sandbox::SandboxConfig::default()
                    })?;
                    openport::app::issue_sandbox_certificate(&ca, &site_cd).await?
                }
                _ => anyhow::bail!("--cert and --key are required outside test mode"),
            };
            let created = gateway
                .create_merchant(NewMerchant {
                    name,
                    site_cd,
                    certificate_pem: cert_pem,
                    private_key_pem: key_pem,
                    private_key_passphrase: pass,
                    test_mode,
                    credentials: None,
                    kcp_api_base,
                    kcp_group_id,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let m = &created.merchant;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"imp_code": m.imp_code, "imp_key": m.imp_key,
                        "imp_secret": created.imp_secret.expose_secret(), "site_cd": m.site_cd,
                        "test_mode": m.test_mode})
                );
            } else {
                println!(
                    "imp_code   {}\nimp_key    {}\nimp_secret {}\nsite_cd    {}\ntest_mode  {}",
                    m.imp_code,
                    m.imp_key,
                    created.imp_secret.expose_secret(),
                    m.site_cd,
                    m.test_mode
                );
                println!("(the imp_secret is shown only now)");
            }
            Ok(())
        }
        MerchantCommand::NewSecret {
            common,
            imp_code,
            json,
        } => {
            // The database and the master key alone: a full start is refused while a hash is
            // under a key that is gone, which is what this command mends. A configuration other
            // than the merchant's instances' (mode, master key) is still refused, by
            // `new_imp_secret`.
            let (config, db, _) = database_only(&common, false).await?;
            let secrets = openport::app::master_key(&config)?;
            let renewed = new_imp_secret(&db, &secrets, config.test_mode, &imp_code)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let m = &renewed.merchant;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"imp_code": m.imp_code, "imp_key": m.imp_key,
                        "imp_secret": renewed.imp_secret.expose_secret()})
                );
            } else {
                println!(
                    "imp_code   {}\nimp_key    {}\nimp_secret {}",
                    m.imp_code,
                    m.imp_key,
                    renewed.imp_secret.expose_secret()
                );
                println!(
                    "(the imp_secret is shown only now; the old one gets no token from now on, \
                     and the tokens it got are revoked: running instances refuse them within a \
                     minute)"
                );
            }
            Ok(())
        }
        MerchantCommand::SetGroupId {
            common,
            imp_code,
            kcp_group_id,
        } => {
            // The database alone: nothing sealed is read or written.
            let (_, db, _) = database_only(&common, false).await?;
            let m = set_kcp_group_id(&db, &imp_code, &kcp_group_id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "merchant {}: KCP batch group id {} for billing keys issued from now on \
                 (keys issued earlier keep theirs)",
                m.imp_code,
                m.kcp_group_id.as_deref().unwrap_or_default()
            );
            Ok(())
        }
        MerchantCommand::SetKcpCert {
            common,
            imp_code,
            cert,
            key,
            key_password,
        } => set_kcp_cert(&common, &imp_code, &cert, &key, key_password).await,
        MerchantCommand::RedirectOrigins {
            common,
            imp_code,
            set,
            clear,
        } => {
            // The database alone: nothing sealed is read or written.
            let (_, db, _) = database_only(&common, false).await?;
            let m = if clear || !set.is_empty() {
                openport::service::redirect_origins::set_by_imp_code(&db, &imp_code, &set)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            } else {
                openport::store::merchants::by_imp_code(&db.read, &imp_code)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no merchant with imp_code {imp_code}"))?
            };
            let shown = openport::service::redirect_origins::RedirectOrigins::of(&m);
            let origins = shown.origins.unwrap_or_default();
            if shown.unreadable {
                // Not "no list": the gateway refuses every mobile redirect of this merchant.
                println!(
                    "merchant {}: the stored redirect origins cannot be read ({}); every mobile \
                     checkout and redirect is refused until they are set again (--set) or \
                     cleared (--clear)",
                    m.imp_code,
                    m.redirect_origins.as_deref().unwrap_or_default()
                );
            } else if origins.is_empty() {
                println!(
                    "merchant {}: no redirect origins; mobile buyers may be redirected to any \
                     http(s) URL a checkout names (docs/security.md)",
                    m.imp_code
                );
            } else {
                println!(
                    "merchant {}: mobile buyers are redirected only to these origins",
                    m.imp_code
                );
                for origin in origins {
                    println!("{origin}");
                }
            }
            Ok(())
        }
        MerchantCommand::List { common } => {
            let (_, db, _) = database_only(&common, false).await?;
            for m in openport::store::merchants::all(&db.read).await? {
                // `id` last, so the columns before it stay where scripts found them; it is what
                // the operator routes take (`/admin/merchants/{id}/webhook`).
                // KCP's origin after it: the instance's unless the merchant names its own; then
                // the batch group its billing keys are issued under, if one is set.
                println!(
                    "{}\t{}\t{}\t{}\ttest_mode={}\tid={}\tkcp_api_base={}\tkcp_group_id={}",
                    m.imp_code,
                    m.imp_key,
                    m.site_cd,
                    m.name,
                    m.test_mode,
                    m.id,
                    m.kcp_api_base.as_deref().unwrap_or("instance"),
                    m.kcp_group_id.as_deref().unwrap_or("none")
                );
            }
            Ok(())
        }
    }
}

/// `merchant set-kcp-cert`: the database and the master key alone, as `merchant new-secret`
/// (no listener, no KCP call: the pair is only loaded and checked).
async fn set_kcp_cert(
    common: &Common,
    imp_code: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    key_password: Option<String>,
) -> anyhow::Result<()> {
    let (config, db, _) = database_only(common, false).await?;
    let secrets = openport::app::master_key(&config)?;
    let new = openport::service::merchants::KcpCredentials {
        certificate_pem: std::fs::read_to_string(cert)
            .with_context(|| format!("read {}", cert.display()))?,
        private_key_pem: std::fs::read_to_string(key)
            .with_context(|| format!("read {}", key.display()))?,
        private_key_passphrase: SecretString::from(key_password.unwrap_or_default()),
    };
    let now = openport::clock::Clock::system().unix();
    let (m, facts) = openport::service::merchants::set_kcp_certificate(
        &db,
        &secrets,
        config.test_mode,
        now,
        imp_code,
        new,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let not_after = chrono::DateTime::from_timestamp(facts.not_after, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    println!(
        "merchant {}: KCP certificate and private key replaced (site {}, certificate valid until \
         {not_after}); running instances use them at once on PostgreSQL, within a minute on SQLite",
        m.imp_code, m.site_cd
    );
    Ok(())
}

async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            init_tracing(false, LogTo::Stdout);
            let sb = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig {
                state_file: args.state_file.clone(),
                ..kcp_sandbox::SandboxConfig::default()
            })
            .with_context(|| match &args.state_file {
                Some(path) => format!("KCP sandbox state file {}", path.display()),
                None => "KCP sandbox".to_string(),
            })?;
            let listener = tokio::net::TcpListener::bind(&args.listen).await?;
            println!("KCP sandbox listening on http://{}", listener.local_addr()?);
            // The sandbox's 1,024 connections, within the open-file limit (raised to its hard
            // limit as the gateway does).
            let limits = kcp_sandbox::ServerLimits {
                max_connections: openport::app::open_files::default_max_connections(false)
                    .min(kcp_sandbox::ServerLimits::default().max_connections),
                ..kcp_sandbox::ServerLimits::default()
            };
            kcp_sandbox::serve_until_with(sb.clone(), listener, stop_signal(), limits).await?;
            // The state writer is debounced: a clean stop writes what changed since its last run.
            tokio::task::spawn_blocking(move || sb.persist_now()).await??;
            Ok(())
        }
        Some(SandboxCommand::IssueCert {
            site_cd,
            out,
            passphrase,
        }) => {
            // KCP's own file names: a directory holding either may hold a real pair (or half of
            // one), which a new one replaced, the key file keeping its old mode. Refused before
            // anything is written.
            let (cert_path, key_path) = (out.join("splCert.pem"), out.join("splPrikeyPKCS8.pem"));
            for path in [&cert_path, &key_path] {
                if path.symlink_metadata().is_ok() {
                    anyhow::bail!(
                        "{} exists; choose another --out (nothing written)",
                        path.display()
                    );
                }
            }
            let sb = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default())?;
            let issued = sb.issue_certificate(&site_cd, &passphrase)?;
            std::fs::create_dir_all(&out)?;
            // The private key first (encrypted, but its passphrase is often at hand): owner only,
            // and never over a file that appeared meanwhile.
            let written = openport::private_file::create(&key_path, false)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, issued.encrypted_private_key_pem.as_bytes())
                })
                .with_context(|| format!("write {}", key_path.display()));
            written?;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&cert_path)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, issued.certificate_pem.as_bytes())
                })
                .with_context(|| format!("write {}", cert_path.display()));
            if written.is_err() {
                // Not half a pair: the key just written goes too.
                let _ = std::fs::remove_file(&key_path);
            }
            written?;
            println!(
                "wrote {0}/splCert.pem and {0}/splPrikeyPKCS8.pem (the key's passphrase is the \
                 --passphrase given, `changeit` when none was)",
                out.display()
            );
            Ok(())
        }
        Some(SandboxCommand::Fault {
            url,
            path,
            kind,
            ms,
            status,
            gate,
            times,
            when,
        }) => {
            let mut fault = serde_json::json!({"kind": kind});
            if let Some(ms) = ms {
                fault["ms"] = ms.into();
            }
            if let Some(s) = status {
                fault["status"] = s.into();
            }
            if let Some(g) = gate {
                fault["gate"] = g.into();
            }
            let mut rule = serde_json::json!({"path": path, "fault": fault, "times": times});
            if let Some(w) = when {
                let (f, v) = w.split_once('=').context("--when FIELD=VALUE")?;
                rule["when"] = serde_json::json!({"field": f, "value": v});
            }
            let res = reqwest::Client::new()
                .post(format!("{}/_sandbox/faults", url.trim_end_matches('/')))
                .json(&rule)
                .send()
                .await?;
            // A rule the sandbox refused (a kind it does not know, one needing fields this
            // command has no flags for) is armed nowhere: a script must not go on as if it were.
            sandbox_answered(res, "the sandbox refused the fault rule").await
        }
        Some(SandboxCommand::OpenGate { url, gate }) => {
            // The gate as one path segment, escaped: a name is whatever the rule was armed with.
            let mut target = reqwest::Url::parse(&url).context("--url")?;
            target
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("--url: not a base URL"))?
                .pop_if_empty()
                .extend(["_sandbox", "gates", &gate, "open"]);
            let res = reqwest::Client::new().post(target).send().await?;
            sandbox_answered(res, "the sandbox did not open the gate").await
        }
        Some(SandboxCommand::Settings {
            url,
            refuse_duplicate_orders,
            stra_keeps_original,
            stra_same_tno,
        }) => {
            let target = format!("{}/_sandbox/settings", url.trim_end_matches('/'));
            let client = reqwest::Client::new();
            let res = if refuse_duplicate_orders.is_some()
                || stra_keeps_original.is_some()
                || stra_same_tno.is_some()
            {
                let mut change = serde_json::Map::new();
                if let Some(refuse) = refuse_duplicate_orders {
                    change.insert("refuse_duplicate_orders".into(), refuse.into());
                }
                if let Some(keeps) = stra_keeps_original {
                    change.insert("stra_keeps_original".into(), keeps.into());
                }
                if let Some(same) = stra_same_tno {
                    change.insert("stra_same_tno".into(), same.into());
                }
                client.post(target).json(&change).send().await?
            } else {
                client.get(target).send().await?
            };
            sandbox_answered(res, "the sandbox did not take the settings").await
        }
    }
}

/// Prints a running sandbox's answer to a control call (status and body, on stdout) and fails
/// with `refused` unless it is a success: a script must not go on as if the sandbox took it.
async fn sandbox_answered(res: reqwest::Response, refused: &'static str) -> anyhow::Result<()> {
    let status = res.status();
    println!("{status} {}", res.text().await?);
    anyhow::ensure!(status.is_success(), refused);
    Ok(())
}
