//! Virtual-account deposits and KCP's common notification (spec §2.12): a deposit on an issued
//! account is sent to the site's notification URL as a `TX00` form POST, and sent again (bounded
//! backoff) until the merchant answers the `result=0000` HTML. A cancel in KCP's admin console can
//! be notified the same way ([`notice`]: `TX06`, `TX07`, `TX01`).
//!
//! A deposit is recorded whatever its amount (partial and over deposits too: KCP reports what
//! arrived). The ledger entry moves from `Issued` to `Approved` once the deposits reach the
//! amount, and back to `Issued` if a reversal (`op_cd` 13) takes the total under it again; the
//! inquiry (`PAVC`) shows that before the notification is sent, since the notification is only a
//! hint that a merchant should check by inquiry.
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::kcp_time;
use crate::ledger::TransactionState;
use crate::Shared;

/// `op_cd` of a deposit cancelled through the bank network (spec §2.12).
pub const OP_CD_REVERSAL: &str = "13";
/// `op_cd` the sandbox sends for an ordinary deposit.
pub const OP_CD_DEPOSIT: &str = "00";

/// One send of a notification and how the merchant answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationAttempt {
    /// `yyyyMMddHHmmss` KST, sandbox clock.
    pub at: String,
    /// The HTTP status, or `None` when the request failed (refused connection, timeout).
    pub http_status: Option<u16>,
    /// The body held `<input type="hidden" name="result" value="0000">`.
    pub acknowledged: bool,
}

/// One notification and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// A deposit's `noti_id`; for the other notifications, which carry none, the sandbox's own
    /// handle (not in `fields`).
    pub noti_id: String,
    pub tx_cd: String,
    pub site_cd: String,
    pub tno: String,
    pub url: String,
    pub op_cd: String,
    /// `ipgm_mnyx`: this deposit (or reversal).
    pub amount: i64,
    /// `totl_mnyx`: everything deposited so far.
    pub total: i64,
    pub attempts: u32,
    pub acknowledged: bool,
    /// Every send, in order.
    pub tries: Vec<NotificationAttempt>,
    /// The form fields sent, in order (no card data: a deposit notification carries none).
    pub fields: Vec<(String, String)>,
}

impl NotificationRecord {
    /// A field of the form sent.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub(crate) struct NotifyBook {
    /// site_cd → URL; `*` is the default for sites without their own.
    urls: HashMap<String, String>,
    /// tno → total deposited so far.
    deposits: HashMap<String, i64>,
    log: Vec<NotificationRecord>,
    /// The last sequence number this sandbox gave a notification ([`next_sequence`]).
    sequence: u64,
}

/// The last notification sequence number any sandbox of this process gave.
static LAST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The next sequence number of a notification of `book`, which `noti_id` (and the handle of a
/// notification without one) ends with: one more than both the book's last (kept in the state
/// file, so a restarted sandbox never reuses one) and the last any sandbox of this process gave.
/// Counted per book, every sandbox's first deposit was `<second>000001`: two sandboxes of one
/// process (tests run many side by side, on clocks set alike) gave the same `noti_id` in the same
/// second, and a test reading the process's log took one's lines for the other's. Real KCP never
/// gives one twice (spec §2.12), as the process-wide tno count (`ledger::next_tno`) never does.
fn next_sequence(book: &mut NotifyBook) -> u64 {
    let own = book.sequence;
    let next = |last: u64| last.max(own) + 1;
    let last = LAST_SEQUENCE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(next(last))
        })
        .unwrap_or_else(|last| last);
    book.sequence = next(last);
    book.sequence
}

/// The notification book as the state file keeps it (docs/sandbox.md §7): URLs, deposit totals,
/// the `noti_id` sequence (a merchant deduplicates on `noti_id`, so a restarted sandbox must not
/// reuse one) and every notification with its attempts. Ordered maps: an unchanged book writes the
/// same bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct KeptNotifications {
    urls: BTreeMap<String, String>,
    deposits: BTreeMap<String, i64>,
    sequence: u64,
    log: Vec<NotificationRecord>,
}

impl NotifyBook {
    pub(crate) fn kept(&self) -> KeptNotifications {
        KeptNotifications {
            urls: self
                .urls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            deposits: self.deposits.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            sequence: self.sequence,
            log: self.log.clone(),
        }
    }

    pub(crate) fn restore(kept: KeptNotifications) -> Self {
        Self {
            urls: kept.urls.into_iter().collect(),
            deposits: kept.deposits.into_iter().collect(),
            sequence: kept.sequence,
            log: kept.log,
        }
    }
}

/// How many times a notification is sent by the background retry before the sandbox gives up
/// (KCP retries for days; a test sandbox must stop by itself). Flushing sends again regardless.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("no virtual account with this tno")]
    NoSuchAccount,
    #[error("no notification URL for site {0}")]
    NoUrl(String),
    #[error("the deposit amount must be more than 0")]
    BadAmount,
    #[error("the virtual account was cancelled")]
    Closed,
    #[error("the virtual account's deposit deadline (va_date) has passed")]
    Expired,
    /// A reversal (`op_cd` 13) takes back money deposited: never more than the account holds (a
    /// bank cannot return what never arrived, and KCP's `totl_mnyx` never goes below 0).
    #[error("a reversal of {amount} is more than the {total} deposited on the account")]
    ReversalOverTotal { amount: i64, total: i64 },
}

pub(crate) fn set_url(s: &Shared, site_cd: &str, url: &str) {
    s.notify().urls.insert(site_cd.to_string(), url.to_string());
}

/// What has been deposited on virtual account `tno` so far (reversals taken off).
pub(crate) fn deposited(s: &Shared, tno: &str) -> i64 {
    s.notify().deposits.get(tno).copied().unwrap_or(0)
}

/// The amount of the last deposit (not a reversal) recorded on virtual account `tno`: what a
/// reversal takes back when its amount is not given (`POST /_sandbox/vbank/deposit`). None when
/// nothing was deposited.
pub(crate) fn last_deposit(s: &Shared, tno: &str) -> Option<i64> {
    s.notify()
        .log
        .iter()
        .rev()
        .find(|r| r.tno == tno && r.tx_cd == "TX00" && r.op_cd != OP_CD_REVERSAL)
        .map(|r| r.amount)
}

/// Records a deposit (`op_cd` "13" = a deposit cancelled through the bank network) and returns the
/// notification to send. Checked and recorded under one hold of the ledger: a revocation (`STSC`,
/// cancel.rs) comes wholly before, and the bank refuses the money ([`DepositError::Closed`]), or
/// wholly after, and finds the deposit. A reversal of more than the account holds is refused
/// ([`DepositError::ReversalOverTotal`]) and records nothing: KCP's running total (`totl_mnyx`)
/// is what a merchant keeps the account's money by.
pub(crate) fn deposit(
    s: &Shared,
    tno: &str,
    amount: i64,
    op_cd: &str,
) -> Result<NotificationRecord, DepositError> {
    if amount <= 0 {
        return Err(DepositError::BadAmount);
    }
    // Lock order: ledger, then windows, then notifications (state.rs `snapshot`).
    let mut ledger = s.ledger();
    let entry = ledger
        .get_mut(tno)
        .filter(|e| e.pay_method == "PAVC")
        .ok_or(DepositError::NoSuchAccount)?;
    if entry.state == TransactionState::Cancelled {
        return Err(DepositError::Closed);
    }
    let (site_cd, order_no, due) = (entry.site_cd.clone(), entry.order_no.clone(), entry.amount);
    let account = crate::window::vbank_account(s, tno).ok_or(DepositError::NoSuchAccount)?;
    // The bank takes no deposit into an account past its deadline; a reversal of an earlier
    // deposit still goes through.
    let past_due = crate::vbank::deadline(&account.va_date).is_some_and(|due| due <= s.now());
    if op_cd != OP_CD_REVERSAL && past_due {
        return Err(DepositError::Expired);
    }
    let now = kcp_time(s.now());
    let mut book = s.notify();
    let url = book
        .urls
        .get(&site_cd)
        .or_else(|| book.urls.get("*"))
        .cloned()
        .ok_or_else(|| DepositError::NoUrl(site_cd.clone()))?;
    let before = book.deposits.get(tno).copied().unwrap_or(0);
    let total = if op_cd == OP_CD_REVERSAL {
        if amount > before {
            return Err(DepositError::ReversalOverTotal {
                amount,
                total: before,
            });
        }
        before - amount
    } else {
        before + amount
    };
    book.deposits.insert(tno.to_string(), total);
    let noti_id = format!("{now}{:06}", next_sequence(&mut book));
    let fields: Vec<(String, String)> = [
        ("site_cd", site_cd.clone()),
        ("tno", tno.to_string()),
        ("order_no", order_no),
        ("tx_cd", "TX00".into()),
        ("tx_tm", now.clone()),
        ("ipgm_name", account.remitter.clone()),
        ("remitter", account.remitter.clone()),
        ("ipgm_mnyx", amount.to_string()),
        ("totl_mnyx", total.to_string()),
        ("ipgm_time", now.clone()),
        ("bank_code", account.bank_code.clone()),
        ("account", account.account.clone()),
        ("noti_id", noti_id.clone()),
        ("op_cd", op_cd.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let record = NotificationRecord {
        noti_id,
        tx_cd: "TX00".into(),
        site_cd,
        tno: tno.to_string(),
        url,
        op_cd: op_cd.to_string(),
        amount,
        total,
        attempts: 0,
        acknowledged: false,
        tries: Vec::new(),
        fields,
    };
    // Paid in full once the deposits reach the amount; a reversal can take that back. The books
    // change before the notification is logged (and so before any send or flush): a merchant that
    // verifies a notification by inquiry, as it should, finds the deposit it announces.
    match entry.state {
        TransactionState::Issued if total >= due => {
            entry.state = TransactionState::Approved;
        }
        TransactionState::Approved if total < due && entry.cancels.is_empty() => {
            entry.state = TransactionState::Issued;
        }
        _ => {}
    }
    book.log.push(record.clone());
    tracing::info!(tno, op_cd, amount, total, noti_id = %record.noti_id, "kcp sandbox recorded a virtual-account deposit");
    Ok(record)
}

/// A common notification other than a deposit (spec §2.12: `TX01`–`TX08`), made for something KCP
/// did on its side (a cancel in its admin console): the common fields only (`site_cd`, `tno`,
/// `order_no`, `tx_cd`, `tx_tm`), which carry no `noti_id` (spec §2.12 lists it for `TX00` only).
/// The record's `noti_id` is the sandbox's own handle for it (`tx_cd`-time-sequence), never sent.
/// Delivered and re-sent by the same book as deposits ([`deliver`]).
pub(crate) fn notice(
    s: &Shared,
    site_cd: &str,
    tno: &str,
    order_no: &str,
    tx_cd: &str,
) -> Result<NotificationRecord, DepositError> {
    let now = kcp_time(s.now());
    let mut book = s.notify();
    let url = book
        .urls
        .get(site_cd)
        .or_else(|| book.urls.get("*"))
        .cloned()
        .ok_or_else(|| DepositError::NoUrl(site_cd.to_owned()))?;
    let handle = format!("{tx_cd}-{now}{:06}", next_sequence(&mut book));
    let fields: Vec<(String, String)> = [
        ("site_cd", site_cd),
        ("tno", tno),
        ("order_no", order_no),
        ("tx_cd", tx_cd),
        ("tx_tm", now.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let record = NotificationRecord {
        noti_id: handle,
        tx_cd: tx_cd.to_owned(),
        site_cd: site_cd.to_owned(),
        tno: tno.to_owned(),
        url,
        op_cd: String::new(),
        amount: 0,
        total: 0,
        attempts: 0,
        acknowledged: false,
        tries: Vec::new(),
        fields,
    };
    book.log.push(record.clone());
    tracing::info!(tno, tx_cd, "kcp sandbox recorded a common notification");
    Ok(record)
}

/// Sends one notification once: the HTTP status (if any) and whether it was acknowledged.
async fn send(http: &reqwest::Client, record: &NotificationRecord) -> (Option<u16>, bool) {
    match http
        .post(&record.url)
        .form(&record.fields)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(res) => {
            let status = res.status().as_u16();
            let ok = res
                .text()
                .await
                .map(|body| body.contains("<input type=\"hidden\" name=\"result\" value=\"0000\">"))
                .unwrap_or(false);
            (Some(status), ok)
        }
        Err(_) => (None, false),
    }
}

fn is_acknowledged(s: &Shared, noti_id: &str) -> bool {
    s.notify()
        .log
        .iter()
        .any(|r| r.noti_id == noti_id && r.acknowledged)
}

/// Records an attempt; returns the attempts so far.
fn mark(s: &Shared, noti_id: &str, http_status: Option<u16>, acknowledged: bool) -> u32 {
    let at = kcp_time(s.now());
    let mut book = s.notify();
    match book.log.iter_mut().find(|r| r.noti_id == noti_id) {
        Some(r) => {
            r.attempts += 1;
            r.acknowledged |= acknowledged;
            r.tries.push(NotificationAttempt {
                at,
                http_status,
                acknowledged,
            });
            r.attempts
        }
        None => MAX_ATTEMPTS,
    }
}

/// Delivers a notification in the background: 1 s, 2 s, 4 s, 8 s between attempts, at most
/// [`MAX_ATTEMPTS`] sends, none once it is acknowledged (by this task or a flush).
pub(crate) fn deliver(shared: std::sync::Arc<Shared>, record: NotificationRecord) {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut wait = Duration::from_secs(1);
        loop {
            if is_acknowledged(&shared, &record.noti_id) {
                return;
            }
            let (status, ok) = send(&http, &record).await;
            let attempts = mark(&shared, &record.noti_id, status, ok);
            if ok || attempts >= MAX_ATTEMPTS {
                return;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    });
}

/// Starts [`deliver`] again for every notification neither acknowledged nor out of attempts: those
/// of a sandbox restored from its state file, whose background sends stopped with the last process.
/// Each goes on from the attempts it had (so at most [`MAX_ATTEMPTS`] in all), to the URL it was
/// recorded with.
pub(crate) fn resume(shared: &std::sync::Arc<Shared>) {
    let pending: Vec<NotificationRecord> = shared
        .notify()
        .log
        .iter()
        .filter(|r| !r.acknowledged && r.attempts < MAX_ATTEMPTS)
        .cloned()
        .collect();
    for record in pending {
        deliver(shared.clone(), record);
    }
}

/// Sends every unacknowledged notification once, now, in order (tests and the CLI don't wait for
/// the backoff); returns how many were acknowledged by this flush.
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
        if is_acknowledged(shared, &r.noti_id) {
            continue;
        }
        let (status, ok) = send(&http, &r).await;
        mark(shared, &r.noti_id, status, ok);
        acknowledged += usize::from(ok);
    }
    acknowledged
}

pub(crate) fn log(shared: &Shared) -> Vec<NotificationRecord> {
    shared.notify().log.clone()
}
