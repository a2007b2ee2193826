//! The sandbox's memory of what it approved and cancelled: the state inquiry reports and the
//! state tests assert on. Card data is kept masked only.
//!
//! Card approvals (key-in and batch, `PACA`) and Benepia point payments (`PAPT`) share one ledger,
//! so cancel and inquiry treat them alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::clock::kcp_time;
use crate::codes;
use crate::wire::Refusal;

/// Where an approval stands, named by KCP's `stat_ca_cd` (cards) / `stat_pt_cd` (points)
/// (spec §2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionState {
    /// STSR: approved, nothing cancelled.
    #[serde(rename = "STSR")]
    Approved,
    /// STPC: partially cancelled, balance left.
    #[serde(rename = "STPC")]
    PartiallyCancelled,
    /// STSC: cancelled, balance 0.
    #[serde(rename = "STSC")]
    Cancelled,
    /// A virtual account issued and not paid in full yet (sandbox code `STIS`, an assumption:
    /// KCP publishes no inquiry status for it). Becomes `Approved` once the deposits reach the
    /// amount.
    #[serde(rename = "STIS")]
    Issued,
}

impl TransactionState {
    pub fn stat_ca_cd(self) -> &'static str {
        match self {
            Self::Approved => "STSR",
            Self::PartiallyCancelled => "STPC",
            Self::Cancelled => "STSC",
            Self::Issued => "STIS",
        }
    }
}

/// Card facts echoed by approval and inquiry; the number is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSummary {
    pub masked_card_no: String,
    pub card_cd: String,
    pub card_name: String,
    pub quota: String,
    pub bin_type_01: String,
    pub bin_type_02: String,
    /// `partcanc_yn` of the approval: false when KCP takes no partial cancel (`STPC`) of it. A
    /// state file written before the field was kept read as true (every card took one then).
    #[serde(default = "partial_cancel_taken")]
    pub partial_cancel: bool,
}

fn partial_cancel_taken() -> bool {
    true
}

/// Point facts of a Benepia payment (spec §2.8): whose points were used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointSummary {
    /// `pt_issue`: always `SCWB` (Benepia).
    pub pt_issue: String,
    /// The Benepia account (`pt_idno`) charged, and refunded on cancel.
    pub account_id: String,
    pub memcorp_cd: String,
}

/// One cancel (STSC or STPC) applied to an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRecord {
    /// 1, 2, … per approval; reported as `mod_pacn_seq_no` for partial cancels.
    pub seq: u32,
    pub mod_type: String,
    pub amount: i64,
    pub balance_after: i64,
    /// `yyyyMMddHHmmss` KST.
    pub canc_time: String,
    pub mod_desc: Option<String>,
}

/// One approval and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub tno: String,
    pub site_cd: String,
    pub order_no: String,
    pub pay_method: String,
    pub amount: i64,
    pub balance: i64,
    pub state: TransactionState,
    pub app_time: String,
    pub app_no: String,
    pub trace_no: String,
    pub approved_at: DateTime<Utc>,
    /// Set for card approvals (`PACA`).
    pub card: Option<CardSummary>,
    /// Set for point payments (`PAPT`).
    pub point: Option<PointSummary>,
    pub cancels: Vec<CancelRecord>,
    /// On a cancelled point payment: the tno of its re-approval (`STRA`), which happens once.
    pub reapproved_by: Option<String>,
    /// On a re-approval: the tno of the cancelled point payment it re-approves.
    pub reapproval_of: Option<String>,
}

impl LedgerEntry {
    /// Time of the last cancel, once the balance is gone.
    pub fn canc_time(&self) -> Option<&str> {
        match self.state {
            TransactionState::Cancelled => self.cancels.last().map(|c| c.canc_time.as_str()),
            _ => None,
        }
    }

    /// Takes `amount` off the balance and records the cancel.
    pub(crate) fn record_cancel(
        &mut self,
        mod_type: &str,
        amount: i64,
        canc_time: String,
        mod_desc: Option<String>,
    ) -> &CancelRecord {
        self.balance -= amount;
        self.state = if self.balance == 0 {
            TransactionState::Cancelled
        } else {
            TransactionState::PartiallyCancelled
        };
        let seq = u32::try_from(self.cancels.len()).unwrap_or(u32::MAX - 1) + 1;
        self.cancels.push(CancelRecord {
            seq,
            mod_type: mod_type.to_owned(),
            amount,
            balance_after: self.balance,
            canc_time,
            mod_desc,
        });
        &self.cancels[self.cancels.len() - 1]
    }
}

/// Approvals keyed by tno, in approval order, with an index by merchant order so looking an
/// order up (every approval checks for a duplicate) does not scan the whole ledger.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    by_tno: BTreeMap<String, LedgerEntry>,
    order: Vec<String>,
    /// (site_cd, order_no) → tnos of that order, oldest first.
    by_order: std::collections::HashMap<(String, String), Vec<String>>,
}

impl Ledger {
    pub fn insert(&mut self, entry: LedgerEntry) {
        self.order.push(entry.tno.clone());
        self.by_order
            .entry((entry.site_cd.clone(), entry.order_no.clone()))
            .or_default()
            .push(entry.tno.clone());
        self.by_tno.insert(entry.tno.clone(), entry);
    }

    /// Approvals of one merchant order, newest first.
    fn of_order<'a>(
        &'a self,
        site_cd: &str,
        order_no: &str,
    ) -> impl Iterator<Item = &'a LedgerEntry> + 'a {
        self.by_order
            .get(&(site_cd.to_string(), order_no.to_string()))
            .into_iter()
            .flat_map(|tnos| tnos.iter().rev())
            .filter_map(|tno| self.by_tno.get(tno))
    }

    pub fn get_mut(&mut self, tno: &str) -> Option<&mut LedgerEntry> {
        self.by_tno.get_mut(tno)
    }

    pub fn get(&self, tno: &str) -> Option<&LedgerEntry> {
        self.by_tno.get(tno)
    }

    /// The latest approval for a merchant order: how a caller that lost the answer finds it.
    pub fn by_order(&self, site_cd: &str, order_no: &str) -> Option<&LedgerEntry> {
        self.of_order(site_cd, order_no).next()
    }

    /// The latest approval for a merchant order paid with `pay_method` (`PACA`, `PAPT`).
    pub fn by_order_and_method(
        &self,
        site_cd: &str,
        order_no: &str,
        pay_method: &str,
    ) -> Option<&LedgerEntry> {
        self.of_order(site_cd, order_no)
            .find(|entry| entry.pay_method == pay_method)
    }

    /// Whether an approval for (site_cd, order_no) still stands (not fully cancelled or revoked).
    pub fn order_is_live(&self, site_cd: &str, order_no: &str) -> bool {
        self.by_order(site_cd, order_no)
            .is_some_and(|entry| entry.state != TransactionState::Cancelled)
    }

    /// A new approval of `amount` for (site_cd, order_no) at `now`, not inserted yet: a fresh tno,
    /// approval and trace numbers, nothing cancelled. Callers set what their kind adds (card,
    /// points, an `Issued` state). With `refuse_duplicate` (the sandbox's
    /// `refuse_duplicate_orders`, on by default) it is refused with 9520 while an approval of the
    /// order stands; without it the order is approved again under a new tno, as KCP may (nothing
    /// in spec/kcp.md says it refuses), and an inquiry by order number then answers the newest.
    pub fn new_approval(
        &self,
        site_cd: &str,
        order_no: &str,
        pay_method: &str,
        amount: i64,
        now: DateTime<Utc>,
        refuse_duplicate: bool,
    ) -> Result<LedgerEntry, Refusal> {
        if refuse_duplicate && self.order_is_live(site_cd, order_no) {
            return Err(Refusal::new(
                codes::DUPLICATE_ORDER,
                "이미 승인된 주문번호입니다.",
            ));
        }
        let app_time = kcp_time(now);
        Ok(LedgerEntry {
            tno: self.new_tno(),
            site_cd: site_cd.to_owned(),
            order_no: order_no.to_owned(),
            pay_method: pay_method.to_owned(),
            amount,
            balance: amount,
            state: TransactionState::Approved,
            app_time,
            app_no: new_app_no(),
            trace_no: new_trace_no(site_cd),
            approved_at: now,
            card: None,
            point: None,
            cancels: Vec::new(),
            reapproved_by: None,
            reapproval_of: None,
        })
    }

    /// A fresh 14-digit tno (spec §2.4, §6: 14 digits; KCP's own are not always date-shaped) that
    /// no sandbox in this process gave before and, as long as the clock does not go back, that no
    /// earlier run gave either: see [`next_tno`]. The ledger check only guards a state file written
    /// by a run whose clock was ahead.
    pub fn new_tno(&self) -> String {
        loop {
            let tno = format!("{:014}", next_tno(Utc::now()));
            if !self.by_tno.contains_key(&tno) {
                return tno;
            }
        }
    }

    /// A ledger of `entries` in approval order, as [`Ledger::snapshot`] gave them: the ledger of a
    /// state file. A tno found twice is refused (no sandbox wrote that file).
    pub fn restore(entries: Vec<LedgerEntry>) -> Result<Self, String> {
        let mut ledger = Self::default();
        for entry in entries {
            if ledger.by_tno.contains_key(&entry.tno) {
                return Err(format!("tno {} appears twice in the ledger", entry.tno));
            }
            ledger.insert(entry);
        }
        Ok(ledger)
    }

    pub fn snapshot(&self) -> Vec<LedgerEntry> {
        self.order
            .iter()
            .filter_map(|tno| self.by_tno.get(tno))
            .cloned()
            .collect()
    }
}

/// Tnos a millisecond may take before the count runs ahead of the clock.
const TNOS_PER_MILLISECOND: u64 = 100;

/// Milliseconds from the Unix epoch to 2020-01-01T00:00:00Z: counting from there, a tno keeps 14
/// digits until 2051.
const TNO_EPOCH_MS: i64 = 1_577_836_800_000;

/// The last tno number this process gave.
static LAST_TNO: AtomicU64 = AtomicU64::new(0);

/// The next tno number: one more than the last one this process gave, and never less than the wall
/// clock's milliseconds since [`TNO_EPOCH_MS`] times [`TNOS_PER_MILLISECOND`]. A sandbox run in
/// memory forgets its ledger when it stops, and every sandbox of a test process shares one
/// database; random digits made the next run (or the next test's sandbox) name a trade an earlier
/// one had given about once in a hundred approvals on a database holding a day of them, and real
/// KCP never reuses a tno. Counting up from the clock needs no memory: a restarted run starts past
/// everything an earlier one gave unless that one averaged more than 100,000 approvals a second.
/// The wall clock, not the sandbox's (tests move that one back and forth).
fn next_tno(now: DateTime<Utc>) -> u64 {
    let floor =
        u64::try_from(now.timestamp_millis() - TNO_EPOCH_MS).unwrap_or(0) * TNOS_PER_MILLISECOND;
    let next = |last: u64| (last + 1).max(floor);
    let last = LAST_TNO
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(next(last))
        })
        .unwrap_or_else(|last| last);
    next(last)
}

/// 8-digit approval number (spec §2.4).
pub(crate) fn new_app_no() -> String {
    format!("{:08}", rand::thread_rng().gen_range(0..100_000_000))
}

/// 10-digit Benepia approval number (`pnt_app_no`, seed 003: `0264502327`).
pub(crate) fn new_point_app_no() -> String {
    format!(
        "{:010}",
        rand::thread_rng().gen_range(0..10_000_000_000_u64)
    )
}

/// site_cd + 11 uppercase letters/digits (spec §2.1, §6).
pub(crate) fn new_trace_no(site_cd: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..11)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("{site_cd}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tno_is_never_below_the_clocks_count_so_a_later_run_starts_past_an_earlier_one() {
        let now = Utc::now();
        let floor = u64::try_from(now.timestamp_millis() - TNO_EPOCH_MS).unwrap() * 100;

        let first = next_tno(now);
        let second = next_tno(now);

        assert!(first >= floor);
        assert!(second > first);
        assert_eq!(format!("{second:014}").len(), 14);
    }
}
