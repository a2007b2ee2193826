//! KCP common notifications (spec/kcp.md §2.12) at `POST /kcp/notify`: virtual-account deposits
//! (`TX00`) and their reversals (`op_cd 13`). The other notifications (`TX01`–`TX08`: refunds,
//! escrow events, an account closed) carry no `noti_id` (spec §2.12 lists it for `TX00` only):
//! they are recorded under a key of their common fields (`tno`, `tx_cd`, `tx_tm`) and
//! acknowledged, KCP's re-sends of one counting once. Those that may announce a cancel KCP made
//! (`TX01`, `TX02`, `TX05`, `TX06`, `TX07`) make openport ask KCP what is left of the trade and
//! record a cancel it did not make ([`Gateway::verify_cancel_notice`]; an account awaiting its
//! deposit that KCP closed is recorded revoked); the others change nothing.
//!
//! The form is unsigned and the URL public, and a buyer sees his own account's `tno` on the
//! checkout return page: anyone can post `tx_cd=TX00&tno=…&totl_mnyx=…`. So a notification is a
//! hint to look, never proof (docs/kcp.md §11): openport asks KCP (`std/inquery`, `pay_type PAVC`,
//! by `tno`, with the merchant's own certificate) and changes the payment only to what KCP says —
//! `paid` when KCP holds the account paid in full for at least the payment's amount, back to
//! `ready` on a reversal only when KCP no longer holds it paid. The form's amounts are kept for
//! the operator and decide nothing. One KCP's inquiry does not confirm because a later one of the
//! account already accounts for what KCP holds (a deposit taken back by a reversal, a reversal a
//! new deposit made up for) is decided [`Verdict::Superseded`], on KCP's answer, an hour on.
//!
//! A deposit naming a trade openport holds no virtual account for is not asked about when posted:
//! an inquiry per post would let whoever reaches the endpoint make openport call KCP at will (and
//! KCP may throttle a site that floods it). It is answered `9999` and left undecided, as before,
//! for the resolver's sweep, which asks KCP once, a bounded batch a minute (100 rows) however
//! many were posted ([`Gateway::reverify_notifications`]): a trade KCP does not know either is decided
//! [`Verdict::Unknown`] and pruned in its time like any decided row; one KCP holds (an account
//! issued after the backup the database was restored from) stays undecided for the operator and is
//! never asked about again. A notification whose `site_cd` no merchant has, or whose `tno` is not
//! of KCP's shape (14 digits), is decided `unknown` when posted, with no inquiry: there is no
//! connector to ask with, or nothing KCP could hold. Without this, every forged post with a fresh
//! `noti_id` and `tno` stayed undecided, so kept, for good.
//!
//! Order of work (design.md §2; SQLite has one writer, store/sqlite/writer.rs): record the
//! notification (one short write) → read the payment → ask KCP with no transaction open → one
//! transaction that moves the payment only if it is still in the status the decision was made on
//! (so concurrent re-sends and the resolver apply a change at most once), writes its webhook
//! (`paid`, or `ready` for a reversal), and marks the notification verified. A notification that
//! could not be verified is not acknowledged, and its row stays unverified so that KCP's re-send
//! is verified anew.
use std::sync::Arc;

use sea_orm::{DbErr, Set};

use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::domain::vbank::first_check_again;
use crate::pg::{Pg, PgError, TradeRef, VbankState, Won};
use crate::store::entity::{kcp_notification, payment};
use crate::store::notifications::{self, Recorded};
use crate::store::webhooks::insert_delivery;
use crate::store::{payments, vbank_checks};

/// KCP's reply that stops re-sends (spec/kcp.md §2.12, exact).
pub const ACK: &str =
    "<html><body><form><input type=\"hidden\" name=\"result\" value=\"0000\"></form></body></html>";
/// `tx_cd` of a virtual-account deposit (spec §2.12).
pub const TX_DEPOSIT: &str = "TX00";
/// The notices of a cancel KCP may have made (spec §2.12: `TX01` virtual-account refund, `TX02`
/// escrow purchase decision, `TX05` immediate cancel, `TX06` cancel, `TX07` virtual account
/// closed): [`Gateway::verify_cancel_notice`].
pub const CANCEL_NOTICES: [&str; 5] = ["TX01", "TX02", "TX05", "TX06", "TX07"];
/// The notices that may announce an account awaiting its deposit closed at KCP (`TX07` account
/// closed; `TX05`, `TX06` the cancel of its trade): [`Gateway::verify_close_notice`].
const CLOSE_NOTICES: [&str; 3] = ["TX05", "TX06", "TX07"];
/// `op_cd` of a deposit cancelled through the bank network (spec §2.12).
pub const OP_CD_REVERSAL: &str = "13";

/// One notification as posted. Nothing in it is trusted but as a pointer to a trade.
#[derive(Debug, Clone)]
pub struct Notification {
    pub site_cd: String,
    pub tno: String,
    pub tx_cd: String,
    /// `tx_tm`, common to every notification: part of the key of those without `noti_id`.
    pub tx_tm: String,
    /// Only `TX00` carries one (spec §2.12).
    pub noti_id: String,
    pub op_cd: Option<String>,
    /// `ipgm_mnyx`: kept for the operator only.
    pub amount: i64,
    /// `totl_mnyx`: None when absent or not a positive number. Only a total known to be below the
    /// payment's amount spares KCP an inquiry (a partial deposit, were it true, changes nothing);
    /// it never makes a payment paid.
    pub total: Option<Won>,
    /// `ipgm_time` (Unix seconds): when the buyer paid, as notified. `paid_at` once KCP confirms
    /// the deposit ([`paid_at`]).
    pub deposited_at: Option<i64>,
}

impl Notification {
    /// `totl_mnyx` as posted: a deposit's total is positive, so anything else is unknown.
    pub fn total_from(posted: &str) -> Option<Won> {
        posted.trim().parse::<Won>().ok().filter(|t| *t > 0)
    }

    /// `ipgm_time` as posted (`yyyyMMddHHmmss`, Korea time, spec §2.12, §6); None when absent
    /// or not such a time.
    pub fn deposited_at_from(posted: &str) -> Option<i64> {
        crate::pg::kcp::wire::parse_kcp_time(posted).map(|t| t.timestamp())
    }

    fn is_reversal(&self) -> bool {
        self.op_cd.as_deref() == Some(OP_CD_REVERSAL)
    }

    /// What the notification is recorded and deduplicated under: its `noti_id`, which a deposit
    /// must carry; for the other `tx_cd`, which carry none, their common fields. None when the
    /// notification lacks what that takes.
    fn key(&self) -> Option<String> {
        if self.tno.is_empty() || self.tx_cd.is_empty() || !self.has_kcp_shape() {
            return None;
        }
        if !self.noti_id.is_empty() {
            return Some(self.noti_id.clone());
        }
        if self.tx_cd == TX_DEPOSIT {
            return None;
        }
        Some(format!("{}:{}:{}", self.tx_cd, self.tno, self.tx_tm))
    }

    /// Whether the fields are of a size and alphabet KCP sends (its `tno` is 14 digits, its codes
    /// a few letters and digits): nothing else is recorded, looked up or written into a log line,
    /// even from an allowed source (a misconfigured proxy, say, posting 100 KB in `tno`).
    fn has_kcp_shape(&self) -> bool {
        let short = |v: &str, max: usize| v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic());
        self.tno.len() <= 20
            && self.tno.bytes().all(|b| b.is_ascii_digit())
            && short(&self.tx_cd, 8)
            && short(&self.site_cd, 10)
            && short(&self.tx_tm, 20)
            && short(&self.noti_id, 64)
            && self.op_cd.as_deref().is_none_or(|op| short(op, 8))
    }

    /// Whether `row` (the first notification recorded under this `noti_id`) is this one: only then
    /// does its outcome stand for this one, so a forged post that took a `noti_id` first cannot
    /// make KCP's own notification under it be ignored.
    fn is_recorded_as(&self, row: &kcp_notification::Model) -> bool {
        row.site_cd == self.site_cd
            && row.tno == self.tno
            && row.tx_cd == self.tx_cd
            && row.op_cd == self.op_cd
            && row.amount == self.amount
            && row.total == self.total.unwrap_or(0)
            && row.deposited_at == self.deposited_at
    }
}

/// What verifying a notification found; stored as `kcp_notifications.outcome`. Every verdict is
/// acknowledged (`0000`): KCP sending it again could not change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// KCP confirmed it and the payment changed (`paid` with its webhook, or back to `ready`).
    Applied,
    /// KCP's state gives no reason to change the payment: a deposit on an account paid already
    /// (forged or not), a partial deposit, or a change already made. (A notification KCP's
    /// answer contradicts is not decided: it is asked about again, or [`Self::Superseded`].)
    Unchanged,
    /// Its `site_cd` is not the site the payment was made on. Acknowledged all the same: it names a
    /// trade of another site, which no re-send makes ours, and whoever sent it should stop; the
    /// row and a warning are left for the operator.
    Refused,
    /// Not a deposit (`tx_cd` other than `TX00`: a refund, an escrow event, an account closed):
    /// kept for the operator, nothing depends on it.
    Kept,
    /// A deposit naming a trade openport holds no virtual account for and KCP does not know
    /// either (asked once by the resolver's sweep, with the connector of the site it names), or
    /// of a site none of openport's merchants has, or with a `tno` KCP never issues: forged, or
    /// another site's notification sent here. Acknowledged: a forgery gains nothing from either
    /// answer, and KCP re-sends only its own, which no re-send makes ours. Pruned after the
    /// retention like any verdict, so forged posts do not pile up for good.
    Unknown,
    /// A deposit or reversal KCP's inquiry no longer shows because a later notification of the
    /// same account already accounts for what KCP holds: a deposit the bank took back (a later
    /// reversal), a reversal a later deposit made up for. Decided only on KCP's own answer, given
    /// [`SUPERSEDED_AFTER_SECS`] after the notification arrived and after the later one was
    /// recorded, that agrees with the later one and with the payment (`Gateway::superseded`); it
    /// never changes the payment. Left undecided, such a notification was asked about every five
    /// minutes for three days and then left to an operator.
    Superseded,
}

impl Verdict {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Applied => notifications::APPLIED,
            Self::Unchanged => "unchanged",
            Self::Refused => notifications::REFUSED,
            Self::Kept => "kept",
            Self::Unknown => "unknown",
            Self::Superseded => "superseded",
        }
    }
}

/// What [`Gateway::record_cancel_made_at_kcp`] found of a payment's trade at KCP. A notice is
/// [`Verdict::Applied`] on `Recorded` and [`Verdict::Unchanged`] on any other.
#[derive(Debug)]
pub enum CancelAtKcp {
    /// The payment holds no money a cancel could have taken (not paid, or cancelled whole):
    /// KCP not asked.
    NothingHeld,
    /// A point trade a re-approval openport sent may have cancelled, not accounted for yet: left
    /// to its second look (`cancel_recheck`) or the operator's conflict; KCP not asked.
    ReapprovalUnaccounted,
    /// The pay method has no KCP inquiry: compare with KCP's admin.
    NoInquiry,
    /// KCP knows no such trade, which contradicts its approval: compare with KCP's admin.
    NoSuchTrade,
    /// KCP holds `remaining`, at least openport's `balance`: nothing to record.
    Same { remaining: Won, balance: Won },
    /// KCP held `cancelled` less than openport: recorded as a cancel; the payment as it is now.
    Recorded {
        cancelled: Won,
        payment: Box<payment::Model>,
    },
    /// KCP holds `remaining`, less than openport's `balance`, but the cancel attempt opened for
    /// the difference (`attempt_id`) was not recorded: left open for the resolver, or closed as
    /// a conflict for the operator.
    NotRecorded {
        attempt_id: i64,
        remaining: Won,
        balance: Won,
    },
}

/// Why a notification is not acknowledged, so that KCP sends it again.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("tno and tx_cd are required, and noti_id for a deposit (TX00), all of KCP's shape")]
    Incomplete,
    /// No virtual-account payment holds the `tno`, of a site one of openport's merchants has:
    /// not asked about when posted (an inquiry per post would let anyone make openport call KCP
    /// at will), but by the resolver's sweep, once ([`Gateway::reverify_notifications`]). Until
    /// then KCP's re-sends are answered `9999`, so a deposit on an account openport records late
    /// (its issuance's answer lost and settled by the resolver) is applied at one of them.
    #[error("no virtual-account payment with tno {0}")]
    UnknownTrade(String),
    /// KCP could not be asked, or answered nothing usable: the deposit is neither believed nor
    /// denied until a re-send can be verified.
    #[error("KCP inquiry of {tno} failed: {source}")]
    Unverified { tno: String, source: PgError },
    /// The payment changed while KCP was being asked; the re-send is decided on the new status.
    #[error("payment {0} changed during verification")]
    ChangedMeanwhile(String),
    /// KCP's inquiry does not (yet) show what the notification says. A forgery earns nothing but
    /// re-sends it cannot make; a real notification that ran ahead of KCP's inquiry is verified
    /// again when KCP re-sends it, instead of being acknowledged and lost.
    #[error("KCP's inquiry of {tno} does not show the change notified ({kcp})")]
    NotConfirmed { tno: String, kcp: &'static str },
    /// The payment's merchant is one of the other mode's (a test-mode instance and a live
    /// merchant, or the reverse, on one database): this instance's calls go to the other KCP,
    /// which knows nothing of the trade. Left to an instance of the merchant's mode.
    #[error("tno {0} belongs to a merchant this instance's mode does not serve")]
    OtherMode(String),
    /// KCP holds the trade (the resolver's sweep asked), but no payment of openport's does: an
    /// account issued after the backup the database was restored from, say. Only an operator can
    /// tell; nothing KCP sends again changes that, so the sweep does not ask again.
    #[error("KCP holds {tno} ({kcp}) but no payment here does")]
    HeldOnlyAtKcp { tno: String, kcp: &'static str },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// KCP's answer on the virtual account `tno`, shared by the notifications that ask about one: an
/// inquiry that fails leaves the notification unverified ([`NotificationError::Unverified`]), so
/// that KCP's re-send is verified anew.
async fn inquire_vbank(connector: &dyn Pg, tno: &str) -> Result<VbankState, NotificationError> {
    connector
        .inquire_vbank(&TradeRef::Tno(tno.to_owned()))
        .await
        .map_err(|source| NotificationError::Unverified {
            tno: tno.to_owned(),
            source,
        })
}

/// Whether `tno` has the shape of KCP's trade numbers, 14 digits (spec/kcp.md §2.1, §2.9). A
/// notification keyed by a longer one is still recorded ([`Notification::has_kcp_shape`] leaves
/// room), but a trade openport does not hold under such a number is not one KCP could hold: it
/// is decided [`Verdict::Unknown`] without an inquiry, which KCP would refuse as malformed (not
/// "no such trade") at every sweep.
fn is_kcp_tno(tno: &str) -> bool {
    tno.len() == 14 && tno.bytes().all(|b| b.is_ascii_digit())
}

/// The status KCP's answer moves a virtual-account payment to, if any: `paid` from `ready` when KCP
/// holds the account paid for at least `amount`, `ready` from `paid` on a reversal when KCP no
/// longer holds it paid. Anything else (not found, closed, or agreeing with the status) moves
/// nothing: a closed account is the cancel flow's to record, never the notification's.
fn confirmed_change(
    status: PaymentStatus,
    amount: Won,
    reversal: bool,
    kcp: &VbankState,
) -> Option<PaymentStatus> {
    let VbankState::Open {
        paid,
        amount: held_for,
        ..
    } = kcp
    else {
        return None;
    };
    match (status, reversal) {
        (PaymentStatus::Ready, false) if *paid && *held_for >= amount => Some(PaymentStatus::Paid),
        (PaymentStatus::Paid, true) if !*paid => Some(PaymentStatus::Ready),
        _ => None,
    }
}

/// `paid_at` of a deposit KCP confirmed: when it was made as notified (`ipgm_time`), which may
/// be long before openport could confirm it (KCP's inquiry failing until the resolver's sweep);
/// the form is unsigned, so only within the account's life, from its issuance to `now`. `now`
/// when no time was notified.
fn paid_at(issued_at: i64, deposited_at: Option<i64>, now: i64) -> i64 {
    deposited_at.map_or(now, |at| at.max(issued_at).min(now))
}

/// Whether KCP's answer holds the account paid for at least `amount`.
fn still_paid_in_full(kcp: &VbankState, amount: Won) -> bool {
    matches!(kcp, VbankState::Open { paid: true, amount: held, .. } if *held >= amount)
}

/// A virtual account closed before anything was received (`cancelled`, never paid): a
/// revocation, openport's or one KCP notified.
fn is_revoked(p: &payment::Model) -> bool {
    PaymentStatus::from_db(&p.status) == PaymentStatus::Cancelled
        && p.paid_at.is_none_or(|t| t <= 0)
}

/// Whether KCP's answer holds the account as the payment's status says: unpaid for a `ready`
/// payment, paid in full for a `paid` one.
fn kcp_agrees_with(status: PaymentStatus, amount: Won, kcp: &VbankState) -> bool {
    match status {
        PaymentStatus::Ready => matches!(kcp, VbankState::Open { paid: false, .. }),
        PaymentStatus::Paid => still_paid_in_full(kcp, amount),
        _ => false,
    }
}

/// Whether recorded notification `row` announces the account paid in full for `amount`: its
/// `totl_mnyx` when known (a reversal leaving at least the amount, an extra deposit taken back,
/// does), else what a deposit or a reversal announces.
fn announces_paid(row: &kcp_notification::Model, amount: Won) -> bool {
    if row.total > 0 {
        row.total >= amount
    } else {
        row.op_cd.as_deref() != Some(OP_CD_REVERSAL)
    }
}

/// Whether a deposit or reversal (`row`, the first recorded under its `noti_id`) that KCP's
/// answer `kcp` does not confirm may be [`Verdict::Superseded`] by a later notification of its
/// account ([`accounts_for`]):
/// - it arrived at least [`SUPERSEDED_AFTER_SECS`] before `now`: KCP's inquiry has had that long
///   to show it, so the answer is not one lagging behind it (a real notification that ran ahead
///   of KCP's inquiry is what answering `9999` is for, and a later notice, forged or not, cannot
///   bury it while KCP catches up);
/// - KCP holds the account as the payment's `status` says ([`kcp_agrees_with`]): openport and KCP
///   agree, so there is nothing the notification could still make right.
fn may_be_superseded(
    row: &kcp_notification::Model,
    (status, amount): (PaymentStatus, Won),
    kcp: &VbankState,
    now: i64,
) -> bool {
    now - row.received_at >= SUPERSEDED_AFTER_SECS && kcp_agrees_with(status, amount, kcp)
}

/// Whether `later`, a notification of the account recorded after the one KCP's answer `kcp`
/// does not confirm (and before KCP was asked), decided on KCP's answer itself (`applied` or
/// `unchanged`), announces what KCP holds ([`announces_paid`]): KCP's own answer, given after
/// `later` arrived, backs it, and it explains why the earlier one no longer shows.
fn accounts_for(later: &kcp_notification::Model, amount: Won, kcp: &VbankState) -> bool {
    announces_paid(later, amount) == still_paid_in_full(kcp, amount)
}

/// KCP's answer for the log, without the account it may name (the holder can be the buyer).
fn kcp_says(state: &VbankState) -> &'static str {
    match state {
        VbankState::NotFound => "not found",
        VbankState::Open { paid: true, .. } => "open, paid",
        VbankState::Open { paid: false, .. } => "open, not paid",
        VbankState::Closed { .. } => "closed",
    }
}

/// A deposit whose notification could not be verified is left to KCP's re-sends this long, then
/// asked about by the resolver every [`REVERIFY_EVERY_SECS`], for [`REVERIFY_FOR_SECS`]: KCP
/// re-sends a notification only so many times, and a deposit KCP holds must not stay unpaid
/// here because its inquiry failed or lagged through all of them.
const REVERIFY_AFTER_SECS: i64 = 120;
const REVERIFY_EVERY_SECS: i64 = 300;
/// How long after it arrived an undecided deposit notification is asked about again; after it,
/// it waits for an operator (`/admin/status` `notifications_for_operator`).
pub(crate) const REVERIFY_FOR_SECS: i64 = 3 * 24 * 3600;
/// How long after it arrived a notification KCP's inquiry contradicts may be decided
/// [`Verdict::Superseded`] by a later one ([`may_be_superseded`]): longer than KCP's inquiry is
/// expected to lag behind its own notification, so that a genuine one that ran ahead of it is
/// applied (by KCP's re-sends, or the sweep) rather than buried by a later notice, forged or not.
/// An hour: KCP's inquiry reads the trade its notification was sent about, so it is not expected
/// to lag by more than moments; the margin costs only the sweep's looks at a stale row (every
/// five minutes), and a genuine reversal KCP showed late would otherwise be buried with the
/// payment left `paid` (no open-account look covers a paid account).
const SUPERSEDED_AFTER_SECS: i64 = 3600;

impl From<&kcp_notification::Model> for Notification {
    fn from(row: &kcp_notification::Model) -> Self {
        Self {
            site_cd: row.site_cd.clone(),
            tno: row.tno.clone(),
            tx_cd: row.tx_cd.clone(),
            noti_id: row.noti_id.clone(),
            // Not stored: a row's key (`noti_id`) already holds it where it counts.
            tx_tm: String::new(),
            op_cd: row.op_cd.clone(),
            amount: row.amount,
            // Stored as 0 when unknown (rows from before, too).
            total: Some(row.total).filter(|t| *t > 0),
            deposited_at: row.deposited_at,
        }
    }
}

impl Gateway {
    /// Verifies again the deposit notifications left unverified (see [`REVERIFY_AFTER_SECS`]):
    /// one inquiry per trade and site however many notifications name them (the endpoint is
    /// public, so rows can be forged in any number), at most `limit` rows a sweep, oldest first,
    /// and only those of the merchants this instance serves (`notifications::served_unverified`:
    /// the other mode's, skipped unmarked, filled the batch on a database shared by live and
    /// test instances). Returns how many changed a payment.
    ///
    /// A trade openport holds no payment for ([`NotificationError::UnknownTrade`]) is asked about
    /// here, never when posted, with the connector of the site the notification names
    /// ([`Self::unknown_trade_at_kcp`]): KCP does not know it → [`Verdict::Unknown`] for its
    /// rows (acknowledged from then on, pruned in time); KCP holds it → a WARN, the rows left
    /// undecided for the operator and out of the sweep for good
    /// ([`notifications::leave_to_operator`]), so a trade is asked about once, not every
    /// [`REVERIFY_EVERY_SECS`] for [`REVERIFY_FOR_SECS`]. Only an inquiry that fails is tried
    /// again, at the sweep's pace.
    ///
    /// Every instance sweeps the same rows: a trade's rows are taken before KCP is asked
    /// ([`notifications::take`]), and a trade another instance took since the list was read is
    /// skipped, so KCP is asked once however many instances share the database. Nothing is swept
    /// while this host's clock is off (service/clock_check.rs): the rows due, and the time they
    /// are taken at, are judged by it.
    ///
    /// A deposit notification received before the window that nothing ever looked at (recorded
    /// by a release from before `outcome` existed, or while every instance was down for longer
    /// than the window: `notifications::served_never_looked`) gets one look, whatever its age,
    /// decided as a recent one would be; undecided after it, it waits for the operator with a
    /// WARN naming it. Such rows fill only what the window's rows leave of `limit`, oldest first,
    /// and of a trade's rows only the latest is taken (and verified) a sweep, the others left
    /// unlooked at for the next: a database upgraded with thousands of them is worked through a
    /// batch a minute, never asked about in one burst, and the window's deposits are never kept
    /// waiting behind them. A row taken but not verified would have been looked at for good.
    pub async fn reverify_notifications(&self, limit: u64) -> ServiceResult<usize> {
        if self.clock_is_skewed() {
            return Ok(0);
        }
        let now = self.clock.unix();
        let window_start = now - REVERIFY_FOR_SECS;
        let recent = notifications::served_unverified(
            &self.db.read,
            self.served_merchants(),
            TX_DEPOSIT,
            (window_start, now - REVERIFY_AFTER_SECS),
            now - REVERIFY_EVERY_SECS,
            limit,
        )
        .await?;
        // The window's rows first; what they leave of the batch, to the oldest never looked at.
        let room = limit.saturating_sub(recent.len() as u64);
        let mut rows = if room > 0 {
            notifications::served_never_looked(
                &self.db.read,
                self.served_merchants(),
                TX_DEPOSIT,
                window_start,
                room,
            )
            .await?
        } else {
            Vec::new()
        };
        // Received before the window's rows: still oldest first.
        rows.extend(recent);
        let never_looked =
            |r: &kcp_notification::Model| r.verified_at.is_none() && r.received_at < window_start;
        // By trade and site: a trade openport does not hold is asked about as the site named.
        let mut by_trade: std::collections::BTreeMap<(&str, &str), Vec<&kcp_notification::Model>> =
            std::collections::BTreeMap::new();
        for row in &rows {
            by_trade
                .entry((row.tno.as_str(), row.site_cd.as_str()))
                .or_default()
                .push(row);
        }
        let mut applied = 0;
        for ((tno, site_cd), rows) in by_trade {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            // Read oldest first: the last is the latest total KCP notified.
            let Some(&latest) = rows.last() else {
                continue;
            };
            // A row before the window is looked at once: taken only when it is the one verified.
            let rows: Vec<&kcp_notification::Model> = rows
                .into_iter()
                .filter(|r| r.id == latest.id || !never_looked(r))
                .collect();
            // Checked from now on, by this instance alone; none moved: another took the trade.
            if notifications::take(&self.db.write, &rows, now).await? == 0 {
                continue;
            }
            let verdict = match self
                .verify(&Notification::from(latest), Some(latest), now)
                .await
            {
                Err(NotificationError::UnknownTrade(_)) => {
                    self.unknown_trade_at_kcp(site_cd, tno).await
                }
                other => other,
            };
            match verdict {
                Ok(Verdict::Applied) => applied += 1,
                // Every row of the trade and site, decided alike.
                Ok(Verdict::Unknown) => {
                    for id in ids {
                        notifications::set_outcome(
                            &self.db.write,
                            id,
                            Verdict::Unknown.as_db(),
                            now,
                        )
                        .await?;
                    }
                    continue;
                }
                Ok(_) => {}
                // Not asked, so not counted as checked (given back as read): the other mode's
                // instances' to verify. The list leaves such rows out; only a merchant whose
                // mode changed since the list was read lands here.
                Err(NotificationError::OtherMode(_)) => {
                    notifications::give_back(&self.db.write, &rows, now).await?;
                    continue;
                }
                Err(NotificationError::HeldOnlyAtKcp { kcp, .. }) => {
                    tracing::warn!(%tno, %site_cd, kcp, "KCP holds a virtual account openport has no payment for (a database restored from a backup?): compare with KCP's admin; its notifications are kept undecided");
                    notifications::leave_to_operator(&self.db.write, &ids, REVERIFY_FOR_SECS)
                        .await?;
                    continue;
                }
                // Its one look: from now on it waits for an operator (its trade's other rows
                // before the window, not taken, get theirs at the next sweeps).
                Err(e) if never_looked(latest) => {
                    let days = (now - latest.received_at) / 86_400;
                    tracing::warn!(%tno, %site_cd, noti_id = %latest.noti_id, "KCP notification received {days} days ago and never looked at (recorded by a release from before its outcome was kept, or while no instance ran): not confirmed by KCP's inquiry at its one look, left undecided for an operator to compare with KCP's admin (docs/operations.md \"KCP notifications\"; /admin/status notifications_for_operator): {e}");
                }
                // Left as taken: the others are decided by the next sweep without an inquiry
                // once the payment moved; all wait before KCP is asked again. The sweep's last
                // look at the oldest says so: from then on the rows wait for an operator.
                Err(e) => {
                    let oldest = rows.first().map_or(latest.received_at, |r| r.received_at);
                    if oldest + REVERIFY_FOR_SECS < now + REVERIFY_EVERY_SECS {
                        tracing::warn!(%tno, %site_cd, noti_id = %latest.noti_id, "KCP notification not confirmed by KCP's inquiry in {} days of looks: no longer asked about, left undecided for an operator to compare with KCP's admin (docs/operations.md \"KCP notifications\"; /admin/status notifications_for_operator); an account still awaiting its deposit is looked at hourly as before: {e}", REVERIFY_FOR_SECS / 86_400);
                    } else {
                        tracing::info!(%tno, "unverified KCP notification still not confirmed: {e}")
                    }
                }
            }
        }
        Ok(applied)
    }

    /// What KCP knows of trade `tno` notified for `site_cd`, which openport holds no payment for:
    /// asked with a connector of the site (one inquiry per KCP its merchants are on, usually
    /// one). [`Verdict::Unknown`] when none knows it (or no merchant has the site any more:
    /// nothing to ask with); [`NotificationError::HeldOnlyAtKcp`] when one does; `Unverified`
    /// when one could not be asked and none knew it.
    ///
    /// A site only merchants of the other mode have is left to an instance of that mode
    /// ([`NotificationError::OtherMode`]), as a site with a live merchant is to live instances:
    /// a test-mode instance asks only the sandbox or KCP's staging, which never know a live
    /// trade, so its "not found" must not decide a production notification.
    async fn unknown_trade_at_kcp(
        &self,
        site_cd: &str,
        tno: &str,
    ) -> Result<Verdict, NotificationError> {
        let test_mode = self.settings.test_mode;
        let merchants = crate::store::merchants::by_site_cd(&self.db.read, site_cd).await?;
        if merchants.is_empty() {
            return Ok(Verdict::Unknown);
        }
        let (ours, theirs): (Vec<_>, Vec<_>) = merchants
            .iter()
            .partition(|m| super::merchants::runs_in_mode(test_mode, m));
        if ours.is_empty() || (test_mode && !theirs.is_empty()) {
            return Err(NotificationError::OtherMode(tno.to_owned()));
        }
        let mut asked = std::collections::HashSet::new();
        let mut failed = None;
        for merchant in ours {
            // Merchants of one site on one KCP share its trades: asked once.
            if !asked.insert(merchant.kcp_api_base.as_deref()) {
                continue;
            }
            let connector = self.connectors.for_merchant(merchant, &self.secrets)?;
            match inquire_vbank(connector.as_ref(), tno).await {
                Ok(VbankState::NotFound) => {}
                Ok(state) => {
                    return Err(NotificationError::HeldOnlyAtKcp {
                        tno: tno.to_owned(),
                        kcp: kcp_says(&state),
                    })
                }
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => {
                tracing::info!(%tno, %site_cd, "KCP knows no virtual account notified: the notification is decided unknown");
                Ok(Verdict::Unknown)
            }
        }
    }

    /// Deletes up to `limit` notifications received more than `retention_days` ago (0 keeps
    /// everything): the endpoint is public, so rows, forged ones included, must not pile up for
    /// good. Long past the resolver's re-verification window. Never a notification still
    /// undecided, which an operator has to look at, nor those of a trade whose payment is still
    /// `ready`: an account's partial deposit, which KCP's inquiry does not show, is known from
    /// them alone, and a revocation must not close the account over it however long it stays
    /// open (`notifications::prune`). Returns how many went.
    pub async fn prune_notifications(&self, retention_days: u64, limit: u64) -> ServiceResult<u64> {
        let Some(before) = self.retention_cutoff(retention_days) else {
            return Ok(0);
        };
        Ok(notifications::prune(&self.db.write, before, limit).await?)
    }

    /// Records one notification and verifies it with KCP. `Ok` means "answer 0000" (decided now or
    /// before); `Err` means "answer anything else" so KCP sends it again.
    pub async fn handle_notification(&self, n: Notification) -> Result<Verdict, NotificationError> {
        let Some(key) = n.key() else {
            return Err(NotificationError::Incomplete);
        };
        let now = self.clock.unix();
        let row = kcp_notification::ActiveModel {
            noti_id: Set(key.clone()),
            site_cd: Set(n.site_cd.clone()),
            tno: Set(n.tno.clone()),
            tx_cd: Set(n.tx_cd.clone()),
            op_cd: Set(n.op_cd.clone()),
            amount: Set(n.amount),
            total: Set(n.total.unwrap_or(0)),
            deposited_at: Set(n.deposited_at),
            received_at: Set(now),
            ..Default::default()
        };
        // The row whose outcome this verification settles; None when the noti_id was first
        // recorded for another notification, which keeps its own.
        let row = match notifications::record(&self.db.write, row).await? {
            Recorded::New(row) => Some(row),
            Recorded::Existing(row) if n.is_recorded_as(&row) => {
                // Only a change made is taken as done: anything else costs one inquiry again and
                // changes nothing KCP does not confirm.
                if row.outcome.as_deref() == Some(Verdict::Applied.as_db()) {
                    return Ok(Verdict::Applied);
                }
                Some(row)
            }
            Recorded::Existing(_) => {
                tracing::warn!(noti_id = %key, tno = %n.tno, "KCP notification reuses a noti_id with other fields; verified on its own");
                None
            }
        };
        self.verify(&n, row.as_ref(), now).await
    }

    /// Decides a recorded notification (its row as last read, `recorded`, if it is its own)
    /// against KCP's state.
    async fn verify(
        &self,
        n: &Notification,
        recorded: Option<&kcp_notification::Model>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let row = recorded.map(|r| r.id);
        if CANCEL_NOTICES.contains(&n.tx_cd.as_str()) {
            return self.verify_cancel_notice(n, row, now).await;
        }
        if n.tx_cd != TX_DEPOSIT {
            // Nothing openport does depends on them yet; the row is there for the operator.
            tracing::info!(tno = %n.tno, tx_cd = %n.tx_cd, "KCP notification recorded, not applied");
            return self.settle(row, Verdict::Kept, now).await;
        }
        let Some(payment) = payments::vbank_by_tno(&self.db.read, &n.tno).await? else {
            return self.no_payment_for(n, recorded, now).await;
        };
        if payment.pg_id != n.site_cd {
            tracing::warn!(imp_uid = %payment.imp_uid, site_cd = %n.site_cd, pg_id = %payment.pg_id, noti_id = %n.noti_id, "KCP notification names another site than the payment's; refused");
            return self.settle(row, Verdict::Refused, now).await;
        }
        let status = PaymentStatus::from_db(&payment.status);
        if n.total.is_some_and(|total| total > payment.amount) {
            // More than the payment came in (the bank takes any amount, spec §2.12): the excess
            // is the buyer's, at KCP, and nobody but the operator can refund it.
            tracing::warn!(imp_uid = %payment.imp_uid, tno = %n.tno, total = n.total, amount = payment.amount, "KCP notifies more deposited than the payment's amount (over-payment): refund the difference in KCP's admin");
        }
        if !n.is_reversal() && is_revoked(&payment) {
            return self.deposit_on_revoked(n, payment, row, now).await;
        }
        let decided = if n.is_reversal() {
            // A reversal of a deposit not applied yet is checked too: acknowledged unseen, it
            // could never come again, and a re-send of the deposit during KCP's lag would then
            // make the account paid although the money went back.
            !matches!(status, PaymentStatus::Paid | PaymentStatus::Ready)
        } else {
            // Only a total known to be short spares the inquiry: an unknown one is asked about.
            status != PaymentStatus::Ready || n.total.is_some_and(|total| total < payment.amount)
        };
        if decided && !n.is_reversal() && status == PaymentStatus::Ready {
            // A partial deposit, were it true, keeps the account ready with the money on it: no
            // inquiry, but not acknowledged under a cancel in flight, as a full one is not.
            return self.settle_partial_deposit(n, &payment, row, now).await;
        }
        if decided {
            // Nothing KCP could say would move it: no inquiry, and nothing a re-send could change.
            return self.settle(row, Verdict::Unchanged, now).await;
        }
        let connector = self.connector_of(&payment, &n.tno).await?;
        // KCP's answer is only as new as the notifications seen before asking: one of the same
        // account recorded after this read (a reversal while a deposit is being verified) was
        // judged against the payment as it is now, so this answer must not overrule it (`apply`).
        let seen = notifications::newest_for(&self.db.write, &n.tno).await?;
        let kcp = inquire_vbank(connector.as_ref(), &n.tno).await?;
        match confirmed_change(status, payment.amount, n.is_reversal(), &kcp) {
            Some(to) => {
                self.apply(
                    payment,
                    (status, to),
                    (&n.tno, seen),
                    n.deposited_at,
                    row,
                    now,
                )
                .await
            }
            // A closed account is the cancel flow's to record: nothing a re-send could change.
            None if matches!(kcp, VbankState::Closed { .. }) => {
                self.settle(row, Verdict::Unchanged, now).await
            }
            // A reversal KCP agrees with, of a deposit openport never applied: decided only
            // while the payment is still `ready` (a deposit verified just before may be making it
            // `paid` now, on an answer older than this one; then the reversal is judged again).
            None if n.is_reversal()
                && status == PaymentStatus::Ready
                && matches!(kcp, VbankState::Open { paid: false, .. }) =>
            {
                self.settle_while(&payment, status, row, Verdict::Unchanged, now)
                    .await
            }
            // A reversal that leaves the total at or above the amount (an extra deposit taken
            // back), of an account KCP still holds paid in full: KCP and openport agree, and
            // nothing KCP sends again could change that. Decided only while the payment is still
            // `paid` (the mirror of the known partial total above).
            None if n.is_reversal()
                && status == PaymentStatus::Paid
                && n.total.is_some_and(|total| total >= payment.amount)
                && still_paid_in_full(&kcp, payment.amount) =>
            {
                self.settle_while(&payment, status, row, Verdict::Unchanged, now)
                    .await
            }
            // KCP holds what a later notification of the account announced, decided on KCP's
            // answer and agreeing with the payment: this one is superseded, out of the sweep.
            None if self
                .superseded(recorded, (status, payment.amount), &kcp, seen, now)
                .await? =>
            {
                tracing::info!(imp_uid = %payment.imp_uid, noti_id = %n.noti_id, kcp = kcp_says(&kcp), "KCP notification no longer shown by inquiry, accounted for by a later one of the account: superseded, payment unchanged");
                self.settle_while(&payment, status, row, Verdict::Superseded, now)
                    .await
            }
            None => {
                tracing::info!(imp_uid = %payment.imp_uid, noti_id = %n.noti_id, kcp = kcp_says(&kcp), "KCP notification not confirmed by inquiry; payment unchanged, KCP asked to send it again");
                Err(NotificationError::NotConfirmed {
                    tno: n.tno.clone(),
                    kcp: kcp_says(&kcp),
                })
            }
        }
    }

    /// Whether notification `recorded` (its own row), which KCP's answer `kcp` does not confirm,
    /// is [`Verdict::Superseded`]: it [`may_be_superseded`], and the newest notification of its
    /// account decided on KCP's answer since it, among those recorded when KCP was asked (`seen`),
    /// [`accounts_for`] what KCP holds. The later one is read only when the rest holds.
    async fn superseded(
        &self,
        recorded: Option<&kcp_notification::Model>,
        (status, amount): (PaymentStatus, Won),
        kcp: &VbankState,
        seen: Option<i64>,
        now: i64,
    ) -> Result<bool, NotificationError> {
        let (Some(row), Some(seen)) = (recorded, seen) else {
            return Ok(false);
        };
        if !may_be_superseded(row, (status, amount), kcp, now) {
            return Ok(false);
        }
        let decided = [Verdict::Applied.as_db(), Verdict::Unchanged.as_db()];
        let later =
            notifications::newest_decided_after(&self.db.write, row, seen, &decided).await?;
        Ok(later.is_some_and(|later| accounts_for(&later, amount, kcp)))
    }

    /// A deposit naming a trade openport holds no virtual account for, as posted (or swept): no
    /// inquiry here, which anyone reaching the endpoint could have openport make at will. Decided
    /// [`Verdict::Unknown`] at once when there is nothing to ask (no merchant has its `site_cd`)
    /// or nothing KCP could hold (a `tno` not of KCP's shape, [`is_kcp_tno`]); a re-send of one
    /// the sweep decided `unknown` is acknowledged as decided. Otherwise left undecided
    /// ([`NotificationError::UnknownTrade`], `9999`) for the sweep's one inquiry.
    async fn no_payment_for(
        &self,
        n: &Notification,
        recorded: Option<&kcp_notification::Model>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let unknown = Verdict::Unknown.as_db();
        if recorded.is_some_and(|r| r.outcome.as_deref() == Some(unknown)) {
            return Ok(Verdict::Unknown);
        }
        let ours = is_kcp_tno(&n.tno)
            && !crate::store::merchants::by_site_cd(&self.db.read, &n.site_cd)
                .await?
                .is_empty();
        if ours {
            return Err(NotificationError::UnknownTrade(n.tno.clone()));
        }
        tracing::info!(tno = %n.tno, site_cd = %n.site_cd, "KCP deposit notification of a site no merchant has, or of a tno KCP never issues: decided unknown");
        self.settle(recorded.map(|r| r.id), Verdict::Unknown, now)
            .await
    }

    /// A deposit notified for an account openport recorded revoked: money the bank should have
    /// refused, or a close KCP did not make, either way the buyer's money at KCP with no payment
    /// to show it. Nothing a re-send could change (the payment is closed for good), so it is
    /// acknowledged once KCP has been asked, and the operator is told what KCP holds.
    async fn deposit_on_revoked(
        &self,
        n: &Notification,
        payment: payment::Model,
        row: Option<i64>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let connector = self.connector_of(&payment, &n.tno).await?;
        let kcp = inquire_vbank(connector.as_ref(), &n.tno).await?;
        if matches!(kcp, VbankState::Open { paid: true, .. }) {
            tracing::error!(imp_uid = %payment.imp_uid, tno = %n.tno, noti_id = %n.noti_id, "KCP holds a deposit on a virtual account openport recorded revoked: refund the buyer in KCP's admin");
        } else {
            tracing::warn!(imp_uid = %payment.imp_uid, tno = %n.tno, noti_id = %n.noti_id, total = n.total, kcp = kcp_says(&kcp), "KCP notified a deposit on a virtual account openport recorded revoked; payment unchanged");
        }
        self.settle(row, Verdict::Unchanged, now).await
    }

    /// Moves the payment as KCP confirmed, in one transaction with its webhook and the
    /// notification's verdict, unless it left `from` while KCP was being asked. A deposit is
    /// `paid` at `deposited_at` as notified, within the account's life ([`paid_at`]).
    ///
    /// `seen` is the account's tno and its newest notification when KCP was asked: a newer one
    /// (a reversal that came while this deposit was verified, and that found the payment not
    /// paid yet) makes KCP's answer stale, and nothing is written; KCP's re-send of this one is
    /// verified afresh. Checked after the payment's row is locked by the status change, so a
    /// reversal recorded later waits for this write in [`Self::settle_while`] and sees it.
    ///
    /// Nor is a payment with a cancel in flight moved (a revocation whose close is at KCP, a
    /// cancel notice being recorded): `paid` under a revocation that KCP then confirms would be
    /// recorded revoked, the merchant told `paid`. The revocation re-reads the payment holding
    /// its row once its attempt is open (service/vbanks.rs), so one of the two always sees the
    /// other; this notification is decided again on KCP's re-send, after the cancel.
    async fn apply(
        &self,
        payment: payment::Model,
        (from, to): (PaymentStatus, PaymentStatus),
        seen: (&str, Option<i64>),
        deposited_at: Option<i64>,
        row: Option<i64>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        // A reversal is announced too (status `ready`): the merchant was told `paid` and may be
        // about to ship; its webhook handler re-reads the payment either way.
        let issued_at = payment.vbank_issued_at.unwrap_or(payment.started_at);
        let paid_at = (to == PaymentStatus::Paid).then(|| paid_at(issued_at, deposited_at, now));
        let webhooks = self.webhooks_announcing(&payment, to.as_iamport()).await?;
        let txn = self.db.write.begin().await?;
        let moved =
            payments::change_status_if(&txn, payment.id, from.as_db(), to.as_db(), paid_at, now)
                .await?;
        if !moved
            || notifications::newest_for(&txn, seen.0).await? != seen.1
            || payments::has_open_cancel(&txn, payment.id).await?
        {
            txn.rollback().await?;
            return Err(NotificationError::ChangedMeanwhile(payment.imp_uid));
        }
        for webhook in webhooks {
            insert_delivery(&txn, webhook).await?;
        }
        // Awaiting a deposit again: looked at by the resolver as after its issuance, should the
        // notifications of the next deposit not reach openport (service/vbank_checks.rs). Its
        // look was deleted once it was due while the account was paid.
        let again = match to {
            PaymentStatus::Ready => {
                first_check_again(now, payment.vbank_issued_at, payment.vbank_date)
            }
            _ => None,
        };
        if let Some(at) = again {
            vbank_checks::reschedule(&txn, payment.id, at).await?;
        }
        if let Some(id) = row {
            notifications::set_outcome(&txn, id, Verdict::Applied.as_db(), now).await?;
        }
        txn.commit().await?;
        tracing::info!(imp_uid = %payment.imp_uid, from = from.as_db(), to = to.as_db(), "virtual account changed as KCP confirmed");
        Ok(Verdict::Applied)
    }

    /// A deposit KCP confirmed (`kcp`) for `ready` virtual account `payment`, learnt other than
    /// from a notification (a revocation's look at KCP before it closes the account,
    /// service/vbanks.rs): applied exactly as a verified notification's would be ([`Self::apply`]:
    /// the conditional `ready → paid`, its `paid` webhook, one transaction). `seen`: the newest
    /// notification of the account when KCP was asked. `Unchanged` when KCP's answer shows no
    /// deposit of the payment's amount.
    pub(crate) async fn apply_deposit_found(
        &self,
        payment: payment::Model,
        kcp: &VbankState,
        seen: Option<i64>,
    ) -> Result<Verdict, NotificationError> {
        let Some(tno) = payment.pg_tid.clone() else {
            return Ok(Verdict::Unchanged);
        };
        let status = PaymentStatus::from_db(&payment.status);
        let Some(to) = confirmed_change(status, payment.amount, false, kcp) else {
            return Ok(Verdict::Unchanged);
        };
        // The time of the newest deposit notified (in KCP's order, of the payment's site), if
        // openport holds one (its notification unverified, say); none reached openport, or KCP
        // last notified a reversal: when it was found.
        let notified = notifications::newest_deposit(&self.db.write, &tno, &payment.pg_id)
            .await?
            .filter(|row| row.op_cd.as_deref() != Some(OP_CD_REVERSAL));
        let deposited_at = notified.as_ref().and_then(|row| row.deposited_at);
        // That notification, still undecided (KCP's inquiry failed whenever it was asked, past
        // the sweep's three days even), is decided by this: left undecided, it stayed for good,
        // an operator's alarm about a payment settled.
        let undecided = notified
            .filter(|row| row.outcome.is_none())
            .map(|row| row.id);
        let now = self.clock.unix();
        self.apply(
            payment,
            (status, to),
            (&tno, seen),
            deposited_at,
            undecided,
            now,
        )
        .await
    }

    /// A deposit notified with a total short of `payment`'s amount on a `ready` account: nothing
    /// KCP could say moves the payment, so KCP is not asked, but the money is on the account, and
    /// a revocation must not close it over the money (docs/kcp.md §10.2). Decided `unchanged`
    /// holding the payment's row, as a full deposit is applied ([`Self::apply`]), unless a cancel
    /// of the payment is in flight (a revocation whose close is at KCP) or the payment moved:
    /// then it is not acknowledged, and KCP's re-send (or the resolver's sweep) is decided after
    /// the cancel: the account still open, `unchanged`; closed by KCP anyway, a deposit on a
    /// revoked account ([`Self::deposit_on_revoked`]), inquired and logged for the operator.
    /// Acknowledged here, it was never seen again, and a close KCP then made left the deposit on
    /// a closed account with nothing logged.
    ///
    /// A revocation that opens its attempt after this check reads this notification in its look
    /// before closing (recorded before the check, and `shows_money` unless a later deposit time
    /// notified makes it old news: service/vbanks.rs), so one of the two always sees the other.
    async fn settle_partial_deposit(
        &self,
        n: &Notification,
        payment: &payment::Model,
        row: Option<i64>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let txn = self.db.write.begin().await?;
        if !payments::hold_if_status(&txn, payment.id, PaymentStatus::Ready.as_db()).await? {
            txn.rollback().await?;
            return Err(NotificationError::ChangedMeanwhile(payment.imp_uid.clone()));
        }
        if payments::has_open_cancel(&txn, payment.id).await? {
            txn.rollback().await?;
            tracing::warn!(imp_uid = %payment.imp_uid, tno = %n.tno, noti_id = %n.noti_id, total = n.total, amount = payment.amount, "KCP notifies a partial deposit while a cancel of the virtual account is in flight: not acknowledged, decided after the cancel (should KCP close the account, the deposit is on it: refund the buyer in KCP's admin)");
            return Err(NotificationError::ChangedMeanwhile(payment.imp_uid.clone()));
        }
        if let Some(id) = row {
            notifications::set_outcome(&txn, id, Verdict::Unchanged.as_db(), now).await?;
        }
        txn.commit().await?;
        Ok(Verdict::Unchanged)
    }

    /// [`Self::settle`] of a verdict that rests on the payment having `status`, in one
    /// transaction that holds the payment's row: if it changed meanwhile (or is being changed),
    /// nothing is recorded and the notification is judged again on KCP's re-send.
    async fn settle_while(
        &self,
        payment: &payment::Model,
        status: PaymentStatus,
        row: Option<i64>,
        verdict: Verdict,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let txn = self.db.write.begin().await?;
        if !payments::hold_if_status(&txn, payment.id, status.as_db()).await? {
            txn.rollback().await?;
            return Err(NotificationError::ChangedMeanwhile(payment.imp_uid.clone()));
        }
        if let Some(id) = row {
            notifications::set_outcome(&txn, id, verdict.as_db(), now).await?;
        }
        txn.commit().await?;
        Ok(verdict)
    }

    /// A notice that KCP may have cancelled (some of) a trade: a refund of a virtual account
    /// (`TX01`), an escrow purchase decision (`TX02`, a cancel when `st_cd` is `N`), an immediate
    /// cancel (`TX05`) or a cancel (`TX06`), made in KCP's admin or by the buyer at KCP. A hint to
    /// look, as a deposit is: KCP is asked what is left of the trade, and only a balance KCP holds
    /// lower than openport's is recorded, as a cancel whose attempt is opened for exactly the
    /// difference and settled by the cancel resolver's inquiry (which never sends a cancel), with
    /// the `cancelled` webhook. Nothing is sent to KCP but inquiries, so a forged notice changes
    /// nothing. Point payments too (`PAPT`): a window's is only ever cancelled whole, and a
    /// Benepia payment's trade is the one it holds now, its last re-approval's
    /// (`payments::by_tno`); the notice of a tno openport's own re-approval cancelled names a
    /// trade the payment no longer holds, or finds its cancel slot taken until that re-approval
    /// is recorded, or, when that re-approval is not accounted for (it landed after being closed
    /// as not applied), is left to its second look or the operator
    /// ([`Gateway::reapproval_unaccounted`]).
    async fn verify_cancel_notice(
        &self,
        n: &Notification,
        row: Option<i64>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let Some(payment) = payments::by_tno(&self.db.read, &n.tno).await? else {
            tracing::info!(tno = %n.tno, tx_cd = %n.tx_cd, "KCP cancel notice of a trade no payment holds; kept");
            return self.settle(row, Verdict::Kept, now).await;
        };
        if payment.pg_id != n.site_cd {
            tracing::warn!(imp_uid = %payment.imp_uid, site_cd = %n.site_cd, pg_id = %payment.pg_id, tx_cd = %n.tx_cd, "KCP notification names another site than the payment's; refused");
            return self.settle(row, Verdict::Refused, now).await;
        }
        if CLOSE_NOTICES.contains(&n.tx_cd.as_str()) && super::vbanks::awaits_deposit(&payment) {
            return self.verify_close_notice(n, payment, row, now).await;
        }
        let reason = format!("PG사 취소 통보 ({})", n.tx_cd);
        let verdict = match self
            .record_cancel_made_at_kcp(payment, &n.tno, reason)
            .await?
        {
            CancelAtKcp::Recorded { .. } => Verdict::Applied,
            _ => Verdict::Unchanged,
        };
        self.settle(row, verdict, now).await
    }

    /// Whether KCP holds less of `payment`'s trade `tno` than openport's balance, and if so the
    /// difference recorded as a cancel openport did not make (under `reason`): what a cancel
    /// notice checks once it is known to be the payment's ([`Self::verify_cancel_notice`]), and
    /// what `openport payment recheck` checks when no notice came
    /// (service/payment_recheck.rs). KCP is only asked (`std/inquery`), never sent a cancel: the
    /// difference is opened as a cancel attempt for exactly that amount and settled by the cancel
    /// resolver's inquiry, with the `cancelled` webhook. A cancel of the payment under way (or a
    /// skewed clock) is [`NotificationError::ChangedMeanwhile`]: decided again after it; KCP not
    /// answering is [`NotificationError::Unverified`]. Nothing is written but that attempt and
    /// what its settling records.
    pub(crate) async fn record_cancel_made_at_kcp(
        &self,
        payment: payment::Model,
        tno: &str,
        reason: String,
    ) -> Result<CancelAtKcp, NotificationError> {
        let balance = payment.balance();
        let holds_money = matches!(
            PaymentStatus::from_db(&payment.status),
            PaymentStatus::Paid | PaymentStatus::Cancelled
        ) && balance > 0
            && payment.paid_at.is_some_and(|t| t > 0);
        if !holds_money {
            return Ok(CancelAtKcp::NothingHeld);
        }
        if payment.pay_method == super::benepia::POINT
            && self.reapproval_unaccounted(&payment, tno).await?
        {
            tracing::warn!(imp_uid = %payment.imp_uid, %tno, %reason, "KCP may show a cancel of a point trade a re-approval openport sent cancelled; left to its second look or the operator");
            return Ok(CancelAtKcp::ReapprovalUnaccounted);
        }
        let connector = self.connector_of(&payment, tno).await?;
        let remaining = match self
            .remaining_of(connector.as_ref(), &payment, tno.to_owned())
            .await
        {
            Some(Ok(Some(remaining))) => remaining,
            None => return Ok(CancelAtKcp::NoInquiry),
            Some(Ok(None)) => return Ok(CancelAtKcp::NoSuchTrade),
            Some(Err(source)) => {
                return Err(NotificationError::Unverified {
                    tno: tno.to_owned(),
                    source,
                })
            }
        };
        if remaining >= balance {
            return Ok(CancelAtKcp::Same { remaining, balance });
        }
        let attempt = match self
            .open_cancel_attempt(
                &payment,
                tno,
                &Some(reason.clone()),
                balance - remaining,
                true,
            )
            .await
        {
            Ok(attempt) => attempt,
            // A cancel of the payment is under way (or this host's clock is off): decided again
            // after it (on KCP's re-send of a notice).
            Err(ServiceError::Refused(_) | ServiceError::ClockSkewed) => {
                return Err(NotificationError::ChangedMeanwhile(payment.imp_uid))
            }
            Err(e) => return Err(e.into()),
        };
        // Holding the only open cancel: the balance the difference was taken from must stand
        // (read holding the row, as an API cancel does: a second look recording now is seen).
        let fresh = self
            .held_payment(payment.id)
            .await?
            .filter(|p| p.cancel_amount == payment.cancel_amount && p.pg_tid == payment.pg_tid);
        let Some(fresh) = fresh else {
            self.close_attempt(attempt, "failed", "not sent: the payment changed meanwhile")
                .await?;
            return Err(NotificationError::ChangedMeanwhile(payment.imp_uid));
        };
        tracing::warn!(imp_uid = %fresh.imp_uid, %reason, remaining, balance, "KCP holds less than openport: recording a cancel openport did not make");
        let attempt_id = attempt.id;
        match self
            .resolve_cancel(connector.as_ref(), fresh, attempt)
            .await?
        {
            super::resolve::CancelOutcome::Applied(payment) => Ok(CancelAtKcp::Recorded {
                cancelled: balance - remaining,
                payment,
            }),
            _ => Ok(CancelAtKcp::NotRecorded {
                attempt_id,
                remaining,
                balance,
            }),
        }
    }

    /// A notice that KCP may have closed an account awaiting its deposit (`TX07`, or `TX05`/`TX06`
    /// of its trade: its admin, or KCP itself). A hint to look, as the others: only when KCP's
    /// inquiry holds the account closed is it recorded revoked, with the `cancelled` webhook
    /// ([`Gateway::record_closed_at_kcp`]); left `ready`, the merchant would keep showing the
    /// buyer an account the bank refuses deposits into, and the merchant_uid would stay taken.
    async fn verify_close_notice(
        &self,
        n: &Notification,
        payment: payment::Model,
        row: Option<i64>,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        let connector = self.connector_of(&payment, &n.tno).await?;
        let kcp = inquire_vbank(connector.as_ref(), &n.tno).await?;
        if !matches!(kcp, VbankState::Closed { .. }) {
            return self.settle(row, Verdict::Unchanged, now).await;
        }
        tracing::warn!(imp_uid = %payment.imp_uid, tx_cd = %n.tx_cd, "KCP notifies it closed a virtual account awaiting its deposit; recording it revoked");
        let imp_uid = payment.imp_uid.clone();
        let reason = format!("PG사 취소 통보 ({})", n.tx_cd);
        let verdict = match self
            .record_closed_at_kcp(connector.as_ref(), payment, reason)
            .await?
        {
            // A cancel of the payment is under way: decided again on KCP's re-send, after it.
            None => return Err(NotificationError::ChangedMeanwhile(imp_uid)),
            Some(super::resolve::CancelOutcome::Applied(_)) => Verdict::Applied,
            Some(_) => Verdict::Unchanged,
        };
        self.settle(row, verdict, now).await
    }

    /// The connector of `payment`'s merchant, to ask KCP about the notified trade `tno`. Shared by
    /// every notification that asks KCP, so none can skip the mode check: a merchant of the other
    /// mode is left to an instance of its mode ([`NotificationError::OtherMode`]).
    async fn connector_of(
        &self,
        payment: &payment::Model,
        tno: &str,
    ) -> Result<Arc<dyn Pg>, NotificationError> {
        let merchant = self.merchant(payment.merchant_id).await?;
        if !super::merchants::runs_in_mode(self.settings.test_mode, &merchant) {
            return Err(NotificationError::OtherMode(tno.to_owned()));
        }
        Ok(self.connectors.for_merchant(&merchant, &self.secrets)?)
    }

    /// Records a verdict that changes no payment.
    async fn settle(
        &self,
        row: Option<i64>,
        verdict: Verdict,
        now: i64,
    ) -> Result<Verdict, NotificationError> {
        if let Some(id) = row {
            notifications::set_outcome(&self.db.write, id, verdict.as_db(), now).await?;
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deposit() -> Notification {
        Notification {
            site_cd: "T0000".into(),
            tno: "20260310123456".into(),
            tx_cd: TX_DEPOSIT.into(),
            tx_tm: "20260310123456".into(),
            noti_id: "N0000000001".into(),
            op_cd: Some("00".into()),
            amount: 5000,
            total: Some(5000),
            deposited_at: None,
        }
    }

    #[test]
    fn a_notification_of_a_shape_kcp_never_sends_has_no_key() {
        assert_eq!(deposit().key().as_deref(), Some("N0000000001"));
        let odd = [
            Notification {
                tno: "9".repeat(100_000),
                ..deposit()
            },
            Notification {
                tno: "2026031012345x".into(),
                ..deposit()
            },
            Notification {
                noti_id: "n".repeat(65),
                ..deposit()
            },
            Notification {
                site_cd: "T0000 <script>".into(),
                ..deposit()
            },
            Notification {
                op_cd: Some("0".repeat(9)),
                ..deposit()
            },
        ];
        for n in odd {
            assert_eq!(n.key(), None, "{:.40?}", n.tno);
        }
    }

    fn open(paid: bool, amount: Won) -> VbankState {
        VbankState::Open {
            tno: "20260310123456".into(),
            amount,
            remaining: amount,
            paid,
            account: None,
        }
    }

    #[test]
    fn a_deposit_makes_a_ready_account_paid_only_when_kcp_holds_it_paid_for_the_whole_amount() {
        use PaymentStatus::*;
        assert_eq!(
            confirmed_change(Ready, 5000, false, &open(true, 5000)),
            Some(Paid)
        );
        assert_eq!(
            confirmed_change(Ready, 5000, false, &open(false, 5000)),
            None
        );
        assert_eq!(
            confirmed_change(Ready, 5000, false, &open(true, 4999)),
            None
        );
        assert_eq!(
            confirmed_change(Ready, 5000, false, &VbankState::NotFound),
            None
        );
        assert_eq!(confirmed_change(Paid, 5000, false, &open(true, 5000)), None);
        assert_eq!(
            confirmed_change(Cancelled, 5000, false, &open(true, 5000)),
            None
        );
    }

    #[test]
    fn a_reversal_makes_a_paid_account_ready_only_when_kcp_no_longer_holds_it_paid() {
        use PaymentStatus::*;
        assert_eq!(
            confirmed_change(Paid, 5000, true, &open(false, 5000)),
            Some(Ready)
        );
        assert_eq!(confirmed_change(Paid, 5000, true, &open(true, 5000)), None);
        let closed = VbankState::Closed {
            tno: "20260310123456".into(),
            closed_at: chrono::Utc::now(),
        };
        assert_eq!(confirmed_change(Paid, 5000, true, &closed), None);
        assert_eq!(
            confirmed_change(Ready, 5000, true, &open(false, 5000)),
            None
        );
    }

    #[test]
    fn a_recorded_notification_stands_for_a_re_send_only_when_every_field_matches() {
        let n = Notification {
            site_cd: "T0000".into(),
            tno: "20260310123456".into(),
            tx_cd: TX_DEPOSIT.into(),
            tx_tm: "20260310120000".into(),
            noti_id: "n1".into(),
            op_cd: Some("00".into()),
            amount: 5000,
            total: Some(5000),
            deposited_at: Some(1_773_111_600),
        };
        let row = kcp_notification::Model {
            id: 1,
            noti_id: "n1".into(),
            site_cd: "T0000".into(),
            tno: "20260310123456".into(),
            tx_cd: TX_DEPOSIT.into(),
            op_cd: Some("00".into()),
            amount: 5000,
            total: 5000,
            deposited_at: Some(1_773_111_600),
            received_at: 0,
            outcome: None,
            verified_at: None,
        };
        assert!(n.is_recorded_as(&row));
        let other = kcp_notification::Model {
            tno: "20260310999999".into(),
            ..row.clone()
        };
        assert!(!n.is_recorded_as(&other));
        let other_time = kcp_notification::Model {
            deposited_at: None,
            ..row
        };
        assert!(!n.is_recorded_as(&other_time));
    }

    #[test]
    fn a_total_that_is_absent_or_not_a_positive_number_is_unknown() {
        assert_eq!(Notification::total_from("5000"), Some(5000));
        assert_eq!(Notification::total_from(" 5000 "), Some(5000));
        for unknown in ["", "5,000", "abc", "0", "-5000", "5000.0"] {
            assert_eq!(Notification::total_from(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn only_a_deposit_needs_a_noti_id_and_the_others_are_keyed_by_their_common_fields() {
        let n = |tx_cd: &str, noti_id: &str| Notification {
            site_cd: "T0000".into(),
            tno: "20260310123456".into(),
            tx_cd: tx_cd.into(),
            tx_tm: "20260310120000".into(),
            noti_id: noti_id.into(),
            op_cd: None,
            amount: 0,
            total: None,
            deposited_at: None,
        };
        assert_eq!(n(TX_DEPOSIT, "n1").key().as_deref(), Some("n1"));
        assert_eq!(n(TX_DEPOSIT, "").key(), None);
        assert_eq!(
            n("TX02", "").key().as_deref(),
            Some("TX02:20260310123456:20260310120000")
        );
        assert_eq!(n("TX02", "n2").key().as_deref(), Some("n2"));
        let no_tno = Notification {
            tno: String::new(),
            ..n("TX07", "")
        };
        assert_eq!(no_tno.key(), None);
    }

    #[test]
    fn a_deposit_is_paid_at_its_notified_time_within_the_accounts_life() {
        assert_eq!(paid_at(1_000, Some(1_500), 2_000), 1_500);
        assert_eq!(
            paid_at(1_000, Some(500), 2_000),
            1_000,
            "not before issuance"
        );
        assert_eq!(
            paid_at(1_000, Some(9_000), 2_000),
            2_000,
            "not in the future"
        );
        assert_eq!(paid_at(1_000, None, 2_000), 2_000, "none notified: now");
        assert_eq!(
            Notification::deposited_at_from("20260310120000"),
            Some(1_773_111_600),
            "Korea time"
        );
        for unreadable in ["", "2026031012", "20261310120000", "abc"] {
            assert_eq!(
                Notification::deposited_at_from(unreadable),
                None,
                "{unreadable:?}"
            );
        }
    }
}
