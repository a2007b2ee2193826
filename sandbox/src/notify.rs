//! Virtual-account deposits and KCP's common notification (spec §2.12): a deposit on an issued
//! account is sent to the site's notification URL as a `TX00` form POST, and sent again (bounded
//! backoff) until the merchant answers the `result=0000` HTML.
use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use crate::clock::kcp_time;
use crate::Shared;

/// One notification and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationRecord {
    pub noti_id: String,
    pub site_cd: String,
    pub tno: String,
    pub url: String,
    pub op_cd: String,
    pub amount: i64,
    pub total: i64,
    pub attempts: u32,
    pub acknowledged: bool,
    #[serde(skip)]
    form: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct NotifyBook {
    /// site_cd → URL; `*` is the default for sites without their own.
    urls: HashMap<String, String>,
    /// tno → total deposited so far.
    deposits: HashMap<String, i64>,
    log: Vec<NotificationRecord>,
}

/// How many times a notification is sent before the sandbox gives up (KCP retries for days; a
/// test sandbox must stop by itself).
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("no virtual account with this tno")]
    NoSuchAccount,
    #[error("no notification URL for site {0}")]
    NoUrl(String),
}

pub(crate) fn set_url(s: &Shared, site_cd: &str, url: &str) {
    s.notify().urls.insert(site_cd.to_string(), url.to_string());
}

/// Records a deposit (`op_cd` "13" = a deposit cancelled through the bank network) and returns the
/// notification to send.
pub(crate) fn deposit(
    s: &Shared,
    tno: &str,
    amount: i64,
    op_cd: &str,
) -> Result<NotificationRecord, DepositError> {
    let (site_cd, order_no) = {
        let ledger = s.ledger();
        let entry = ledger
            .get(tno)
            .filter(|e| e.pay_method == "PAVC")
            .ok_or(DepositError::NoSuchAccount)?;
        (entry.site_cd.clone(), entry.order_no.clone())
    };
    let account = crate::window::vbank_account(s, tno).unwrap_or_default();
    let mut book = s.notify();
    let url = book
        .urls
        .get(&site_cd)
        .or_else(|| book.urls.get("*"))
        .cloned()
        .ok_or_else(|| DepositError::NoUrl(site_cd.clone()))?;
    let total = {
        let t = book.deposits.entry(tno.to_string()).or_insert(0);
        if op_cd == "13" {
            *t -= amount;
        } else {
            *t += amount;
        }
        *t
    };
    let noti_id = format!(
        "{}{:06}",
        kcp_time(s.now()),
        rand::thread_rng().gen_range(0..1_000_000)
    );
    let now = kcp_time(s.now());
    let form: Vec<(String, String)> = [
        ("site_cd", site_cd.clone()),
        ("tno", tno.to_string()),
        ("order_no", order_no),
        ("tx_cd", "TX00".into()),
        ("tx_tm", now.clone()),
        ("ipgm_name", "홍길동".into()),
        ("remitter", "홍길동".into()),
        ("ipgm_mnyx", amount.to_string()),
        ("totl_mnyx", total.to_string()),
        ("ipgm_time", now),
        ("bank_code", "BK04".into()),
        ("account", account),
        ("noti_id", noti_id.clone()),
        ("op_cd", op_cd.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let record = NotificationRecord {
        noti_id,
        site_cd,
        tno: tno.to_string(),
        url,
        op_cd: op_cd.to_string(),
        amount,
        total,
        attempts: 0,
        acknowledged: false,
        form,
    };
    book.log.push(record.clone());
    Ok(record)
}

/// Sends one notification once; true when the merchant acknowledged it.
async fn send(http: &reqwest::Client, record: &NotificationRecord) -> bool {
    match http
        .post(&record.url)
        .form(&record.form)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(res) => res
            .text()
            .await
            .map(|body| body.contains("name=\"result\" value=\"0000\""))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn mark(s: &Shared, noti_id: &str, acknowledged: bool) -> u32 {
    let mut book = s.notify();
    match book.log.iter_mut().find(|r| r.noti_id == noti_id) {
        Some(r) => {
            r.attempts += 1;
            r.acknowledged |= acknowledged;
            r.attempts
        }
        None => MAX_ATTEMPTS,
    }
}

/// Delivers a notification in the background: 1 s, 2 s, 4 s, 8 s between attempts.
pub(crate) fn deliver(shared: std::sync::Arc<Shared>, record: NotificationRecord) {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut wait = Duration::from_secs(1);
        loop {
            let ok = send(&http, &record).await;
            let attempts = mark(&shared, &record.noti_id, ok);
            if ok
                || attempts >= MAX_ATTEMPTS
                || shared
                    .notify()
                    .log
                    .iter()
                    .any(|r| r.noti_id == record.noti_id && r.acknowledged)
            {
                return;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    });
}

/// Sends every unacknowledged notification once, now (tests and the CLI don't wait for backoff).
pub(crate) async fn flush(shared: &Shared) -> usize {
    let pending: Vec<NotificationRecord> = shared
        .notify()
        .log
        .iter()
        .filter(|r| !r.acknowledged)
        .cloned()
        .collect();
    let http = reqwest::Client::new();
    let mut acknowledged = 0;
    for r in pending {
        let ok = send(&http, &r).await;
        mark(shared, &r.noti_id, ok);
        acknowledged += usize::from(ok);
    }
    acknowledged
}

pub(crate) fn log(shared: &Shared) -> Vec<NotificationRecord> {
    shared.notify().log.clone()
}
