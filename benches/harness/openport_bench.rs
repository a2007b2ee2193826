//! `openport-bench`: starts `target/release/openport serve` on a fresh database and loopback ports,
//! drives it with a closed-loop load at several concurrency levels, and prints throughput and
//! latency per scenario. See benches/README.md.
mod cpu;
mod load;
mod reconcile;
mod report;
mod scheduler;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use load::{Scenario, Target};
use server::{Database, Gateway};

#[derive(Parser, Debug)]
#[command(
    name = "openport-bench",
    about = "Load benchmark for openport (build it first: cargo build --release)"
)]
struct Args {
    /// `sqlite` (a temporary file) or a loopback PostgreSQL URL; a fresh database
    /// `openport_bench_<random>` is created on that server and dropped afterwards.
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// Measured seconds per scenario and concurrency level.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds before each measurement (not reported).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrency levels (closed-loop workers), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Open loop: offer this many requests per second at every level (at most `--concurrency` in
    /// flight, latency counted from when each request was due) instead of closed-loop workers.
    /// Runs `onetime` and `sandbox-keyin` at the same load, so their p99 difference is the
    /// gateway's added latency at that load.
    #[arg(long)]
    rate: Option<f64>,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lookup,onetime,sandbox-keyin,cancel,again"
    )]
    scenarios: Vec<Scenario>,
    /// `scheduler`: schedules to create, all due at the same second.
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,
    /// `scheduler`: schedules per `POST /subscribe/payments/schedule`.
    #[arg(long, default_value_t = 500)]
    schedule_batch: usize,
    /// `scheduler`: OPENPORT_RESOLVER__INTERVAL_MS of the three instances (the scheduler runs every
    /// min(this, 1000) ms).
    #[arg(long, default_value_t = 200)]
    scheduler_interval_ms: u64,
    /// `scheduler`: OPENPORT_SCHEDULER__CONCURRENCY of the three instances (default: the
    /// gateway's).
    #[arg(long)]
    scheduler_concurrency: Option<usize>,
    /// `scheduler`: OPENPORT_SCHEDULER__BATCH (schedules claimed per statement) of the three
    /// instances (default: the gateway's).
    #[arg(long)]
    scheduler_claim_batch: Option<u64>,
    /// `scheduler`: run `ANALYZE` on its database once this many schedules are executed (as
    /// autovacuum would about a minute into the load; default: never).
    #[arg(long)]
    scheduler_analyze_at: Option<u64>,
    /// `scheduler`: schedules checked one by one over REST afterwards.
    #[arg(long, default_value_t = 200)]
    schedule_sample: usize,
    /// Upper bound on requests per scenario and level (the duration usually ends a level first).
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The gateway binary (default: target/release/openport of this workspace).
    #[arg(long)]
    openport_bin: Option<PathBuf>,
    /// RUST_LOG for the gateway (default: the gateway's own default, `info`).
    #[arg(long)]
    gateway_log: Option<String>,
    /// Keep one gateway process for the whole run instead of starting a fresh one (same database)
    /// before each scenario and level. The embedded KCP sandbox keeps its ledger in memory and
    /// scans it linearly on every approval, so without restarts later levels measure a slower
    /// sandbox (see benches/README.md).
    #[arg(long)]
    reuse_gateway: bool,
    /// Keep the temporary directory (gateway log, SQLite file) and the PostgreSQL database.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive numbers, e.g. 1,16,64");
    }
    if args.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate needs a positive number of requests per second");
    }
    if args.schedules == 0 || args.schedule_batch == 0 || args.scheduler_interval_ms == 0 {
        bail!("--schedules, --schedule-batch and --scheduler-interval-ms must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = args
        .openport_bin
        .clone()
        .unwrap_or_else(server::default_binary);
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release` (or pass --openport-bin)",
            bin.display()
        );
    }
    // A busy machine makes every figure low: say so before starting.
    let before = cpu::sample(None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(idle) = cpu::share(before, cpu::sample(None)) {
        if idle.other > 0.2 {
            eprintln!(
                "warning: other processes are using {:.1} cores right now; figures will be low \
                 (see the `other` CPU column)",
                idle.other
            );
        }
    }
    let tag = server::run_tag();
    let dir = std::env::temp_dir().join(format!("openport-bench-{tag}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let db = Database::create(&args.db, &dir, &tag).await?;
    eprintln!(
        "openport-bench: {} · database {} · work dir {}",
        bin.display(),
        db.describe(),
        dir.display()
    );

    // The gateway of the moment; `measure` replaces it when it restarts one. Whatever is left in
    // the slot is stopped here, also after an error or Ctrl-C (and killed on drop in any case).
    let mut slot: Option<Gateway> = None;
    // The `scheduler` scenario's three gateways and its own database, cleaned up like the slot.
    let mut fleet: Vec<Gateway> = Vec::new();
    let mut scheduler_db: Option<Database> = None;
    let mut was_interrupted = false;
    let outcome = tokio::select! {
        r = measure(&args, &mut slot, &mut fleet, &mut scheduler_db, &bin, &db, &dir, &tag) => r,
        signal = interrupted() => {
            was_interrupted = true;
            Err(anyhow::anyhow!("interrupted by {signal}"))
        }
    };
    // A failure keeps the gateway log for diagnosis; an interruption cleans up like a success.
    let failed = outcome.is_err() && !was_interrupted;
    if let Some(gateway) = slot.take() {
        if failed {
            eprintln!("gateway log (last lines):\n{}", gateway.log_tail(30));
        }
        gateway.stop().await;
    }
    for gateway in fleet {
        if failed {
            eprintln!(
                "{} (last lines):\n{}",
                gateway.log.display(),
                gateway.log_tail(15)
            );
        }
        gateway.stop().await;
    }

    if args.keep || failed {
        eprintln!("kept {} (gateway.log)", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.keep {
        if let Database::Postgres { name, .. } = &db {
            eprintln!("kept PostgreSQL database {name}");
        }
    } else {
        for db in std::iter::once(&db).chain(scheduler_db.as_ref()) {
            if let Err(e) = db.destroy().await {
                eprintln!("could not drop the benchmark database: {e:#}");
            }
        }
    }
    if args.keep {
        if let Some(Database::Postgres { name, .. }) = &scheduler_db {
            eprintln!("kept PostgreSQL database {name}");
        }
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    slot: &mut Option<Gateway>,
    fleet: &mut Vec<Gateway>,
    scheduler_db: &mut Option<Database>,
    bin: &Path,
    db: &Database,
    dir: &Path,
    tag: &str,
) -> anyhow::Result<()> {
    let max_c = *args.concurrency.iter().max().expect("checked non-empty");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(max_c + 8)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let mut results = Vec::new();
    let mut scheduled = None;
    let mut target: Option<Arc<Target>> = None;
    for &scenario in &args.scenarios {
        if scenario == Scenario::Scheduler {
            let Database::Postgres { admin_url, .. } = db else {
                eprintln!(
                    "  scheduler: skipped — it needs PostgreSQL (three gateway processes share one \
                     database); run it with --db postgres://…"
                );
                continue;
            };
            // Alone on the machine: the level gateway would only take memory and CPU.
            if let Some(old) = slot.take() {
                old.stop().await;
            }
            target = None;
            let settings = scheduler::Settings {
                n: args.schedules,
                batch: args.schedule_batch,
                interval_ms: args.scheduler_interval_ms,
                sample: args.schedule_sample,
                rust_log: args.gateway_log.clone(),
                concurrency: args.scheduler_concurrency,
                claim_batch: args.scheduler_claim_batch,
                analyze_at: args.scheduler_analyze_at,
            };
            let r = scheduler::run(
                &settings,
                bin,
                admin_url,
                dir,
                tag,
                &client,
                fleet,
                scheduler_db,
            )
            .await?;
            eprintln!(
                "  scheduler: {} of {} executed, all after {} s ({} schedules/s), exactly once: {}",
                r.executed,
                r.n,
                r.drained
                    .map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64())),
                r.throughput()
                    .map_or_else(|| "-".into(), |t| format!("{t:.0}")),
                r.duplicates_free()
            );
            for gateway in fleet.drain(..) {
                gateway.stop().await;
            }
            scheduled = Some(r);
            continue;
        }
        let load = args
            .rate
            .map_or(load::Load::Closed, |rate| load::Load::Open { rate });
        for &c in &args.concurrency {
            if target.is_none() || !args.reuse_gateway {
                if let Some(old) = slot.take() {
                    old.stop().await;
                }
                let gateway =
                    slot.insert(Gateway::start(bin, db, dir, args.gateway_log.as_deref())?);
                target = Some(prepare(args, gateway, &client, tag, max_c).await?);
            }
            let target = target.clone().expect("prepared above");
            let takes_payments = matches!(scenario, Scenario::Onetime | Scenario::Again);
            let counted = if takes_payments {
                Some(reconcile::counts(&target).await?)
            } else {
                None
            };
            let mut warm_ok = 0;
            if args.warmup > 0 {
                let w = load::run_level(
                    target.clone(),
                    scenario,
                    c,
                    load,
                    Duration::from_secs(args.warmup),
                    args.max_requests,
                    'w',
                )
                .await?;
                warm_ok = w.requests - w.errors;
                if w.errors > 0 {
                    eprintln!(
                        "  warm-up {} c{c}: {} errors of {}",
                        scenario.label(),
                        w.errors,
                        w.requests
                    );
                }
            }
            let pid = slot.as_ref().and_then(Gateway::pid);
            let before = cpu::sample(pid);
            let mut r = load::run_level(
                target.clone(),
                scenario,
                c,
                load,
                Duration::from_secs(args.duration),
                args.max_requests,
                'm',
            )
            .await?;
            r.cpu = cpu::share(before, cpu::sample(pid));
            eprintln!("  {}", report::line(&r));
            if let Some(counted) = counted {
                let after = reconcile::counts(&target).await?;
                let ok = warm_ok + r.requests - r.errors;
                eprintln!("  {}", reconcile::check(counted, after, ok)?);
            }
            results.push(r);
        }
    }

    let meta = report::Meta {
        date: chrono::Utc::now().to_rfc3339(),
        database: db.describe(),
        duration_s: args.duration,
        warmup_s: args.warmup,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        gateway_log: args.gateway_log.clone().unwrap_or_else(|| "default".into()),
        restarts: !args.reuse_gateway,
    };
    if !results.is_empty() {
        println!("{}", report::table(&meta, &results));
    }
    if let Some(r) = &scheduled {
        println!("{}", scheduler::table(r));
    }
    if let Some(path) = &args.json {
        let mut out = report::json(&meta, &results);
        if let Some(r) = &scheduled {
            out["scheduler"] = scheduler::json(r);
        }
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM (e.g. from `timeout`).
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

/// Waits for a freshly started gateway and creates what the scenarios need: a token, a sandbox
/// certificate, the payment the lookups read and the payments the cancels draw from.
async fn prepare(
    args: &Args,
    gateway: &mut Gateway,
    client: &reqwest::Client,
    tag: &str,
    max_c: usize,
) -> anyhow::Result<Arc<Target>> {
    let token = gateway.wait_ready(client).await?;
    let cert_info = if args.scenarios.contains(&Scenario::SandboxKeyin) {
        load::sandbox_cert_info(client, &gateway.sandbox_base).await?
    } else {
        String::new()
    };
    let (expiry_iso, expiry_kcp) = load::future_expiry();
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut target = Target {
        client: client.clone(),
        base: gateway.base.clone(),
        sandbox_base: gateway.sandbox_base.clone(),
        token,
        tag: tag.to_owned(),
        expiry_iso,
        expiry_kcp,
        urls: load::Urls::new(&gateway.base, &gateway.sandbox_base)?,
        cancel_imp_uids: Vec::new(),
        cert_info,
        customer_uid: String::new(),
    };
    if args.scenarios.contains(&Scenario::Again) {
        // The sandbox keeps batch keys in memory: every fresh gateway needs its own billing key.
        let uid = format!("bench-{tag}-g{generation}-customer");
        load::register_customer(
            client,
            &target.base,
            &target.token,
            &uid,
            &target.expiry_iso,
        )
        .await
        .context("register the billing key the again scenario charges")?;
        target.customer_uid = uid;
    }
    let lookup_imp_uid = target
        .onetime(&format!("bench-{tag}-g{generation}-lookup"), 1000)
        .await
        .context("create the payment that the lookup scenario reads")?;
    target.urls.lookup = Some(load::Urls::lookup_of(&target.base, &lookup_imp_uid)?);
    let mut target = Arc::new(target);
    if args.scenarios.contains(&Scenario::Cancel) {
        // One payment per worker at the highest level, so workers never share a payment; each
        // allows 9,999 partial cancels of 100 KRW.
        let n = max_c.max(16);
        let uids = load::create_payments(
            &target,
            &format!("g{generation}-cancelbase"),
            n,
            load::CANCEL_BASE,
        )
        .await?;
        Arc::get_mut(&mut target)
            .context("payment creation still holds the target")?
            .cancel_imp_uids = uids;
    }
    Ok(target)
}

/// Numbers the gateway starts of a run (keeps pre-created merchant_uids unique).
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
