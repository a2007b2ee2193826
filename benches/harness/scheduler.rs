//! The `scheduler` scenario: three `openport serve` processes on one fresh PostgreSQL database (the
//! first with the embedded KCP sandbox, the other two sending their KCP calls to it) drain N
//! schedules that all fall due at the same second. Measures the time from the due second until
//! every schedule is `executed`, and checks that the sandbox charged each exactly once.
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cpu;
use crate::load::{self, read};
use crate::server::{Database, Gateway, Options};

/// Amount of each scheduled charge.
const AMOUNT: i64 = 1000;
/// How often the harness counts executed schedules while they drain.
const POLL: Duration = Duration::from_millis(250);

pub struct Settings {
    /// Schedules to create.
    pub n: usize,
    /// Schedules per `POST /subscribe/payments/schedule`.
    pub batch: usize,
    /// `OPENPORT_RESOLVER__INTERVAL_MS` of the three instances.
    pub interval_ms: u64,
    /// Schedules sampled over REST after the run.
    pub sample: usize,
    pub rust_log: Option<String>,
    /// `OPENPORT_SCHEDULER__CONCURRENCY` and `OPENPORT_SCHEDULER__BATCH` of the three instances
    /// (None: the gateway's defaults).
    pub concurrency: Option<usize>,
    pub claim_batch: Option<u64>,
    /// Run `ANALYZE` on the database once this many schedules are executed (None: never), as
    /// autovacuum would about a minute into the load: a fresh database has no statistics, and
    /// plans cached without them can scan every payment of the merchant.
    pub analyze_at: Option<u64>,
}

impl Settings {
    fn gateway_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(c) = self.concurrency {
            env.push(("OPENPORT_SCHEDULER__CONCURRENCY".into(), c.to_string()));
        }
        if let Some(b) = self.claim_batch {
            env.push(("OPENPORT_SCHEDULER__BATCH".into(), b.to_string()));
        }
        env
    }
}

pub struct SchedulerResult {
    pub n: usize,
    pub instances: usize,
    pub interval_ms: u64,
    pub batch: usize,
    pub concurrency: Option<usize>,
    pub claim_batch: Option<u64>,
    /// Seconds after due when `ANALYZE` was run (`Settings::analyze_at`).
    pub analyzed_after: Option<f64>,
    /// Wall time of creating all schedules, and the lead between the start of creation and the
    /// due second.
    pub create_time: Duration,
    pub lead: Duration,
    /// From the due second: first schedule seen executed, and all executed (None on a timeout).
    pub first_seen: Option<Duration>,
    pub drained: Option<Duration>,
    pub executed: u64,
    pub still_scheduled: u64,
    /// (seconds after due, executed) once per second.
    pub timeline: Vec<(f64, u64)>,
    /// New sandbox approvals (ledger entries approved after the billing key was registered).
    pub ledger_new: usize,
    pub ledger_distinct_orders: usize,
    /// order_no values approved more than once (first few), and how many such orders.
    pub duplicate_orders: Vec<(String, usize)>,
    pub duplicate_order_count: usize,
    pub ledger_amount_mismatch: usize,
    pub sampled: usize,
    pub sample_problems: Vec<String>,
    /// Per instance: ERROR lines and KCP batch-key charges seen in its log.
    pub logs: Vec<(String, usize, usize)>,
    pub cpu: Option<cpu::Share>,
}

impl SchedulerResult {
    pub fn throughput(&self) -> Option<f64> {
        self.drained
            .map(|d| self.n as f64 / d.as_secs_f64().max(1e-9))
    }

    pub fn duplicates_free(&self) -> bool {
        self.ledger_new == self.n
            && self.ledger_distinct_orders == self.n
            && self.duplicate_order_count == 0
            && self.sample_problems.is_empty()
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the scenario. Gateways go into `fleet` and the database into `db_slot` as soon as they
/// exist, so the caller stops and drops them also after an error or Ctrl-C.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: &Settings,
    bin: &Path,
    admin_spec: &str,
    dir: &Path,
    tag: &str,
    client: &reqwest::Client,
    fleet: &mut Vec<Gateway>,
    db_slot: &mut Option<Database>,
) -> anyhow::Result<SchedulerResult> {
    let db = db_slot.insert(Database::create(admin_spec, dir, &format!("{tag}_sched")).await?);
    eprintln!(
        "  scheduler: {} · 3 instances · resolver interval {} ms (scheduler every {} ms)",
        db.describe(),
        settings.interval_ms,
        settings.interval_ms.min(1000)
    );
    // The first instance migrates the database and creates the demo merchant (and its sandbox
    // certificate) before the others start, so they find both.
    let first = Options {
        resolver_interval_ms: settings.interval_ms,
        kcp_api_base: None,
        log_name: "scheduler-1.log".into(),
        env: settings.gateway_env(),
    };
    let gw = fleet.push_mut_compat(Gateway::start_with(
        bin,
        db,
        dir,
        settings.rust_log.as_deref(),
        &first,
    )?);
    let token = gw.wait_ready(client).await?;
    let base = gw.base.clone();
    let sandbox = gw.sandbox_base.clone();
    for i in 2..=3 {
        let opts = Options {
            resolver_interval_ms: settings.interval_ms,
            kcp_api_base: Some(sandbox.clone()),
            log_name: format!("scheduler-{i}.log"),
            env: settings.gateway_env(),
        };
        let gw = fleet.push_mut_compat(Gateway::start_with(
            bin,
            db,
            dir,
            settings.rust_log.as_deref(),
            &opts,
        )?);
        gw.wait_ready(client)
            .await
            .with_context(|| format!("instance {i}"))?;
    }

    let customer_uid = format!("bench-{tag}-sched");
    let (expiry_iso, _) = load::future_expiry();
    load::register_customer(client, &base, &token, &customer_uid, &expiry_iso)
        .await
        .context("register the billing key the schedules charge")?;
    let baseline: HashSet<String> = ledger(client, &sandbox)
        .await?
        .iter()
        .filter_map(|e| e["tno"].as_str().map(str::to_owned))
        .collect();

    // Due a few seconds after creation should be over: 5 s plus 3 s per 1,000 schedules. Creating
    // 10,000 took about 4 s on a fast host and over 17 s on a slow one (2026-12-04), where a lead
    // of 1 s per 1,000 let the last ones fall due before they were created. Only the drain after
    // the due second is measured, so a longer lead costs waiting, not accuracy.
    let lead = Duration::from_secs(5 + 3 * (settings.n as u64).div_ceil(1000));
    let due = (unix_now() + lead).as_secs() as i64 + 1;
    let create_started = Instant::now();
    let mut created = 0;
    while created < settings.n {
        let end = (created + settings.batch).min(settings.n);
        let items: Vec<Value> = (created..end)
            .map(|i| {
                json!({
                    "merchant_uid": merchant_uid(tag, i),
                    "schedule_at": due,
                    "amount": AMOUNT,
                    "name": "openport-bench schedule",
                })
            })
            .collect();
        let res = client
            .post(format!("{base}/subscribe/payments/schedule"))
            .header("Authorization", &token)
            .json(&json!({"customer_uid": customer_uid, "schedules": items}))
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        let (status, body) = read(res).await?;
        let got = body["response"].as_array().map_or(0, Vec::len);
        if status != 200 || body["code"] != 0 || got != end - created {
            let text: String = body.to_string().chars().take(600).collect();
            bail!(
                "creating schedules {created}..{end} (due {due}, now {}): HTTP {status}: {text}",
                unix_now().as_secs()
            );
        }
        created = end;
    }
    let create_time = create_started.elapsed();
    eprintln!(
        "  scheduler: created {} schedules in {:.1} s ({} per request), due at {due}",
        settings.n,
        create_time.as_secs_f64(),
        settings.batch
    );

    // The instances compare schedule_at with their clock in whole seconds, so the schedules are
    // due from the start of second `due`.
    let until_due = Duration::from_secs(due as u64).saturating_sub(unix_now());
    let due_at = Instant::now() + until_due;
    tokio::time::sleep_until(due_at.into()).await;
    let pids: Vec<u32> = fleet.iter().filter_map(Gateway::pid).collect();
    let cpu_before = cpu::sample_all(&pids);
    // Generous: 60 s plus 20 ms per schedule (a drain at 50/s still finishes).
    let limit = Duration::from_secs(60) + Duration::from_millis(20 * settings.n as u64);
    let mut first_seen = None;
    let mut drained = None;
    let mut executed = 0;
    let mut timeline = Vec::new();
    let mut next_mark = 1.0;
    let mut analyzed_after = None;
    while due_at.elapsed() < limit {
        executed = count(client, &base, &token, due, "executed").await?;
        let t = due_at.elapsed();
        if analyzed_after.is_none() && settings.analyze_at.is_some_and(|at| executed >= at) {
            db.analyze().await.context("ANALYZE")?;
            analyzed_after = Some(t.as_secs_f64());
            eprintln!(
                "  scheduler: ANALYZE after {:.1} s ({executed} executed)",
                t.as_secs_f64()
            );
        }
        if executed > 0 && first_seen.is_none() {
            first_seen = Some(t);
        }
        if t.as_secs_f64() >= next_mark {
            timeline.push((t.as_secs_f64(), executed));
            if timeline.len() % 5 == 0 {
                eprintln!(
                    "  scheduler: {executed} of {} executed after {:.1} s",
                    settings.n,
                    t.as_secs_f64()
                );
            }
            next_mark = t.as_secs_f64().floor() + 1.0;
        }
        if executed >= settings.n as u64 {
            drained = Some(t);
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let cpu = cpu::share(cpu_before, cpu::sample_all(&pids));
    if drained.is_none() {
        eprintln!(
            "  scheduler: timed out after {} s with {executed} of {} executed",
            limit.as_secs(),
            settings.n
        );
    }
    let still_scheduled = count(client, &base, &token, due, "scheduled").await?;

    // Exactly once: the sandbox holds one approval per schedule, each for its own order number.
    let entries = ledger(client, &sandbox).await?;
    let fresh: Vec<&Value> = entries
        .iter()
        .filter(|e| e["tno"].as_str().is_some_and(|t| !baseline.contains(t)))
        .collect();
    let mut per_order: HashMap<&str, usize> = HashMap::new();
    for e in &fresh {
        *per_order
            .entry(e["order_no"].as_str().unwrap_or(""))
            .or_default() += 1;
    }
    let mut duplicates: Vec<(String, usize)> = per_order
        .iter()
        .filter(|(_, &k)| k > 1)
        .map(|(o, &k)| ((*o).to_owned(), k))
        .collect();
    duplicates.sort();
    let duplicate_order_count = duplicates.len();
    duplicates.truncate(5);
    let ledger_amount_mismatch = fresh.iter().filter(|e| e["amount"] != AMOUNT).count();
    let tnos: HashMap<&str, usize> = fresh.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e["tno"].as_str().unwrap_or("")).or_default() += 1;
        m
    });

    // And over REST: every sampled schedule executed and paid, with exactly one payment for its
    // merchant_uid, whose KCP tno is in the ledger once.
    let sample = settings.sample.min(settings.n);
    let mut sample_problems = Vec::new();
    for k in 0..sample {
        let i = k * settings.n / sample.max(1);
        if let Err(e) = check_one(client, &base, &token, &merchant_uid(tag, i), &tnos).await {
            sample_problems.push(format!("{}: {e:#}", merchant_uid(tag, i)));
        }
    }

    let logs = fleet
        .iter()
        .map(|g| {
            let text = std::fs::read_to_string(&g.log).unwrap_or_default();
            let errors = text.lines().filter(|l| l.contains("ERROR")).count();
            let charges = text
                .lines()
                .filter(|l| l.contains("kcp.pay_with_batch_key") && l.contains("KCP result"))
                .count();
            (
                g.log
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                errors,
                charges,
            )
        })
        .collect();

    Ok(SchedulerResult {
        n: settings.n,
        instances: fleet.len(),
        interval_ms: settings.interval_ms,
        batch: settings.batch,
        concurrency: settings.concurrency,
        claim_batch: settings.claim_batch,
        analyzed_after,
        create_time,
        lead,
        first_seen,
        drained,
        executed,
        still_scheduled,
        timeline,
        ledger_new: fresh.len(),
        ledger_distinct_orders: per_order.len(),
        duplicate_orders: duplicates,
        duplicate_order_count,
        ledger_amount_mismatch,
        sampled: sample,
        sample_problems,
        logs,
        cpu,
    })
}

fn merchant_uid(tag: &str, i: usize) -> String {
    format!("bench-{tag}-sched-{i}")
}

/// Schedules of the run (all due at `due`) in `status`, from the list endpoint's `total`.
async fn count(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    due: i64,
    status: &str,
) -> anyhow::Result<u64> {
    let res = client
        .get(format!(
            "{base}/subscribe/payments/schedule?schedule_from={due}&schedule_to={}&schedule_status={status}&limit=1",
            due + 1
        ))
        .header("Authorization", token)
        .send()
        .await?;
    let (code, body) = read(res).await?;
    match body["response"]["total"].as_u64() {
        Some(n) if code == 200 && body["code"] == 0 => Ok(n),
        _ => bail!("GET /subscribe/payments/schedule answered HTTP {code}: {body}"),
    }
}

async fn ledger(client: &reqwest::Client, sandbox: &str) -> anyhow::Result<Vec<Value>> {
    let res = client
        .get(format!("{sandbox}/_sandbox/ledger"))
        .timeout(Duration::from_secs(120))
        .send()
        .await?;
    let (status, body) = read(res).await?;
    match body {
        Value::Array(entries) if status == 200 => Ok(entries),
        other => {
            let text: String = other.to_string().chars().take(400).collect();
            bail!("GET /_sandbox/ledger answered HTTP {status}: {text}")
        }
    }
}

async fn check_one(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    uid: &str,
    tnos: &HashMap<&str, usize>,
) -> anyhow::Result<()> {
    let res = client
        .get(format!("{base}/subscribe/payments/schedule/{uid}"))
        .header("Authorization", token)
        .send()
        .await?;
    let (status, s) = read(res).await?;
    let s = &s["response"];
    if status != 200 || s["schedule_status"] != "executed" || s["payment_status"] != "paid" {
        bail!("schedule: HTTP {status}: {s}");
    }
    let res = client
        .get(format!("{base}/payments/findAll/{uid}"))
        .header("Authorization", token)
        .send()
        .await?;
    let (status, p) = read(res).await?;
    let list = p["response"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if status != 200 || list.len() != 1 {
        bail!(
            "{} payments for this merchant_uid (HTTP {status}): {p}",
            list.len()
        );
    }
    let pay = &list[0];
    if pay["status"] != "paid" || pay["imp_uid"] != s["imp_uid"] {
        bail!("payment {pay} does not match schedule {s}");
    }
    let tno = pay["pg_tid"].as_str().unwrap_or("");
    match tnos.get(tno) {
        Some(1) => Ok(()),
        n => bail!("pg_tid {tno:?} is in the new ledger entries {n:?} times"),
    }
}

/// Markdown for the printed report.
pub fn table(r: &SchedulerResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let secs =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64()));
    let _ = writeln!(
        s,
        "\nscheduler: {} instances on one PostgreSQL database · {} schedules due at the same second · \
         created {} per request in {:.1} s (lead {} s) · resolver interval {} ms · scheduler \
         concurrency {} · claim batch {}",
        r.instances,
        r.n,
        r.batch,
        r.create_time.as_secs_f64(),
        r.lead.as_secs(),
        r.interval_ms,
        r.concurrency
            .map_or_else(|| "default".into(), |c| c.to_string()),
        r.claim_batch
            .map_or_else(|| "default".into(), |b| b.to_string()),
    );
    if let Some(t) = r.analyzed_after {
        let _ = writeln!(s, "ANALYZE run {t:.1} s after due");
    }
    let _ = writeln!(
        s,
        "\n| schedules | executed | still scheduled | first executed after due (s) | all executed after due (s) | schedules/s | sandbox approvals | distinct order_no | orders charged twice | sampled over REST | sample problems | CPU cores bench / 3 gateways / postgres / other |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.n,
        r.executed,
        r.still_scheduled,
        secs(r.first_seen),
        secs(r.drained),
        r.throughput()
            .map_or_else(|| "-".into(), |t| format!("{t:.0}")),
        r.ledger_new,
        r.ledger_distinct_orders,
        r.duplicate_order_count,
        r.sampled,
        r.sample_problems.len(),
        r.cpu.map_or_else(
            || "-".into(),
            |c| format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                c.bench, c.gateway, c.database, c.other
            )
        ),
    );
    let _ = writeln!(
        s,
        "\nexactly once: {}",
        if r.duplicates_free() {
            "yes (one approval per schedule, all order numbers distinct, every sampled schedule paid once)"
        } else {
            "NO, see below"
        }
    );
    for (o, k) in &r.duplicate_orders {
        let _ = writeln!(s, "  order_no {o} approved {k} times");
    }
    if r.ledger_amount_mismatch > 0 {
        let _ = writeln!(
            s,
            "  {} approvals with an unexpected amount",
            r.ledger_amount_mismatch
        );
    }
    for p in r.sample_problems.iter().take(8) {
        let _ = writeln!(s, "  {p}");
    }
    let progress: Vec<String> = r
        .timeline
        .iter()
        .map(|(t, n)| format!("{t:.0}s:{n}"))
        .collect();
    let _ = writeln!(
        s,
        "progress (executed by seconds after due): {}",
        progress.join(" ")
    );
    for (log, errors, charges) in &r.logs {
        let _ = writeln!(
            s,
            "{log}: {errors} ERROR lines, {charges} batch-key charges logged"
        );
    }
    s
}

pub fn json(r: &SchedulerResult) -> Value {
    json!({
        "schedules": r.n,
        "instances": r.instances,
        "resolver_interval_ms": r.interval_ms,
        "batch": r.batch,
        "scheduler_concurrency": r.concurrency,
        "scheduler_claim_batch": r.claim_batch,
        "analyzed_after_due_s": r.analyzed_after,
        "create_s": r.create_time.as_secs_f64(),
        "lead_s": r.lead.as_secs(),
        "first_executed_after_due_s": r.first_seen.map(|d| d.as_secs_f64()),
        "all_executed_after_due_s": r.drained.map(|d| d.as_secs_f64()),
        "schedules_per_s": r.throughput(),
        "executed": r.executed,
        "still_scheduled": r.still_scheduled,
        "sandbox_new_approvals": r.ledger_new,
        "distinct_order_no": r.ledger_distinct_orders,
        "orders_charged_twice": r.duplicate_order_count,
        "amount_mismatches": r.ledger_amount_mismatch,
        "sampled": r.sampled,
        "sample_problems": r.sample_problems,
        "exactly_once": r.duplicates_free(),
        "timeline": r.timeline,
        "logs": r.logs.iter().map(|(l, e, c)| json!({"log": l, "error_lines": e, "batch_key_charges": c})).collect::<Vec<_>>(),
        "cpu_cores": r.cpu,
    })
}

/// `Vec::push` then a reference to the pushed element.
trait PushMut<T> {
    fn push_mut_compat(&mut self, value: T) -> &mut T;
}

impl<T> PushMut<T> for Vec<T> {
    fn push_mut_compat(&mut self, value: T) -> &mut T {
        self.push(value);
        self.last_mut().expect("just pushed")
    }
}
