//! Scenarios and the load generator. Closed loop (the default): `c` workers, each sending its next
//! request when the previous one answered, until the deadline or the request budget runs out. Open
//! loop (`--rate`): requests are due at a fixed rate whatever the answers, at most `c` in flight,
//! and each latency counts from the moment the request was due, so time spent waiting for a free
//! slot is measured too (no coordinated omission). Two scenarios run at the same rate carry the
//! same load, which a closed loop cannot give a fast and a slow scenario.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Datelike;
use hdrhistogram::Histogram;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Card number as a merchant sends it to `/subscribe/payments/onetime` and
/// `/subscribe/customers/{customer_uid}` (the sandbox's 신한 test card).
pub const CARD_DASHED: &str = "4111-1111-1111-1111";
const CARD_DIGITS: &str = "4111111111111111";
/// Amount of each payment, and of each payment the cancel scenario cancels from.
const PAYMENT_AMOUNT: i64 = 1000;
const CANCEL_BASE_AMOUNT: i64 = 1_000_000;
const CANCEL_AMOUNT: i64 = 100;
/// Numbers the levels of a run.
static ROUND: AtomicU64 = AtomicU64::new(0);
/// Distinct error texts kept per run (the rest are counted under one "other" line).
const ERROR_KINDS: usize = 8;
/// Error bodies are cut to this many characters in the report.
const ERROR_TEXT: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /payments/{imp_uid}` of one paid payment.
    Lookup,
    /// `POST /subscribe/payments/onetime`, a new key-in payment each time.
    Onetime,
    /// `POST /gw/hub/v1/payment` straight to the embedded KCP sandbox (the gateway's KCP call alone).
    SandboxKeyin,
    /// `POST /payments/cancel` of 100 KRW from pre-created 1,000,000 KRW payments.
    Cancel,
    /// `POST /subscribe/payments/again` with one registered billing key, a new merchant_uid each time.
    Again,
    /// Not a closed-loop level: three gateway processes on one fresh PostgreSQL database drain
    /// `--schedules` due schedules (see scheduler.rs). Runs once, whatever `--concurrency` says.
    Scheduler,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Lookup => "lookup",
            Scenario::Onetime => "onetime",
            Scenario::SandboxKeyin => "sandbox-keyin",
            Scenario::Cancel => "cancel",
            Scenario::Again => "again",
            Scenario::Scheduler => "scheduler",
        }
    }
}

/// Everything a request needs; shared by all workers.
pub struct Target {
    pub client: reqwest::Client,
    pub base: String,
    pub sandbox_base: String,
    pub token: String,
    pub tag: String,
    /// `YYYY-MM` for the gateway, `YYMM` for KCP: a year ahead of today.
    pub expiry_iso: String,
    pub expiry_kcp: String,
    /// The endpoints the scenarios call, parsed once (reqwest parses a `String` on every request).
    pub urls: Urls,
    pub cancel_imp_uids: Vec<String>,
    pub cert_info: String,
    /// The billing key the `again` scenario charges (empty when `again` does not run).
    pub customer_uid: String,
}

/// The endpoints the scenarios call.
pub struct Urls {
    onetime: Url,
    again: Url,
    cancel: Url,
    sandbox_payment: Url,
    /// `GET /payments/{imp_uid}` of the payment the lookups read, once it exists.
    pub lookup: Option<Url>,
}

impl Urls {
    pub fn new(base: &str, sandbox_base: &str) -> anyhow::Result<Self> {
        let url = |s: String| Url::parse(&s).with_context(|| format!("URL {s}"));
        Ok(Self {
            onetime: url(format!("{base}/subscribe/payments/onetime"))?,
            again: url(format!("{base}/subscribe/payments/again"))?,
            cancel: url(format!("{base}/payments/cancel"))?,
            sandbox_payment: url(format!("{sandbox_base}/gw/hub/v1/payment"))?,
            lookup: None,
        })
    }

    pub fn lookup_of(base: &str, imp_uid: &str) -> anyhow::Result<Url> {
        Url::parse(&format!("{base}/payments/{imp_uid}")).context("lookup URL")
    }
}

/// What the scenarios check of an answer. Only these fields are decoded and the rest of the body
/// is skipped: building every answer into a `Value` was the harness's largest cost per request,
/// and on two cores the harness's CPU is taken from the gateway it measures.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Checked {
    code: Option<i64>,
    response: Option<CheckedResponse>,
    /// The sandbox's (KCP's) result code.
    res_cd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckedResponse {
    status: Option<String>,
    imp_uid: Option<String>,
}

impl Checked {
    /// iamport's `code 0` with a payment whose status is `paid`.
    fn paid(&self) -> Option<&CheckedResponse> {
        self.response
            .as_ref()
            .filter(|r| self.code == Some(0) && r.status.as_deref() == Some("paid"))
    }
}

/// Reads a scenario's answer and checks it with `ok`; an answer that fails the check is an error
/// with its HTTP status and body.
async fn expect<T>(
    res: reqwest::Response,
    ok: impl FnOnce(&Checked) -> Option<T>,
) -> anyhow::Result<T> {
    let status = res.status();
    let bytes = res.bytes().await?;
    let checked: Checked = serde_json::from_slice(&bytes).unwrap_or_default();
    match ok(&checked) {
        Some(v) if status == reqwest::StatusCode::OK => Ok(v),
        _ => bail!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&bytes)
        ),
    }
}

pub fn future_expiry() -> (String, String) {
    let year = chrono::Utc::now().year() + 2;
    (format!("{year}-12"), format!("{:02}12", year % 100))
}

/// One level's outcome.
pub struct LevelResult {
    pub scenario: Scenario,
    pub concurrency: usize,
    /// Requests per second offered (open loop); None for a closed loop.
    pub rate: Option<f64>,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of successful requests, microseconds.
    pub histogram: Histogram<u64>,
    pub error_kinds: BTreeMap<String, u64>,
    /// Average cores used by the harness, the gateway and the rest of the machine.
    pub cpu: Option<crate::cpu::Share>,
}

impl LevelResult {
    pub fn throughput(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| self.histogram.value_at_quantile(q) as f64 / 1000.0)
    }
}

struct WorkerResult {
    requests: u64,
    errors: u64,
    histogram: Histogram<u64>,
    error_kinds: BTreeMap<String, u64>,
}

impl WorkerResult {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            histogram: histogram(),
            error_kinds: BTreeMap::new(),
        }
    }

    /// Counts one answer: its latency when it succeeded, its error text when not.
    fn record(&mut self, took: Duration, outcome: anyhow::Result<()>) {
        self.requests += 1;
        match outcome {
            Ok(()) => {
                let us = (took.as_micros() as u64).clamp(1, 120_000_000);
                let _ = self.histogram.record(us);
            }
            Err(e) => {
                self.errors += 1;
                let text: String = format!("{e:#}").chars().take(ERROR_TEXT).collect();
                count_error(&mut self.error_kinds, text, 1);
            }
        }
    }
}

/// Keeps at most [`ERROR_KINDS`] distinct texts; the rest are counted as "(other errors)".
fn count_error(kinds: &mut BTreeMap<String, u64>, text: String, n: u64) {
    if kinds.len() < ERROR_KINDS || kinds.contains_key(&text) {
        *kinds.entry(text).or_default() += n;
    } else {
        *kinds.entry("(other errors)".into()).or_default() += n;
    }
}

/// How a level offers its requests.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// `c` workers, each waiting for its answer before the next request.
    Closed,
    /// This many requests per second, due at even intervals, at most `c` in flight.
    Open { rate: f64 },
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("static histogram bounds")
}

/// Runs `scenario` at `concurrency` for `duration`, closed or open loop, sending at most `budget`
/// requests. `phase` tells warm-up and measurement apart in order numbers.
pub async fn run_level(
    target: Arc<Target>,
    scenario: Scenario,
    concurrency: usize,
    load: Load,
    duration: Duration,
    budget: u64,
    phase: char,
) -> anyhow::Result<LevelResult> {
    // Every level (warm-up or measured) gets its own number, so order numbers never repeat.
    let round = ROUND.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (total, rate) = match load {
        Load::Closed => (
            closed_loop(
                target,
                scenario,
                concurrency,
                duration,
                budget,
                phase,
                round,
            )
            .await?,
            None,
        ),
        Load::Open { rate } => (
            open_loop(
                target,
                scenario,
                concurrency,
                rate,
                duration,
                budget,
                phase,
                round,
            )
            .await?,
            Some(rate),
        ),
    };
    Ok(LevelResult {
        scenario,
        concurrency,
        rate,
        requests: total.requests,
        errors: total.errors,
        elapsed: started.elapsed(),
        histogram: total.histogram,
        error_kinds: total.error_kinds,
        cpu: None,
    })
}

async fn closed_loop(
    target: Arc<Target>,
    scenario: Scenario,
    concurrency: usize,
    duration: Duration,
    budget: u64,
    phase: char,
    round: u64,
) -> anyhow::Result<WorkerResult> {
    let per_worker = (budget / concurrency as u64).max(1);
    let deadline = Instant::now() + duration;
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let target = target.clone();
        workers.spawn(async move {
            let mut out = WorkerResult::new();
            let mut seq: u64 = 0;
            while out.requests < per_worker && Instant::now() < deadline {
                let id = RequestId {
                    phase,
                    round,
                    concurrency,
                    worker,
                    seq,
                };
                seq += 1;
                let t0 = Instant::now();
                let outcome = target.send(scenario, &id).await;
                out.record(t0.elapsed(), outcome);
            }
            out
        });
    }
    let mut total = WorkerResult::new();
    while let Some(joined) = workers.join_next().await {
        let w = joined.context("worker task")?;
        total.requests += w.requests;
        total.errors += w.errors;
        total.histogram.add(&w.histogram)?;
        for (k, n) in w.error_kinds {
            count_error(&mut total.error_kinds, k, n);
        }
    }
    Ok(total)
}

/// Sends request `i` at `start + i / rate` (or as soon as one of the `concurrency` slots frees up
/// after that) and times it from `start + i / rate` (see the timer note below). Stops sending at the deadline and waits for
/// the requests in flight.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    target: Arc<Target>,
    scenario: Scenario,
    concurrency: usize,
    rate: f64,
    duration: Duration,
    budget: u64,
    phase: char,
    round: u64,
) -> anyhow::Result<WorkerResult> {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let total = Arc::new(std::sync::Mutex::new(WorkerResult::new()));
    let start = tokio::time::Instant::now();
    let deadline = start + duration;
    let mut in_flight = JoinSet::new();
    for seq in 0..budget {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        if due >= deadline {
            break;
        }
        // Timed from when it was due; but when the generator was on time and only the timer
        // woke it late (tokio's timer has millisecond granularity), from when it woke: that delay
        // is the harness's, not the system's.
        let on_time = tokio::time::Instant::now() < due;
        tokio::time::sleep_until(due).await;
        let due = if on_time {
            tokio::time::Instant::now()
        } else {
            due
        };
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .context("slots closed")?;
        let (target, total) = (target.clone(), total.clone());
        in_flight.spawn(async move {
            let id = RequestId {
                phase,
                round,
                concurrency,
                worker: 0,
                seq,
            };
            let outcome = target.send(scenario, &id).await;
            let took = due.elapsed();
            drop(slot);
            if let Ok(mut total) = total.lock() {
                total.record(took, outcome);
            }
        });
        // Reap finished tasks as we go so the set stays small.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    let total = Arc::try_unwrap(total)
        .ok()
        .context("requests still hold the results")?
        .into_inner()
        .ok()
        .context("a request panicked while recording")?;
    Ok(total)
}

/// Identifies one request; makes merchant_uid / ordr_idxx unique across the run.
struct RequestId {
    phase: char,
    round: u64,
    concurrency: usize,
    worker: usize,
    seq: u64,
}

impl Target {
    async fn send(&self, scenario: Scenario, id: &RequestId) -> anyhow::Result<()> {
        match scenario {
            Scenario::Lookup => self.lookup().await,
            Scenario::Onetime => {
                let uid = format!(
                    "bench-{}-{}{}c{}-{}-{}",
                    self.tag, id.phase, id.round, id.concurrency, id.worker, id.seq
                );
                self.onetime(&uid, PAYMENT_AMOUNT).await.map(drop)
            }
            Scenario::Again => {
                let uid = format!(
                    "bench-{}-a{}{}c{}-{}-{}",
                    self.tag, id.phase, id.round, id.concurrency, id.worker, id.seq
                );
                self.again(&uid, PAYMENT_AMOUNT).await
            }
            Scenario::Scheduler => bail!("the scheduler scenario is not a request loop"),
            Scenario::Cancel => {
                // Worker w of c takes payments w, w+c, w+2c, … in turn: no two workers of a level
                // ever cancel from the same payment, so they do not wait on each other's rows.
                let owned = self.cancel_imp_uids.len().div_ceil(id.concurrency).max(1);
                let mut k = (id.seq as usize % owned) * id.concurrency + id.worker;
                if k >= self.cancel_imp_uids.len() {
                    k = id.worker % self.cancel_imp_uids.len();
                }
                self.cancel(&self.cancel_imp_uids[k]).await
            }
            Scenario::SandboxKeyin => {
                let order = format!(
                    "SB{}{}{}C{}W{}N{}",
                    self.tag.to_ascii_uppercase(),
                    if id.phase == 'w' { "W" } else { "M" },
                    id.round,
                    id.concurrency,
                    id.worker,
                    id.seq
                );
                self.sandbox_keyin(&order).await
            }
        }
    }

    async fn lookup(&self) -> anyhow::Result<()> {
        let url = self.urls.lookup.clone().context("no payment to look up")?;
        let res = self
            .client
            .get(url)
            .header("Authorization", &self.token)
            .send()
            .await?;
        expect(res, |c| c.paid().map(drop)).await
    }

    /// A key-in payment through the gateway; returns the imp_uid of a paid payment.
    pub async fn onetime(&self, merchant_uid: &str, amount: i64) -> anyhow::Result<String> {
        let res = self
            .client
            .post(self.urls.onetime.clone())
            .header("Authorization", &self.token)
            .json(&json!({
                "merchant_uid": merchant_uid,
                "amount": amount,
                "card_number": CARD_DASHED,
                "expiry": self.expiry_iso,
                "name": "openport-bench",
            }))
            .send()
            .await?;
        expect(res, |c| c.paid().and_then(|r| r.imp_uid.clone())).await
    }

    /// `POST /subscribe/payments/again` with the run's billing key; success is a paid payment.
    async fn again(&self, merchant_uid: &str, amount: i64) -> anyhow::Result<()> {
        let res = self
            .client
            .post(self.urls.again.clone())
            .header("Authorization", &self.token)
            .json(&json!({
                "customer_uid": self.customer_uid,
                "merchant_uid": merchant_uid,
                "amount": amount,
                "name": "openport-bench again",
            }))
            .send()
            .await?;
        expect(res, |c| c.paid().map(drop)).await
    }

    async fn cancel(&self, imp_uid: &str) -> anyhow::Result<()> {
        let res = self
            .client
            .post(self.urls.cancel.clone())
            .header("Authorization", &self.token)
            .json(&json!({"imp_uid": imp_uid, "amount": CANCEL_AMOUNT, "reason": "bench"}))
            .send()
            .await?;
        expect(res, |c| (c.code == Some(0)).then_some(())).await
    }

    /// The KCP key-in call the gateway makes for a onetime payment (spec/kcp.md §2.7),
    /// non-authenticated (`11111000`) like a onetime request without birth/pwd_2digit.
    async fn sandbox_keyin(&self, ordr_idxx: &str) -> anyhow::Result<()> {
        let amount = PAYMENT_AMOUNT.to_string();
        let res = self
            .client
            .post(self.urls.sandbox_payment.clone())
            .json(&json!({
                "site_cd": "T0000",
                "kcp_cert_info": self.cert_info,
                "pay_method": "CARD",
                "cust_ip": "",
                "amount": amount,
                "card_mny": amount,
                "currency": "410",
                "quota": "00",
                "ordr_idxx": ordr_idxx,
                "good_name": "openport-bench",
                "buyr_name": "",
                "buyr_mail": "",
                "buyr_tel2": "",
                "card_tx_type": "11111000",
                "card_no": CARD_DIGITS,
                "card_expiry": self.expiry_kcp,
            }))
            .send()
            .await?;
        expect(res, |c| (c.res_cd.as_deref() == Some("0000")).then_some(()))
            .await
            .context("sandbox")
    }
}

/// `POST /subscribe/customers/{customer_uid}`: issues a billing key for the test card (birth
/// `800101`, so the sandbox authenticates it like a real 본인확인 key).
pub async fn register_customer(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    customer_uid: &str,
    expiry_iso: &str,
) -> anyhow::Result<()> {
    let res = client
        .post(format!("{base}/subscribe/customers/{customer_uid}"))
        .header("Authorization", token)
        .json(&json!({
            "card_number": CARD_DASHED,
            "expiry": expiry_iso,
            "birth": "800101",
            "customer_name": "openport-bench",
        }))
        .send()
        .await?;
    let (status, body) = read(res).await?;
    if status == 200 && body["code"] == 0 && body["response"]["customer_uid"] == customer_uid {
        Ok(())
    } else {
        bail!("POST /subscribe/customers/{customer_uid} answered HTTP {status}: {body}")
    }
}

pub async fn read(res: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = res.status().as_u16();
    let bytes = res.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, body))
}

/// A certificate the sandbox CA issued for `T0000`, as `kcp_cert_info` (the PEM without newlines).
pub async fn sandbox_cert_info(
    client: &reqwest::Client,
    sandbox_base: &str,
) -> anyhow::Result<String> {
    let res = client
        .post(format!("{sandbox_base}/_sandbox/certificates"))
        .json(&json!({"site_cd": "T0000", "passphrase": "x"}))
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let (status, body) = read(res).await?;
    match body["certificate_pem"].as_str() {
        Some(pem) if status == 200 => Ok(pem.replace(['\r', '\n'], "")),
        _ => bail!("POST /_sandbox/certificates answered {status}: {body}"),
    }
}

/// Creates `n` paid payments of `amount` through the gateway, 8 at a time.
pub async fn create_payments(
    target: &Arc<Target>,
    prefix: &str,
    n: usize,
    amount: i64,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    let mut started = 0;
    while started < n {
        let mut batch = JoinSet::new();
        for i in started..(started + 8).min(n) {
            let target = target.clone();
            let uid = format!("bench-{}-{prefix}-{i}", target.tag);
            batch.spawn(async move { (i, target.onetime(&uid, amount).await) });
        }
        started = (started + 8).min(n);
        let mut done = Vec::new();
        while let Some(j) = batch.join_next().await {
            let (i, r) = j?;
            done.push((
                i,
                r.with_context(|| format!("pre-create payment {prefix}-{i}"))?,
            ));
        }
        done.sort();
        out.extend(done.into_iter().map(|(_, uid)| uid));
    }
    Ok(out)
}

pub const CANCEL_BASE: i64 = CANCEL_BASE_AMOUNT;

#[cfg(test)]
mod tests {
    use super::Checked;

    fn checked(body: &str) -> Checked {
        serde_json::from_str(body).unwrap_or_default()
    }

    #[test]
    fn only_a_code_0_answer_with_a_paid_payment_counts_as_paid() {
        let paid = checked(
            r#"{"code":0,"message":null,"response":{"imp_uid":"imp_1","status":"paid","amount":1000,"cancel_history":[]}}"#,
        );
        assert_eq!(
            paid.paid().and_then(|r| r.imp_uid.as_deref()),
            Some("imp_1")
        );
        for body in [
            r#"{"code":0,"response":{"imp_uid":"imp_1","status":"failed"}}"#,
            r#"{"code":1,"message":"카드 한도초과","response":null}"#,
            r#"{"code":-1,"response":{"status":"paid"}}"#,
            r#"{"code":0,"response":[{"status":"paid"}]}"#,
            "<html>502 Bad Gateway</html>",
        ] {
            assert!(checked(body).paid().is_none(), "{body}");
        }
    }

    #[test]
    fn the_sandbox_answer_is_checked_by_its_result_code() {
        assert_eq!(
            checked(r#"{"res_cd":"0000","res_msg":"정상처리","tno":"1"}"#)
                .res_cd
                .as_deref(),
            Some("0000")
        );
        assert_eq!(
            checked(r#"{"res_cd":"8133"}"#).res_cd.as_deref(),
            Some("8133")
        );
    }
}
