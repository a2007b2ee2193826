//! An independent, stateful emulator of NHN KCP's server side (docs/sandbox.md).
//!
//! It speaks KCP's REST wire contract (`shared/spec/kcp.md`) and shares no code with the
//! gateway's KCP connector, so a wrong field name on either side fails a test instead of
//! cancelling out. The gateway embeds it in-process ([`Sandbox::router`]) or serves it on a
//! socket ([`serve`]).
//!
//! One module per KCP call family: `hub` (key-in card payments, dispatching to `batch` for batch
//! keys and batch payments, to `point` for Benepia points and to `vbank` for virtual accounts
//! issued without a window), `cancel` (with point re-approval and virtual-account revocation),
//! `inquiry`; `window` (trade registration, the payment window page, the post back to `Ret_URL`,
//! approval of window results), `escrow` (escrow shipping start) and `notify` (virtual-account deposits
//! and KCP's common notifications). `state` keeps the books in a file across restarts when asked to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use chrono::{DateTime, Utc};

mod auth;
mod batch;
mod ca;
mod cancel;
pub mod clock;
pub mod codes;
mod control;
mod escrow;
pub mod faults;
mod hub;
mod inquiry;
pub mod keyfile;
pub mod ledger;
pub mod notify;
pub mod pc_window;
mod pepper;
mod point;
mod router;
mod server;
mod state;
pub mod test_cards;
pub mod test_points;
pub mod test_refund_accounts;
mod vbank;
pub mod window;
mod wire;

pub use batch::{BatchKey, BatchKeyState};
pub use ca::IssuedCertificate;
pub use clock::ManualClock;
pub use escrow::EscrowShipment;
pub use faults::{Fault, FaultRule};
pub use ledger::{CancelRecord, CardSummary, LedgerEntry, PointSummary, TransactionState};
pub use notify::{DepositError, NotificationAttempt, NotificationRecord};
pub use point::PointAccount;
pub use server::ServerLimits;
pub use state::FORMAT_VERSION as STATE_FORMAT_VERSION;
pub use window::WindowsHeld;

/// The KCP paths the sandbox serves (spec/kcp.md §1), relative to KCP's host.
pub mod paths {
    /// Hub calls without a payment window: key-in card payments (spec §2.7), batch key issuance
    /// and deletion and batch payments (§2.5, §2.6), Benepia points (§2.8), virtual accounts
    /// (`pay_method` VCNT, docs/sandbox.md §2.3).
    pub const HUB_PAYMENT: &str = "/gw/hub/v1/payment";
    /// Cancel / modify (spec §2.9), point re-approval (§2.8).
    pub const CANCEL: &str = "/gw/mod/v1/cancel";
    /// Transaction inquiry, KCP's spelling (spec §2.10).
    pub const INQUIRY: &str = "/std/inquery";
    /// Approval with window data and batch keys from the window (spec §2.4, §2.5).
    pub const ENC_PAYMENT: &str = "/gw/enc/v1/payment";
    /// Trade registration, newer endpoint with `kcp_cert_info` (spec §2.1).
    pub const TRADE_REGISTER: &str = "/std/tradeReg/register";
    /// Trade registration, older mobile endpoint (spec §2.1).
    pub const MOBILE_TRADE_REGISTER: &str = "/trade/register.do";
    /// The payment window (`PayUrl`, spec §1.2).
    pub const PAY_WINDOW: &str = "/pay/mobileGW.kcp";
    /// Where the window's form is submitted (the buyer's click; this sandbox's own page, which
    /// posts the result back to `Ret_URL`).
    pub const PAY_SUBMIT: &str = "/pay/submit";
    /// KCP's PC window script (spec §1, §1.1), loaded by the merchant's page.
    pub const PC_SCRIPT: &str = "/plugin/kcp_spay_hub.js";
    /// The PC window the script opens in its layer's frame, posted the merchant form's fields.
    pub const PC_WINDOW: &str = "/pay/pcWindow.kcp";

    /// Every path above: the ones a fault rule can name.
    pub const ALL: [&str; 10] = [
        HUB_PAYMENT,
        CANCEL,
        INQUIRY,
        ENC_PAYMENT,
        TRADE_REGISTER,
        MOBILE_TRADE_REGISTER,
        PAY_WINDOW,
        PAY_SUBMIT,
        PC_SCRIPT,
        PC_WINDOW,
    ];
}

/// How a sandbox behaves.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The sandbox's clock: approval/cancel times, expiry checks, same-day rules.
    pub now: clock::Now,
    /// KCP test mode, where KB cards are refused (spec §4, seed 001).
    pub test_mode: bool,
    /// Where the ledger, batch keys, Benepia balances, virtual accounts and deposits are kept
    /// across restarts (docs/sandbox.md §7): read by [`Sandbox::new`] if the file exists, written
    /// after changes. `None`: in memory only, nothing is written.
    pub state_file: Option<PathBuf>,
    /// Whether a second approval for an order (`site_cd`, `ordr_idxx`) whose approval still stands
    /// is refused with `9520`, as the sandbox always did (default `true`). Nothing in spec/kcp.md
    /// says KCP refuses it, so with `false` the sandbox approves it again, as KCP may: a gateway
    /// that re-sends a charge whose answer it lost then charges twice in a test too, instead of
    /// being saved by the sandbox (docs/sandbox.md §5.1). [`Sandbox::set_refuse_duplicate_orders`]
    /// changes it on a running sandbox.
    pub refuse_duplicate_orders: bool,
    /// Whether a point re-approval (`STRA`) leaves the original trade approved (default `false`).
    /// Seed 003 does not say what STRA does to the trade it names; the sandbox, like the gateway,
    /// reads it as "cancel the live trade and approve `mod_mny` under a new tno"
    /// (`point::reapprove`, docs/kcp.md §8.3). With `true` it follows another reading just as
    /// plausible: `mod_mny` is approved under a new tno and the original stays approved, so the
    /// member has paid both. A gateway that records the partial cancel without checking the
    /// original then passes no test it should fail (docs/sandbox.md §2.2).
    /// [`Sandbox::set_stra_keeps_original`] changes it on a running sandbox.
    pub stra_keeps_original: bool,
    /// Whether a point re-approval (`STRA`) re-approves the rest in place (default `false`): the
    /// answer names the SAME tno, whose balance drops to `mod_mny` (state `STPC`), the difference
    /// going back to the account. Seed 003's examples answer STRA with the payment's own tno
    /// (docs/kcp.md §8.3), a reading KCP has not ruled out. Takes precedence over
    /// [`Self::stra_keeps_original`] when both are on. [`Sandbox::set_stra_same_tno`] changes it
    /// on a running sandbox (docs/sandbox.md §2.2).
    pub stra_same_tno: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            now: Arc::new(Utc::now),
            test_mode: true,
            state_file: None,
            refuse_duplicate_orders: true,
            stra_keeps_original: false,
            stra_same_tno: false,
        }
    }
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("now", &(self.now)())
            .field("test_mode", &self.test_mode)
            .field("state_file", &self.state_file)
            .field("refuse_duplicate_orders", &self.refuse_duplicate_orders)
            .field("stra_keeps_original", &self.stra_keeps_original)
            .field("stra_same_tno", &self.stra_same_tno)
            .finish()
    }
}

/// A KCP sandbox. Cloning shares the same ledger, faults and CA.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

/// State behind every handler.
pub(crate) struct Shared {
    config: SandboxConfig,
    /// Where the kept books are written, when [`SandboxConfig::state_file`] is set.
    state_file: Option<state::StateFile>,
    /// Marked by every mutable borrow of a kept book; wakes the writer.
    changes: Arc<state::Changes>,
    /// Issues merchant certificates and checks `kcp_cert_info`.
    ca: ca::CertificateAuthority,
    /// Approvals and cancels, cards and points. Lock order: batch keys, then ledger, then points,
    /// then windows, then notifications.
    ledger: Mutex<ledger::Ledger>,
    /// Batch keys issued, by digest.
    batch_keys: Mutex<batch::BatchKeyBook>,
    /// Benepia balances, seeded from [`test_points`].
    points: Mutex<point::PointBook>,
    /// Armed fault rules, consumed as requests match them.
    faults: Mutex<faults::FaultBook>,
    /// [`SandboxConfig::refuse_duplicate_orders`], switchable while the sandbox serves.
    refuse_duplicate_orders: AtomicBool,
    /// [`SandboxConfig::stra_keeps_original`], switchable while the sandbox serves.
    stra_keeps_original: AtomicBool,
    /// [`SandboxConfig::stra_same_tno`], switchable while the sandbox serves.
    stra_same_tno: AtomicBool,
    /// Trades registered for the payment window and what buyers entered in it; issued virtual
    /// accounts and escrow approvals.
    windows: Mutex<window::WindowBook>,
    /// Notification URLs, deposits and every notification sent.
    notify: Mutex<notify::NotifyBook>,
}

impl Shared {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.config.now)()
    }

    pub(crate) fn ledger(&self) -> state::Tracked<'_, ledger::Ledger> {
        state::Tracked::lock(&self.ledger, &self.changes)
    }

    pub(crate) fn batch_keys(&self) -> state::Tracked<'_, batch::BatchKeyBook> {
        state::Tracked::lock(&self.batch_keys, &self.changes)
    }

    pub(crate) fn points(&self) -> state::Tracked<'_, point::PointBook> {
        state::Tracked::lock(&self.points, &self.changes)
    }

    pub(crate) fn notify(&self) -> state::Tracked<'_, notify::NotifyBook> {
        state::Tracked::lock(&self.notify, &self.changes)
    }

    pub(crate) fn windows(&self) -> state::Tracked<'_, window::WindowBook> {
        state::Tracked::lock(&self.windows, &self.changes)
    }

    /// Whether an order whose approval stands is refused a second one (`9520`).
    pub(crate) fn refuses_duplicate_orders(&self) -> bool {
        self.refuse_duplicate_orders.load(Ordering::Relaxed)
    }

    pub(crate) fn set_refuse_duplicate_orders(&self, refuse: bool) {
        self.refuse_duplicate_orders
            .store(refuse, Ordering::Relaxed);
    }

    /// Whether a point re-approval (`STRA`) leaves the original trade approved.
    pub(crate) fn stra_keeps_original(&self) -> bool {
        self.stra_keeps_original.load(Ordering::Relaxed)
    }

    pub(crate) fn set_stra_keeps_original(&self, keeps: bool) {
        self.stra_keeps_original.store(keeps, Ordering::Relaxed);
    }

    /// Whether a point re-approval (`STRA`) re-approves the rest in place, under the same tno.
    pub(crate) fn stra_same_tno(&self) -> bool {
        self.stra_same_tno.load(Ordering::Relaxed)
    }

    pub(crate) fn set_stra_same_tno(&self, same: bool) {
        self.stra_same_tno.store(same, Ordering::Relaxed);
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, faults::FaultBook> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Shared {
    /// A sandbox dropped with changes not written yet writes them, and its writer stops.
    fn drop(&mut self) {
        if self.changes.is_dirty() {
            if let Err(error) = state::persist(self) {
                tracing::error!("{error:#}");
            }
        }
        self.changes.close();
    }
}

impl Sandbox {
    /// Builds a sandbox around the committed sandbox CA (`sandbox/ca/*.pem`). With a
    /// [`SandboxConfig::state_file`], its books are read from that file, or, when there is no
    /// file yet, the empty books are written to it at once (so that a path that cannot be
    /// written fails here, not after the first payment). A file that cannot be read, or that is
    /// not a state file of [`STATE_FORMAT_VERSION`] or version 1, or whose batch keys need a key
    /// file that is missing (`<stem>.key` beside it, made with it), is an error naming it.
    pub fn new(config: SandboxConfig) -> anyhow::Result<Self> {
        let ca = ca::CertificateAuthority::load()?;
        let (books, loaded) = match &config.state_file {
            Some(path) => state::load(path)?,
            None => (state::Restored::default(), false),
        };
        let state_file = config.state_file.clone().map(state::StateFile::new);
        let refuse_duplicate_orders = config.refuse_duplicate_orders;
        let stra_keeps_original = config.stra_keeps_original;
        let stra_same_tno = config.stra_same_tno;
        let shared = Arc::new(Shared {
            changes: Arc::new(state::Changes::new(state_file.is_some())),
            state_file,
            config,
            ca,
            ledger: Mutex::new(books.ledger),
            batch_keys: Mutex::new(books.batch_keys),
            points: Mutex::new(books.points),
            faults: Mutex::default(),
            refuse_duplicate_orders: AtomicBool::new(refuse_duplicate_orders),
            stra_keeps_original: AtomicBool::new(stra_keeps_original),
            stra_same_tno: AtomicBool::new(stra_same_tno),
            windows: Mutex::new(books.windows),
            notify: Mutex::new(books.notify),
        });
        if let Some(file) = &shared.state_file {
            if loaded {
                tracing::info!(path = %file.path.display(), "kcp sandbox state read");
            } else {
                state::persist(&shared)?;
                tracing::info!(path = %file.path.display(), "kcp sandbox state file created");
            }
            state::spawn_writer(&shared).context("kcp sandbox state writer thread")?;
        }
        Ok(Self { shared })
    }

    /// The file the books are kept in, if any.
    pub fn state_file(&self) -> Option<&Path> {
        self.shared.config.state_file.as_deref()
    }

    /// Switches [`SandboxConfig::refuse_duplicate_orders`] from now on: `false` approves an order
    /// again while its first approval stands, as KCP may (nothing in spec/kcp.md says it refuses),
    /// so that a test proves "charged once" by the gateway, not by the sandbox.
    pub fn set_refuse_duplicate_orders(&self, refuse: bool) {
        self.shared.set_refuse_duplicate_orders(refuse);
    }

    /// Whether a second approval of an order whose approval stands is refused (`9520`) now.
    pub fn refuses_duplicate_orders(&self) -> bool {
        self.shared.refuses_duplicate_orders()
    }

    /// Switches [`SandboxConfig::stra_keeps_original`] from now on: `true` makes a point
    /// re-approval (`STRA`) approve `mod_mny` under a new tno and leave the original trade
    /// approved, a reading of seed 003 KCP has not ruled out, so that a test proves the gateway
    /// notices it.
    pub fn set_stra_keeps_original(&self, keeps: bool) {
        self.shared.set_stra_keeps_original(keeps);
    }

    /// Whether a point re-approval (`STRA`) leaves the original trade approved now.
    pub fn stra_keeps_original(&self) -> bool {
        self.shared.stra_keeps_original()
    }

    /// Switches [`SandboxConfig::stra_same_tno`] from now on: `true` makes a point re-approval
    /// (`STRA`) re-approve the rest in place, answering the trade's own tno with its balance
    /// reduced to `mod_mny`, as seed 003's examples can be read, so that a test proves the
    /// gateway records that as the partial cancel it is.
    pub fn set_stra_same_tno(&self, same: bool) {
        self.shared.set_stra_same_tno(same);
    }

    /// Whether a point re-approval (`STRA`) re-approves the rest in place now.
    pub fn stra_same_tno(&self) -> bool {
        self.shared.stra_same_tno()
    }

    /// Writes the books to the state file now (a no-op without one, or when nothing changed since
    /// the last write): what a graceful shutdown calls, so that a clean stop loses nothing even
    /// within the writer's debounce. Blocking file I/O with an fsync.
    pub fn persist_now(&self) -> anyhow::Result<()> {
        state::persist(&self.shared)
    }

    /// KCP's paths plus the `/_sandbox` control API.
    pub fn router(&self) -> axum::Router {
        router::build(self.shared.clone())
    }

    /// Issues a merchant certificate (CN = `site_cd`) and its encrypted PKCS#8 key.
    /// Generating the RSA key takes a moment; call it from a blocking context in async code.
    pub fn issue_certificate(
        &self,
        site_cd: &str,
        passphrase: &str,
    ) -> anyhow::Result<IssuedCertificate> {
        self.shared.ca.issue(site_cd, passphrase)
    }

    /// Whether `certificate` (PEM, or KCP's one-line form) was issued by the sandbox's CA, whose
    /// key is public test material: a pair it issued guards nothing. Any other certificate may
    /// be a KCP site's own (openport's test mode then keeps its key from the public demo
    /// merchant, app/first_merchant.rs).
    pub fn issued_by_sandbox_ca(certificate: &str) -> bool {
        let Ok(ca) = ca::CertificateAuthority::load() else {
            return false;
        };
        let base64: String = certificate
            .trim()
            .trim_start_matches("-----BEGIN CERTIFICATE-----")
            .trim_end_matches("-----END CERTIFICATE-----")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        use base64::Engine;
        use der::Decode;
        base64::engine::general_purpose::STANDARD
            .decode(base64)
            .ok()
            .and_then(|der| x509_cert::Certificate::from_der(&der).ok())
            .is_some_and(|cert| ca.verify_issued(&cert).is_ok())
    }

    /// Arms a fault rule; rules are tried in the order they were added.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults().add(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Waits until a request matched by a [`Fault::HoldAnswer`] on `gate` has been processed and
    /// its answer is held, or one matched by a [`Fault::HoldRequest`] is held unprocessed: at once
    /// if one already was (since the faults were last cleared) that no earlier call returned for.
    ///
    /// # Panics
    ///
    /// When nothing is held on `gate` within [`faults::UNTIL_HELD_AT_MOST`] (the request never came, or
    /// another rule matched it), or the faults are cleared meanwhile: a test whose request never
    /// reached its gate fails naming the gate, instead of hanging until something kills it.
    pub async fn until_held(&self, gate: &str) {
        let held = self.shared.faults().gate(gate);
        match tokio::time::timeout(faults::UNTIL_HELD_AT_MOST, held.next_hold()).await {
            Ok(Ok(())) => {}
            Ok(Err(faults::GateCleared)) => panic!(
                "until_held({gate:?}): the faults were cleared (clear_faults, DELETE \
                 /_sandbox/faults) before a request was held on the gate"
            ),
            Err(_) => panic!(
                "until_held({gate:?}): no request was held on the gate within {}s (did its \
                 hold_answer/hold_request rule match? `armed_faults` lists the rules not used up)",
                faults::UNTIL_HELD_AT_MOST.as_secs()
            ),
        }
    }

    /// Lets the answer (or request) held on `gate` go (or the next one to be held, if none is
    /// yet).
    pub fn open_gate(&self, gate: &str) {
        self.shared.faults().gate(gate).open.notify_one();
    }

    /// The rules still armed (a rule disappears once used up): how a test knows that a request
    /// has reached the sandbox.
    pub fn armed_faults(&self) -> Vec<FaultRule> {
        self.shared.faults().rules()
    }

    /// Where KCP's common notifications for `site_cd` go (`*` = any site without its own).
    pub fn set_notify_url(&self, site_cd: &str, url: &str) {
        notify::set_url(&self.shared, site_cd, url);
    }

    /// A deposit on an issued virtual account (`op_cd` "13" reverses one): recorded, then
    /// notified (`TX00`) in the background until the merchant acknowledges it.
    pub fn deposit(
        &self,
        tno: &str,
        amount: i64,
        op_cd: &str,
    ) -> Result<notify::NotificationRecord, notify::DepositError> {
        let record = notify::deposit(&self.shared, tno, amount, op_cd)?;
        notify::deliver(self.shared.clone(), record.clone());
        Ok(record)
    }

    /// A full cancel made outside the merchant's API calls, as an operator can in KCP's admin
    /// console: the remaining balance is cancelled (`STSC`). False when there is no such
    /// transaction or nothing is left to cancel. Nothing is notified (a notice that never
    /// reached the merchant); [`Sandbox::cancel_in_admin_notified`] sends KCP's.
    pub fn cancel_in_admin(&self, tno: &str) -> bool {
        self.cancel_in_admin_partly(tno, None)
    }

    /// [`Sandbox::cancel_in_admin`] of `amount` only (`STPC`; None or the whole balance: `STSC`).
    /// False when there is no such transaction or less than `amount` is left.
    pub fn cancel_in_admin_partly(&self, tno: &str, amount: Option<i64>) -> bool {
        let canc_time = clock::kcp_time(self.shared.now());
        let mut ledger = self.shared.ledger();
        let Some(entry) = ledger.get_mut(tno) else {
            return false;
        };
        let amount = amount.unwrap_or(entry.balance);
        if amount <= 0 || amount > entry.balance {
            return false;
        }
        let mod_type = if amount == entry.balance {
            "STSC"
        } else {
            "STPC"
        };
        // Points have no partial cancel, in the admin either (spec/kcp.md §2.8).
        if entry.point.is_some() && mod_type != "STSC" {
            return false;
        }
        entry.record_cancel(mod_type, amount, canc_time, Some("관리자 취소".to_owned()));
        // As an API STSC does (cancel.rs): the member has the points back.
        if let Some(point) = &entry.point {
            self.shared.points().refund(&point.account_id, amount);
        }
        true
    }

    /// [`Sandbox::cancel_in_admin`], then KCP's own notice of it to the site's notification URL
    /// (spec §2.12), sent and re-sent as deposits are: `TX07` for a virtual account closed before it
    /// was paid, `TX01` for a paid one refunded, `TX06` for anything else. The notice, or None when
    /// nothing was cancelled, or the site has no notification URL (the cancel stands, unnotified).
    pub fn cancel_in_admin_notified(&self, tno: &str) -> Option<notify::NotificationRecord> {
        let (site_cd, order_no, tx_cd) = {
            let ledger = self.shared.ledger();
            let entry = ledger.get(tno)?;
            let tx_cd = match (entry.pay_method.as_str(), entry.state) {
                ("PAVC", TransactionState::Issued) => "TX07",
                ("PAVC", _) => "TX01",
                _ => "TX06",
            };
            (entry.site_cd.clone(), entry.order_no.clone(), tx_cd)
        };
        if !self.cancel_in_admin(tno) {
            return None;
        }
        let record = notify::notice(&self.shared, &site_cd, tno, &order_no, tx_cd).ok()?;
        notify::deliver(self.shared.clone(), record.clone());
        Some(record)
    }

    /// Re-sends every notification not acknowledged yet, now; returns how many were acknowledged.
    pub async fn flush_notifications(&self) -> usize {
        notify::flush(&self.shared).await
    }

    pub fn notifications(&self) -> Vec<notify::NotificationRecord> {
        notify::log(&self.shared)
    }

    /// A snapshot of every approval, in approval order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.shared.ledger().snapshot()
    }

    /// Every batch key issued, in issuance order: state and masked card, never the key.
    pub fn batch_keys(&self) -> Vec<BatchKey> {
        self.shared.batch_keys().snapshot()
    }

    /// The batch key `batch_key` (one a test holds) as the sandbox shows it, if it issued it.
    pub fn batch_key(&self, batch_key: &str) -> Option<BatchKey> {
        self.shared.batch_keys().shown(batch_key)
    }

    /// The escrow shipping start (`STE1`) KCP holds for `tno`, if one was registered.
    pub fn escrow_shipment(&self, tno: &str) -> Option<EscrowShipment> {
        escrow::shipment(&self.shared, tno)
    }

    /// The Benepia balance of account `pt_idno`, or `None` for an unknown account.
    pub fn point_balance(&self, pt_idno: &str) -> Option<i64> {
        self.shared.points().balance(pt_idno)
    }
}

/// Serves the sandbox on `listener` until the task is dropped.
pub async fn serve(sandbox: Sandbox, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(sandbox, listener, std::future::pending()).await
}

/// Serves the sandbox on `listener` until `stop` completes, then lets requests in flight finish.
/// First it resumes the background sending of notifications the merchant has not acknowledged
/// (a sandbox restored from its state file after a restart), as KCP keeps re-sending across its
/// own restarts: a deposit notification lost while the gateway was down is not left to a flush.
/// A client too slow with its headers or its body is cut off, and at most 1,024 connections are
/// open at once ([`ServerLimits::default`]).
pub async fn serve_until(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_until_with(sandbox, listener, stop, ServerLimits::default()).await
}

/// [`serve_until`] with the given limits (the gateway's embedded sandbox takes its own).
pub async fn serve_until_with(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    notify::resume(&sandbox.shared);
    server::serve(listener, sandbox.router(), limits, stop).await;
    Ok(())
}
