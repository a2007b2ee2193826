//! KCP's standard payment window (spec/kcp.md §1.2, §2.1–2.4): trade registration, the window
//! page at `PayUrl` (usable by a person, drivable by a test through stable element ids), the
//! post back to the merchant's `Ret_URL`, and the approval that redeems the window's result once.
//!
//! Element ids of the window page: `#card_no`, `#card_expiry` (YYMM), `#quota`, `#bank`,
//! `#cash_receipt`, `#carrier`, `#mobile_no`, `#pin`, `#pay`, `#cancel` (docs/sandbox.md).
//!
//! `enc_data` is an opaque handle to what the buyer entered, kept in memory here; it never
//! carries the card number. What the window page was opened with (buyer, `quotaopt`, `van_code`,
//! `ipgm_date`, …) is kept server-side with the registration, so a tampered hidden input changes
//! nothing.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};

use crate::clock::kcp_time;
use crate::hub::{
    approve, card_summary, check_card_number, check_expiry, issuer_decides, CardOrder,
};
use crate::ledger::{self, TransactionState};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::{auth, codes, test_cards, Shared};

/// `tran_cd` of a payment window result (spec §2.3).
pub const TRAN_CD_PAYMENT: &str = "00100000";
/// `tran_cd` of a batch (billing key) window result (spec §2.3, §2.5).
pub const TRAN_CD_BATCH: &str = "00300001";

/// A documented sandbox code, kept here for callers of earlier versions: see [`codes`].
pub const NOT_ESCROW: &str = codes::NOT_ESCROW;
pub const ESCROW_ALREADY_SHIPPED: &str = codes::ESCROW_ALREADY_SHIPPED;
pub const WINDOW_REPLAYED: &str = codes::WINDOW_REPLAYED;
pub const WINDOW_UNKNOWN: &str = codes::WINDOW_UNKNOWN;

/// Registration codes of seed 000 (`Code`).
const MISSING: &str = "0001";
const BAD: &str = "0002";
const AUTH: &str = "0003";

/// Installments only from 50,000 KRW (spec §4).
const INSTALLMENT_MINIMUM: i64 = 50_000;

/// Banks offered by the bank-transfer and virtual-account windows.
const BANKS: &[(&str, &str)] = &[
    ("BK04", "국민은행"),
    ("BK20", "우리은행"),
    ("BK88", "신한은행"),
    ("BK81", "하나은행"),
    ("BK11", "농협"),
    ("BK03", "기업은행"),
    ("BK07", "수협"),
];

/// What the bank-transfer and virtual-account windows offer for a cash receipt: none, or KCP's
/// `cash_tr_code` of the kind asked for (`0` 소득공제용, `1` 지출증빙용).
const CASH_RECEIPTS: &[(&str, &str)] =
    &[("", "신청 안 함"), ("0", "소득공제용"), ("1", "지출증빙용")];

/// `cash_yn` and `cash_tr_code` of the window's answer (spec §1.1, §2.3): `Y` and the kind when
/// the buyer asked for a cash receipt in a window that offers one (bank transfer, virtual
/// account), else `N` and nothing.
fn cash_receipt_answer(pay_method: &str, asked: &str) -> (&'static str, String) {
    let offered = matches!(pay_method, "BANK" | "VCNT");
    match CASH_RECEIPTS.iter().find(|(code, _)| *code == asked) {
        Some((code, _)) if offered && !code.is_empty() => ("Y", (*code).to_string()),
        _ => ("N", String::new()),
    }
}

/// The window's optional buyer fields and their limits in bytes (spec §2.2, §6).
const BUYER_FIELDS: [(&str, usize); 4] = [
    ("buyr_name", 30),
    ("buyr_tel1", 20),
    ("buyr_tel2", 20),
    ("buyr_mail", 50),
];

/// An escrow window's receiver fields (spec §2.11) and their limits in bytes. *Assumption*: the
/// spec gives none; the receiver's name, phones and mail take the buyer's (`BUYER_FIELDS`), the
/// postcode 10, each address line 100 (docs/sandbox.md §2.1).
const RECEIVER_FIELDS: [(&str, usize); 7] = [
    ("rcvr_name", 30),
    ("rcvr_tel1", 20),
    ("rcvr_tel2", 20),
    ("rcvr_mail", 50),
    ("rcvr_zipx", 10),
    ("rcvr_add1", 100),
    ("rcvr_add2", 100),
];

/// Separates the items of an escrow window's `good_info` (KCP's samples: ASCII RS, `chr(30)`).
const GOOD_INFO_ITEMS: char = '\u{1e}';

/// The buyer's name when the merchant sent none.
pub(crate) const BUYER: &str = "구매자";

/// Carriers of the phone window (`commid`).
const CARRIERS: &[(&str, &str)] = &[("SKT", "SKT"), ("KTF", "KT"), ("LGT", "LG U+")];

fn bank_name(code: &str) -> &'static str {
    known_bank(code).unwrap_or("국민은행")
}

/// The name of a bank the sandbox offers (`BK04` → 국민은행), or `None` for any other code.
pub(crate) fn known_bank(code: &str) -> Option<&'static str> {
    BANKS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// What the window page was opened with (spec §2.2), kept server-side.
#[derive(Debug, Clone, Default)]
struct Opened {
    buyr_name: String,
    buyr_tel1: String,
    buyr_tel2: String,
    buyr_mail: String,
    params: [String; 3],
    /// Largest installment count offered (0 = lump sum only).
    quota_max: u8,
    van_code: String,
    ipgm_date: String,
    group_id: String,
    return_card_mask: bool,
    pay_mod: String,
    good_info: String,
    /// `used_card`: the issuer codes the card window offers (empty: every card).
    used_cards: Vec<String>,
}

/// A trade registered for a window.
#[derive(Debug, Clone)]
pub(crate) struct Trade {
    site_cd: String,
    order_no: String,
    amount: i64,
    good_name: String,
    pay_method: String,
    ret_url: String,
    escrow: bool,
    trace_no: String,
    /// A PC window's trade (`pc_window`, spec §1.1): the origin of the page that loaded KCP's PC
    /// script, where the result is handed back instead of posted to a `Ret_URL`.
    pub(crate) pc_origin: Option<String>,
    opened: Option<Opened>,
    /// The window posted its result (paid, declined or cancelled) to `Ret_URL`: it is closed.
    done: bool,
    registered_at: DateTime<Utc>,
}

/// What the buyer entered, redeemable once at `gw/enc/v1/payment`. Never the PIN of a gift
/// certificate or point card; the card number only to mask it and issue a batch key, and only
/// until the result is redeemed (or dropped with its window, [`WINDOW_KEPT`]): in the default run
/// the sandbox shares the gateway's process, whose memory must not collect card numbers.
#[derive(Clone)]
pub(crate) struct WindowResult {
    approval_key: String,
    /// The `enc_info` posted to `Ret_URL` with this result's `enc_data`: KCP's key information for
    /// that `enc_data` (spec §2.3, one opaque pair), so an approval must bring this one back.
    enc_info: String,
    card_no: Option<String>,
    quota: String,
    bank: String,
    carrier: String,
    mobile_no: String,
    redeemed: bool,
    made_at: DateTime<Utc>,
}

/// How long a registered trade and its window's result are kept: long past any buyer's window
/// (and the replay refusal of a redeemed result), short enough that registrations, which anyone
/// can make with a merchant's public code through the gateway, do not pile up in memory.
pub(crate) const WINDOW_KEPT: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// An issued virtual account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VirtualAccount {
    pub account: String,
    pub bank_code: String,
    /// Who is expected to deposit (the buyer): the notifications' `ipgm_name` / `remitter`.
    pub remitter: String,
    /// The account holder shown to the buyer (`depositor`).
    pub depositor: String,
    /// The answer's `va_name`: who is expected to pay in (입금자명), the buyer for a window account
    /// and the request's `va_name` for a window-less one; the same as `remitter`.
    pub va_name: String,
    /// Deposit deadline, `yyyyMMddHHmmss` KST (`va_date`).
    pub va_date: String,
}

/// The account holder KCP shows when the merchant names none (spec §2.4's real answer).
pub(crate) const DEFAULT_DEPOSITOR: &str = "한국사이버결제";

#[derive(Default)]
pub(crate) struct WindowBook {
    /// approvalKey → trade.
    trades: HashMap<String, Trade>,
    /// enc_data → what was entered.
    results: HashMap<String, WindowResult>,
    /// Escrow approvals by tno, with the shipping start KCP holds once registered (`escrow`).
    pub(crate) escrow: HashMap<String, Option<crate::escrow::EscrowShipment>>,
    /// Issued virtual accounts by tno.
    accounts: HashMap<String, VirtualAccount>,
}

/// What of the window book outlives a restart (docs/sandbox.md §7): issued virtual accounts and
/// escrow approvals with their shipping start. Registered trades and window results not redeemed
/// yet are windows in progress, not kept. Ordered maps, so that an unchanged book writes the same
/// bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeptWindows {
    pub(crate) virtual_accounts: BTreeMap<String, VirtualAccount>,
    pub(crate) escrow: BTreeMap<String, Option<crate::escrow::EscrowShipment>>,
}

impl WindowBook {
    /// Drops the trades registered and the results made before `cutoff` ([`WINDOW_KEPT`]).
    fn forget_before(&mut self, cutoff: DateTime<Utc>) {
        self.trades.retain(|_, t| t.registered_at >= cutoff);
        self.results.retain(|_, r| r.made_at >= cutoff);
    }

    pub(crate) fn kept(&self) -> KeptWindows {
        KeptWindows {
            virtual_accounts: self
                .accounts
                .iter()
                .map(|(tno, account)| (tno.clone(), account.clone()))
                .collect(),
            escrow: self
                .escrow
                .iter()
                .map(|(tno, shipment)| (tno.clone(), shipment.clone()))
                .collect(),
        }
    }

    /// A book holding a state file's accounts and escrow approvals, no window in progress.
    pub(crate) fn restore(kept: KeptWindows) -> Self {
        Self {
            accounts: kept.virtual_accounts.into_iter().collect(),
            escrow: kept.escrow.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// The issued virtual account of `tno`.
pub(crate) fn vbank_account(s: &Shared, tno: &str) -> Option<VirtualAccount> {
    s.windows().accounts.get(tno).cloned()
}

/// Opens a virtual account for `tno` (window approval or window-less issuance) and returns it,
/// with a fresh `T`-prefixed 14-character number like KCP's test accounts (spec §2.4).
pub(crate) fn open_vbank_account(
    s: &Shared,
    tno: &str,
    bank_code: &str,
    remitter: &str,
    depositor: &str,
    va_name: &str,
    va_date: &str,
) -> VirtualAccount {
    let account = VirtualAccount {
        account: format!("T{:013}", rand::random::<u64>() % 10_000_000_000_000),
        bank_code: bank_code.to_owned(),
        remitter: remitter.to_owned(),
        depositor: depositor.to_owned(),
        va_name: va_name.to_owned(),
        va_date: va_date.to_owned(),
    };
    s.windows().accounts.insert(tno.to_owned(), account.clone());
    account
}

/// The virtual-account fields of an answer (spec §2.4: `bankcode`/`bankname` without the
/// underscore), for issuance and inquiry alike.
pub(crate) fn set_vbank_fields(reply: &mut Reply, account: &VirtualAccount) {
    reply
        .set("bankcode", account.bank_code.as_str())
        .set("bankname", bank_name(&account.bank_code))
        .set("account", account.account.as_str())
        .set("depositor", account.depositor.as_str())
        .set("va_name", account.va_name.as_str())
        .set("va_date", account.va_date.as_str());
}

fn reg_error(code: &str, msg: &str) -> Response {
    Json(serde_json::json!({"Code": code, "Message": msg})).into_response()
}

pub(crate) fn form_fields(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// `POST /std/tradeReg/register` (JSON, certificate checked).
pub(crate) async fn register_std(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&body) {
        Ok(f) => f,
        Err(_) => return reg_error(BAD, "요청 전문 형식 오류"),
    };
    let Ok(site_cd) = fields.site_cd() else {
        return match fields.optional("site_cd") {
            None => reg_error(MISSING, "필수 파라미터 누락: site_cd"),
            Some(_) => reg_error(BAD, "site_cd 형식 오류"),
        };
    };
    if fields.optional("kcp_cert_info").is_none() {
        return reg_error(MISSING, "필수 파라미터 누락: kcp_cert_info");
    }
    if auth::authenticate(&s.ca, &fields, site_cd).is_err() {
        return reg_error(AUTH, "인증 실패");
    }
    let get = |k: &str| fields.optional(k).map(str::to_string);
    register(&s, &headers, get)
}

/// `POST /trade/register.do` (older mobile endpoint: JSON or form, no certificate).
pub(crate) async fn register_mobile(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let map: HashMap<String, String> = if body.trim_ascii_start().starts_with(b"{") {
        match Fields::parse(&body) {
            Ok(f) => f.into_map(),
            Err(_) => return reg_error(BAD, "요청 전문 형식 오류"),
        }
    } else {
        form_fields(&body)
    };
    register(&s, &headers, |k| {
        map.get(k).cloned().filter(|v| !v.is_empty())
    })
}

fn register(s: &Shared, headers: &HeaderMap, get: impl Fn(&str) -> Option<String>) -> Response {
    let mut missing = [
        "site_cd",
        "ordr_idxx",
        "good_mny",
        "good_name",
        "pay_method",
        "Ret_URL",
    ]
    .into_iter()
    .filter(|k| get(k).is_none());
    if let Some(k) = missing.next() {
        return reg_error(MISSING, &format!("필수 파라미터 누락: {k}"));
    }
    let need = |k: &str| get(k).unwrap_or_default();
    let (site_cd, order_no, good_mny, good_name, pay_method, ret_url) = (
        need("site_cd"),
        need("ordr_idxx"),
        need("good_mny"),
        need("good_name"),
        need("pay_method"),
        need("Ret_URL"),
    );
    let bad = |what: &str| reg_error(BAD, &format!("파라미터 오류: {what}"));
    if !wire::is_site_cd(&site_cd) {
        return bad("site_cd");
    }
    if !wire::is_order_no(&order_no) {
        return bad("ordr_idxx");
    }
    if !wire::is_digits(&good_mny) || good_mny.len() > 12 {
        return bad("good_mny");
    }
    let amount: i64 = good_mny.parse().unwrap_or(0);
    // Length in bytes and KCP's forbidden characters (spec §6), as the hub checks it.
    if wire::check_text("good_name", &good_name, 100).is_err() {
        return bad("good_name");
    }
    if !matches!(
        pay_method.as_str(),
        "CARD" | "BANK" | "VCNT" | "MOBX" | "TPNT" | "GIFT" | "AUTH"
    ) {
        return bad("pay_method");
    }
    // A billing-key window may register 0 won: nothing is charged.
    if amount == 0 && pay_method != "AUTH" {
        return bad("good_mny");
    }
    if !(ret_url.starts_with("http://") || ret_url.starts_with("https://")) {
        return bad("Ret_URL");
    }
    let escrow = match get("escw_used").as_deref() {
        None | Some("N") => false,
        Some("Y") => true,
        Some(_) => return bad("escw_used"),
    };
    if escrow && !escrow_takes(&pay_method) {
        return bad(&format!("escw_used ({ESCROW_METHODS_ONLY})"));
    }
    let approval_key = format!(
        "{}=",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
    );
    let trace_no = ledger::new_trace_no(&site_cd);
    tracing::info!(%site_cd, %order_no, amount, %pay_method, escrow, "kcp sandbox registered a window trade");
    let trade = Trade {
        site_cd,
        order_no,
        amount,
        good_name,
        pay_method: pay_method.clone(),
        ret_url,
        escrow,
        trace_no: trace_no.clone(),
        pc_origin: None,
        opened: None,
        done: false,
        registered_at: s.now(),
    };
    let mut book = s.windows();
    book.forget_before(s.now() - WINDOW_KEPT);
    book.trades.insert(approval_key.clone(), trade);
    drop(book);
    let pay_url = format!("http://{}{}", host_of(headers), crate::paths::PAY_WINDOW);
    Json(serde_json::json!({
        "Code": "0000", "Message": "정상처리", "approvalKey": approval_key, "traceNo": trace_no,
        "PayUrl": pay_url, "paymentMethod": pay_method, "request_URI": crate::paths::PAY_WINDOW
    }))
    .into_response()
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html lang=\"ko\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:420px;margin:24px auto}}label{{display:block;margin:8px 0}}\
         button{{margin:8px 8px 0 0;padding:8px 16px}}</style></head><body><h2>KCP 샌드박스 결제창</h2>{body}</body></html>"
    ))
    .into_response()
}

pub(crate) fn error_page(message: &str) -> Response {
    page("오류", &format!("<p id=\"error\">{}</p>", escape(message)))
}

/// `res` with the headers that forbid framing it: KCP's mobile window is a full-page form post
/// (spec §1.2: "no iframe/popup"), so a merchant page that frames it fails here as it would at
/// KCP. The PC window (`pc_window`) is framed by KCP's own script and stays frameable.
pub(crate) fn unframeable(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    res
}

fn options(items: &[(&str, &str)]) -> String {
    items
        .iter()
        .map(|(v, label)| format!("<option value=\"{v}\">{label}</option>"))
        .collect()
}

/// The window post's required fields (spec §2.2) and their agreement with the registered trade:
/// `req_tx=pay`, `currency=410`, `pay_method` and `escw_used` as registered, an `ActionResult`
/// of that method, the registered `Ret_URL`, and `shop_user_id` for phone, point and gift
/// certificate windows. A merchant page that leaves one out gets KCP's error page, not a window.
fn window_post_checks(get: &impl Fn(&str) -> String, trade: &Trade) -> Result<(), String> {
    for name in [
        "approval_key",
        "traceNo",
        "PayUrl",
        "site_cd",
        "ordr_idxx",
        "good_name",
        "good_mny",
        "req_tx",
        "currency",
        "escw_used",
        "pay_method",
        "ActionResult",
        "Ret_URL",
    ] {
        if get(name).is_empty() {
            return Err(format!("필수 항목이 없습니다. ({name})"));
        }
    }
    if get("req_tx") != "pay" {
        return Err("req_tx 값 오류".into());
    }
    if get("currency") != "410" {
        return Err("currency 값 오류".into());
    }
    if get("pay_method") != trade.pay_method {
        return Err("pay_method 가 등록된 거래와 다릅니다.".into());
    }
    if get("escw_used") != if trade.escrow { "Y" } else { "N" } {
        return Err("escw_used 가 등록된 거래와 다릅니다.".into());
    }
    let actions: &[&str] = match trade.pay_method.as_str() {
        "CARD" => &["card"],
        "BANK" => &["acnt"],
        "VCNT" => &["vcnt"],
        "MOBX" => &["mobx"],
        "TPNT" => &["tpnt", "ocb"],
        "GIFT" => &["scbl", "sccl", "schm"],
        "AUTH" => &["batch"],
        _ => &[],
    };
    if !actions.contains(&get("ActionResult").as_str()) {
        return Err("ActionResult 가 결제수단과 다릅니다.".into());
    }
    if get("Ret_URL") != trade.ret_url {
        return Err("Ret_URL 이 등록된 거래와 다릅니다.".into());
    }
    if matches!(trade.pay_method.as_str(), "MOBX" | "TPNT" | "GIFT")
        && get("shop_user_id").is_empty()
    {
        return Err("필수 항목이 없습니다. (shop_user_id)".into());
    }
    let quotaopt = get("quotaopt");
    if !quotaopt.is_empty() && quota_option(&quotaopt).is_none() {
        return Err(format!("quotaopt 값 오류 (0~{QUOTAOPT_MAX})"));
    }
    Ok(())
}

/// The most instalment months `quotaopt` may offer (spec §2.2: `quotaopt (0-12)`).
const QUOTAOPT_MAX: u8 = 12;

/// A `quotaopt` KCP takes: digits naming 0 to [`QUOTAOPT_MAX`] months. Anything else is refused
/// with the error page, never taken as the nearest value, so a merchant that sends another one
/// finds out here.
fn quota_option(quotaopt: &str) -> Option<u8> {
    if !wire::is_digits(quotaopt) {
        return None;
    }
    quotaopt.parse::<u8>().ok().filter(|m| *m <= QUOTAOPT_MAX)
}

/// Whether KCP's escrow takes a trade of `pay_method` (the registration's names): cards, bank
/// transfers and virtual accounts (assumption, docs/sandbox.md; PortOne documents KCP's escrow
/// for card, trans and vbank only). A phone, point or gift trade is never opened as escrow, by
/// the registration (`Code 0002`) or by the PC window (its error page), so no escrow approval,
/// `STE2` cancel or shipping start can follow for one.
fn escrow_takes(pay_method: &str) -> bool {
    !matches!(pay_method, "MOBX" | "TPNT" | "GIFT")
}

/// What a refused escrow trade is told, registered or opened in the PC window.
const ESCROW_METHODS_ONLY: &str = "에스크로는 CARD, BANK, VCNT만 가능";

/// `POST /pay/mobileGW.kcp`: the window (spec §2.2 fields).
pub(crate) async fn window_page(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    unframeable(mobile_window(&s, &body))
}

fn mobile_window(s: &Shared, body: &[u8]) -> Response {
    let f = form_fields(body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let key = get("approval_key");
    let trade = {
        let mut book = s.windows();
        let Some(trade) = book.trades.get_mut(&key) else {
            return error_page("등록되지 않은 거래입니다. (approval_key)");
        };
        if trade.done {
            return error_page("이미 결제창 처리가 끝난 거래입니다.");
        }
        if get("traceNo") != trade.trace_no
            || get("ordr_idxx") != trade.order_no
            || f.get("site_cd").is_some_and(|v| *v != trade.site_cd)
        {
            return error_page("거래정보가 등록 내용과 다릅니다.");
        }
        if let Err(message) = window_post_checks(&get, trade) {
            return error_page(&message);
        }
        if let Err(message) = open_window(&get, trade) {
            return error_page(&message);
        }
        trade.clone()
    };
    window_ui(&trade, &key)
}

/// A PC window (spec §1.1), opened by KCP's PC script with the merchant form's fields (`get`)
/// for the page at `origin`: the trade is recorded as a registration records a mobile one, under
/// a fresh approval key, so the buyer's answer and its approval at `gw/enc/v1/payment` go
/// through the same book (one redemption, `ordr_mony`, `pay_type`, `ordr_no` checks).
pub(crate) fn open_pc_window(
    s: &Shared,
    get: &impl Fn(&str) -> String,
    origin: &str,
) -> Result<(Trade, String), String> {
    for name in [
        "site_cd",
        "ordr_idxx",
        "good_name",
        "good_mny",
        "pay_method",
        "currency",
    ] {
        if get(name).is_empty() {
            return Err(format!("필수 항목이 없습니다. ({name})"));
        }
    }
    let site_cd = get("site_cd");
    if !wire::is_site_cd(&site_cd) {
        return Err("site_cd 형식 오류".into());
    }
    let order_no = get("ordr_idxx");
    if !wire::is_order_no(&order_no) {
        return Err("ordr_idxx 형식 오류".into());
    }
    if wire::check_text("good_name", &get("good_name"), 100).is_err() {
        return Err("good_name 형식 오류".into());
    }
    if !matches!(get("currency").as_str(), "WON" | "410") {
        return Err("currency 값 오류".into());
    }
    let pay_method = match get("pay_method").as_str() {
        "100000000000" => "CARD",
        "010000000000" => "BANK",
        "001000000000" => "VCNT",
        "000100000000" => "TPNT",
        "000010000000" => "MOBX",
        "000000001000" => "GIFT",
        "AUTH:CARD" if get("card_cert_type") == "BATCH" => "AUTH",
        _ => return Err("pay_method 값 오류".into()),
    };
    let escrow = match get("escw_used").as_str() {
        "" | "N" => false,
        "Y" => true,
        _ => return Err("escw_used 값 오류".into()),
    };
    // The same rule as the registration's (the PC window is the PC flow's registration): a
    // phone, point or gift-certificate bitmask with `escw_used=Y` gets the error page, as any
    // other field this window refuses, and no trade is recorded for it.
    if escrow && !escrow_takes(pay_method) {
        return Err(format!("escw_used 값 오류 ({ESCROW_METHODS_ONLY})"));
    }
    if matches!(pay_method, "MOBX" | "TPNT" | "GIFT") && get("shop_user_id").is_empty() {
        return Err("필수 항목이 없습니다. (shop_user_id)".into());
    }
    let quotaopt = get("quotaopt");
    if !quotaopt.is_empty() && quota_option(&quotaopt).is_none() {
        return Err(format!("quotaopt 값 오류 (0~{QUOTAOPT_MAX})"));
    }
    let mut trade = Trade {
        trace_no: ledger::new_trace_no(&site_cd),
        site_cd,
        order_no,
        amount: 0,
        good_name: get("good_name"),
        pay_method: pay_method.into(),
        ret_url: String::new(),
        escrow,
        pc_origin: Some(origin.to_string()),
        opened: None,
        done: false,
        registered_at: s.now(),
    };
    open_window(get, &mut trade)?;
    let approval_key = format!(
        "{}=",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
    );
    tracing::info!(site_cd = %trade.site_cd, order_no = %trade.order_no, amount = trade.amount, pay_method, escrow, "kcp sandbox opened a PC window");
    let mut book = s.windows();
    book.forget_before(s.now() - WINDOW_KEPT);
    book.trades.insert(approval_key.clone(), trade.clone());
    Ok((trade, approval_key))
}

/// Opens `trade`'s window with what the page posted (`get`): the amount the window shows and
/// charges, and what it was opened with (buyer, `quotaopt`, `van_code`, `ipgm_date`, …).
pub(crate) fn open_window(get: &impl Fn(&str) -> String, trade: &mut Trade) -> Result<(), String> {
    // The buyer fields, optional, are request data too: KCP's limits in bytes and its forbidden
    // characters (spec §6), as the hub checks them.
    for (name, max) in BUYER_FIELDS {
        let value = get(name);
        if !value.is_empty() {
            wire::check_text(name, &value, max).map_err(|refusal| refusal.message)?;
        }
    }
    if trade.escrow {
        escrow_window_checks(get)?;
    }
    // The window charges the amount it is posted (spec §2.4: KCP compares the merchant's
    // `ordr_mony` with *the window amount* at approval, 8059 on a mismatch), so a buyer who
    // edits `good_mny` on the hand-off form sees and pays that amount here, and the
    // merchant's `ordr_mony` is what catches it. The mobile window posts no `ordr_chk` back
    // (spec §2.3); the PC flow's (§1.1) names this amount, for the merchant to compare.
    let posted = get("good_mny");
    match posted.parse::<i64>() {
        Ok(amount) if wire::is_digits(&posted) && (amount > 0 || trade.pay_method == "AUTH") => {
            if amount != trade.amount {
                tracing::warn!(
                    order_no = %trade.order_no,
                    registered = trade.amount,
                    window = amount,
                    "kcp sandbox window opened with another amount than registered"
                );
            }
            trade.amount = amount;
        }
        _ => return Err("결제금액(good_mny) 형식 오류".into()),
    }
    let quota_max = if trade.amount >= INSTALLMENT_MINIMUM {
        quota_option(&get("quotaopt")).unwrap_or(0)
    } else {
        0
    };
    let used_cards = used_cards(get, trade.pc_origin.is_some())?;
    let group_id = if trade.pay_method == "AUTH" {
        batch_group_id(get, trade)?
    } else {
        String::new()
    };
    let van_code = match (trade.pay_method.as_str(), get("van_code")) {
        ("TPNT", v) if v.is_empty() => "SCSK".to_string(),
        ("GIFT", v) if v.is_empty() => "SCCL".to_string(),
        (_, v) => v,
    };
    trade.opened = Some(Opened {
        buyr_name: get("buyr_name"),
        buyr_tel1: get("buyr_tel1"),
        buyr_tel2: get("buyr_tel2"),
        buyr_mail: get("buyr_mail"),
        params: [get("param_opt_1"), get("param_opt_2"), get("param_opt_3")],
        quota_max,
        van_code,
        ipgm_date: get("ipgm_date"),
        group_id,
        return_card_mask: get("batch_cardno_return_yn") == "Y",
        pay_mod: get("pay_mod"),
        good_info: get("good_info"),
        used_cards,
    });
    Ok(())
}

/// What an escrow window must carry besides the payment's fields (spec §2.11; KCP's escrow
/// samples mark them "에스크로결제 사용시 필수 정보"): a receiver (`rcvr_name`, the other
/// `rcvr_*` optional, each within [`RECEIVER_FIELDS`]' limits and free of KCP's forbidden
/// characters) and a basket: `good_info` holding at least one item, exactly `bask_cntx` of them.
/// *Assumption*: what KCP answers otherwise is not documented; the sandbox shows its error page
/// naming the field, as for any other window field it refuses (docs/sandbox.md §2.1).
fn escrow_window_checks(get: &impl Fn(&str) -> String) -> Result<(), String> {
    if get("rcvr_name").trim().is_empty() {
        return Err("에스크로 결제는 수취인 정보가 필요합니다. (rcvr_name)".into());
    }
    for (name, max) in RECEIVER_FIELDS {
        let value = get(name);
        if !value.is_empty() {
            wire::check_text(name, &value, max).map_err(|refusal| refusal.message)?;
        }
    }
    let good_info = get("good_info");
    let items = good_info
        .split(GOOD_INFO_ITEMS)
        .filter(|item| !item.is_empty())
        .count();
    let bask_cntx = get("bask_cntx");
    let counted = wire::is_digits(&bask_cntx)
        .then(|| bask_cntx.parse::<usize>().ok())
        .flatten();
    if items == 0 || counted != Some(items) {
        return Err(format!(
            "에스크로 장바구니 정보 오류: bask_cntx({bask_cntx})와 good_info 상품 수({items})가 다릅니다. (bask_cntx, good_info)"
        ));
    }
    Ok(())
}

/// The group a batch-key window issues its key in (spec §2.2): `kcp_group_id` on the mobile
/// window, `kcpgroup_id` on the PC one (each window reads its own spelling), required and a group
/// of the trade's site as the hub's batch calls require it ([`crate::batch::is_group_id`], `8301`
/// there). A window opened without one, or with a malformed or another site's, gets the error
/// page: the sandbox never makes a group up, so a gateway that stopped sending it, and charged
/// its keys under a default of its own, fails a test instead of passing against a sandbox that
/// made up the same default.
fn batch_group_id(get: &impl Fn(&str) -> String, trade: &Trade) -> Result<String, String> {
    let name = if trade.pc_origin.is_some() {
        "kcpgroup_id"
    } else {
        "kcp_group_id"
    };
    let group_id = get(name);
    if group_id.is_empty() {
        return Err(format!("필수 항목이 없습니다. ({name})"));
    }
    if !crate::batch::is_group_id(&trade.site_cd, &group_id) {
        return Err(format!(
            "{name} 는 사이트코드({})와 숫자 7자리입니다.",
            trade.site_cd
        ));
    }
    Ok(group_id)
}

/// `used_card` (spec §2.2): the cards the window offers, KCP issuer codes separated by `:` as
/// KCP's samples write it (`CCBC:CCLG`). KCP's PC form applies it only with `used_card_YN=Y`
/// (its sample: "used_card_YN 값이 Y일때 적용됩니다"). A list that names no issuer code is
/// refused with the error page, not taken as "every card".
fn used_cards(get: &impl Fn(&str) -> String, pc: bool) -> Result<Vec<String>, String> {
    let listed = get("used_card");
    if listed.is_empty() || (pc && get("used_card_YN") != "Y") {
        return Ok(vec![]);
    }
    listed
        .split(':')
        .map(|code| {
            let code = code.trim().to_ascii_uppercase();
            (code.len() == 4 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then_some(code)
                .ok_or_else(|| "used_card 값 오류".to_string())
        })
        .collect()
}

/// The window's page for `trade`, opened under `key` (its approval key).
pub(crate) fn window_ui(trade: &Trade, key: &str) -> Response {
    let opened = trade.opened.clone().unwrap_or_default();
    let (heading, inputs, pay_label) = match trade.pay_method.as_str() {
        "CARD" | "AUTH" => {
            let mut q = String::from("<option value=\"00\">일시불</option>");
            for m in 2..=opened.quota_max {
                q.push_str(&format!("<option value=\"{m:02}\">{m}개월</option>"));
            }
            let offered = if opened.used_cards.is_empty() {
                String::new()
            } else {
                format!(
                    "<p id=\"used_card\">사용 가능 카드: {}</p>",
                    escape(&opened.used_cards.join(", "))
                )
            };
            let quota = if trade.pay_method == "CARD" {
                format!("<label>할부 <select id=\"quota\" name=\"quota\">{q}</select></label>")
            } else {
                String::new()
            };
            (
                if trade.pay_method == "AUTH" {
                    "카드 등록 (자동결제)"
                } else {
                    "신용카드"
                },
                format!(
                    "{offered}<label>카드번호 <input id=\"card_no\" name=\"card_no\" inputmode=\"numeric\" autocomplete=\"off\"></label>\
                     <label>유효기간(YYMM) <input id=\"card_expiry\" name=\"card_expiry\" maxlength=\"4\" inputmode=\"numeric\"></label>{quota}"
                ),
                if trade.pay_method == "AUTH" {
                    "카드 등록"
                } else {
                    "결제하기"
                },
            )
        }
        "BANK" => (
            "계좌이체",
            format!(
                "<label>은행 <select id=\"bank\" name=\"bank\">{}</select></label>\
                 <label>현금영수증 <select id=\"cash_receipt\" name=\"cash_receipt\">{}</select></label>",
                options(BANKS),
                options(CASH_RECEIPTS)
            ),
            "이체하기",
        ),
        "VCNT" => (
            "가상계좌",
            format!(
                "<label>입금 은행 <select id=\"bank\" name=\"bank\">{}</select></label>\
                 <label>현금영수증 <select id=\"cash_receipt\" name=\"cash_receipt\">{}</select></label>",
                options(BANKS),
                options(CASH_RECEIPTS)
            ),
            "계좌 발급",
        ),
        "MOBX" => (
            "휴대폰 결제",
            format!(
                "<label>통신사 <select id=\"carrier\" name=\"carrier\">{}</select></label>\
                 <label>휴대폰번호 <input id=\"mobile_no\" name=\"mobile_no\" inputmode=\"numeric\" autocomplete=\"off\"></label>",
                options(CARRIERS)
            ),
            "결제하기",
        ),
        "TPNT" => (
            "포인트",
            "<label>카드번호/PIN <input id=\"pin\" name=\"pin\" autocomplete=\"off\"></label>".to_string(),
            "결제하기",
        ),
        _ => (
            "상품권",
            "<label>상품권 번호/PIN <input id=\"pin\" name=\"pin\" autocomplete=\"off\"></label>".to_string(),
            "결제하기",
        ),
    };
    page(
        "KCP 결제",
        &format!(
            "<h3>{heading}</h3><p>{} — <strong id=\"amount\">{}원</strong></p>\
             <form id=\"window\" method=\"post\" action=\"{submit}\" accept-charset=\"UTF-8\">\
             <input type=\"hidden\" name=\"approval_key\" value=\"{}\">{inputs}\
             <button id=\"pay\" type=\"submit\" name=\"action\" value=\"pay\">{pay_label}</button>\
             <button id=\"cancel\" type=\"submit\" name=\"action\" value=\"cancel\" formnovalidate>취소</button></form>",
            escape(&trade.good_name),
            trade.amount,
            escape(key),
            submit = crate::paths::PAY_SUBMIT,
        ),
    )
}

/// The `use_pay_method` bitmask of spec §2.3.
fn bitmask(method: &str) -> &'static str {
    match method {
        "CARD" | "AUTH" => "100000000000",
        "BANK" => "010000000000",
        "VCNT" => "001000000000",
        "TPNT" => "000100000000",
        "MOBX" => "000010000000",
        _ => "000000001000",
    }
}

/// The auto-submitting form that brings the window's result to `Ret_URL` (spec §2.3: the mobile
/// window's fields, without the PC flow's `ordr_chk`).
fn post_back(ret_url: &str, fields: &[(&str, String)]) -> Response {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body><form id=\"ret\" method=\"post\" action=\"{}\" accept-charset=\"UTF-8\">{inputs}\
         <noscript><button type=\"submit\">계속</button></noscript></form>\
         <script>document.getElementById('ret').submit();</script></body></html>",
        escape(ret_url)
    ))
    .into_response()
}

fn digits(v: &str) -> String {
    v.chars().filter(char::is_ascii_digit).collect()
}

/// `POST /pay/submit`: the buyer paid or cancelled in the window.
pub(crate) async fn submit(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let key = get("approval_key");
    let trade = {
        let mut book = s.windows();
        match book.trades.get_mut(&key) {
            None => return error_page("등록되지 않은 거래입니다."),
            Some(t) if t.done => return error_page("이미 결제창 처리가 끝난 거래입니다."),
            Some(t) if t.opened.is_none() => return error_page("결제창이 열리지 않은 거래입니다."),
            Some(t) => {
                t.done = true;
                t.clone()
            }
        }
    };
    let opened = trade.opened.clone().unwrap_or_default();
    let batch = trade.pay_method == "AUTH";
    let (cash_yn, cash_tr_code) =
        cash_receipt_answer(&trade.pay_method, get("cash_receipt").trim());
    let mut out: Vec<(&str, String)> = vec![
        ("req_tx", "pay".into()),
        ("site_cd", trade.site_cd.clone()),
        (
            "tran_cd",
            if batch {
                TRAN_CD_BATCH
            } else {
                TRAN_CD_PAYMENT
            }
            .into(),
        ),
        ("ordr_idxx", trade.order_no.clone()),
        ("good_name", trade.good_name.clone()),
        ("good_mny", trade.amount.to_string()),
        ("buyr_name", opened.buyr_name.clone()),
        ("buyr_tel1", opened.buyr_tel1.clone()),
        ("buyr_tel2", opened.buyr_tel2.clone()),
        ("buyr_mail", opened.buyr_mail.clone()),
        ("use_pay_method", bitmask(&trade.pay_method).into()),
        ("param_opt_1", opened.params[0].clone()),
        ("param_opt_2", opened.params[1].clone()),
        ("param_opt_3", opened.params[2].clone()),
        ("cash_yn", cash_yn.into()),
        ("cash_tr_code", cash_tr_code),
        ("escw_used", if trade.escrow { "Y" } else { "N" }.into()),
    ];
    if trade.escrow {
        out.push(("pay_mod", opened.pay_mod.clone()));
        out.push(("good_info", opened.good_info.clone()));
    }
    if trade.pc_origin.is_some() {
        // The PC flow's answer inputs (spec §1.1): `ordr_chk` names the order and the amount
        // this window showed, for the merchant to compare with its own before approving.
        out.push(("ordr_chk", format!("{}|{}", trade.order_no, trade.amount)));
        out.push(("ret_pay_method", bitmask(&trade.pay_method).into()));
        out.push(("cash_id_info", String::new()));
    }
    let finish = |mut out: Vec<(&str, String)>, code: &str, msg: &str| {
        out.insert(1, ("res_cd", code.to_string()));
        out.insert(2, ("res_msg", msg.to_string()));
        if let Some(origin) = &trade.pc_origin {
            tracing::info!(site_cd = %trade.site_cd, order_no = %trade.order_no, res_cd = code, "kcp sandbox PC window hands its answer to the page");
            return crate::pc_window::answer_page(origin, &out);
        }
        tracing::info!(site_cd = %trade.site_cd, order_no = %trade.order_no, res_cd = code, "kcp sandbox window returns to Ret_URL");
        unframeable(post_back(&trade.ret_url, &out))
    };
    if get("action") == "cancel" {
        return finish(out, "3001", "사용자가 취소하였습니다");
    }
    let mut result = WindowResult {
        approval_key: key.clone(),
        enc_info: Alphanumeric.sample_string(&mut rand::thread_rng(), 24),
        card_no: None,
        quota: "00".into(),
        bank: String::new(),
        carrier: String::new(),
        mobile_no: String::new(),
        redeemed: false,
        made_at: s.now(),
    };
    match trade.pay_method.as_str() {
        "CARD" | "AUTH" => {
            let card_no = digits(&get("card_no"));
            if let Err(r) = check_card_number(&card_no) {
                return finish(out, r.code, &r.message);
            }
            if let Err(r) = check_expiry(&s, get("card_expiry").trim()) {
                return finish(out, r.code, &r.message);
            }
            let quota = Some(get("quota"))
                .filter(|q| !q.is_empty())
                .unwrap_or_else(|| "00".into());
            let quota_ok = quota == "00"
                || (quota.len() == 2
                    && quota
                        .parse::<u8>()
                        .is_ok_and(|m| (2..=opened.quota_max).contains(&m)));
            if !batch && !quota_ok {
                return finish(
                    out,
                    codes::INSTALLMENT_ERROR,
                    "선택할 수 없는 할부개월입니다.",
                );
            }
            let issuer = test_cards::issuer(&card_no);
            // KCP's window offers only the cards of `used_card`: the buyer cannot pay with
            // another issuer's card in it.
            if !opened.used_cards.is_empty()
                && !opened.used_cards.iter().any(|c| c == issuer.card_cd)
            {
                return finish(
                    out,
                    codes::CARD_NOT_ALLOWED,
                    "결제창에서 선택할 수 없는 카드사입니다.",
                );
            }
            // A batch window only registers the card: issuers decide at each charge.
            if !batch {
                if let Err(r) = issuer_decides(&s, &issuer) {
                    return finish(out, r.code, &r.message);
                }
            }
            if batch && opened.return_card_mask {
                out.push(("card_mask_no", test_cards::mask(&card_no)));
            }
            result.quota = if batch { "00".into() } else { quota };
            result.card_no = Some(card_no);
        }
        "BANK" | "VCNT" => {
            let bank = get("bank");
            result.bank = if BANKS.iter().any(|(c, _)| *c == bank) {
                bank
            } else {
                "BK04".into()
            };
        }
        "MOBX" => {
            let no = digits(&get("mobile_no"));
            if !(10..=11).contains(&no.len()) || !no.starts_with("01") {
                return finish(
                    out,
                    codes::INVALID_FIELD,
                    "휴대폰번호 형식이 올바르지 않습니다.",
                );
            }
            let carrier = get("carrier");
            result.carrier = if CARRIERS.iter().any(|(c, _)| *c == carrier) {
                carrier
            } else {
                "SKT".into()
            };
            result.mobile_no = no;
        }
        _ => {
            // The PIN only has to be there; it is neither kept nor logged.
            if get("pin").trim().is_empty() {
                return finish(out, codes::MISSING_FIELD, "번호를 입력해 주세요");
            }
        }
    }
    let enc_data = format!(
        "{}.{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 32),
        Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
    );
    let enc_info = result.enc_info.clone();
    s.windows().results.insert(enc_data.clone(), result);
    out.push(("enc_info", enc_info));
    out.push(("enc_data", enc_data));
    finish(out, codes::OK, "정상처리")
}

/// The approval `pay_type` of a registration's `pay_method` (spec §2.3 table).
fn pay_type_of(method: &str) -> &'static str {
    match method {
        "CARD" => "PACA",
        "BANK" => "PABK",
        "VCNT" => "PAVC",
        "MOBX" => "PAMC",
        "TPNT" => "PAPT",
        "GIFT" => "PATK",
        _ => "",
    }
}

/// `POST /gw/enc/v1/payment`: redeems a window result once (spec §2.4).
pub(crate) async fn approve_window(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match handle_approval(&s, &body) {
        Ok(r) => r.into_response(),
        Err(r) => r.into_response(),
    }
}

/// `ipgm_date` of the window (`yyyyMMdd` or `yyyyMMddHHmmss`), else 7 days later, 23:59:59 KST.
fn deposit_deadline(ipgm_date: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let d = ipgm_date.trim();
    if wire::is_digits(d) && d.len() == 8 {
        return format!("{d}235959");
    }
    if wire::is_digits(d) && d.len() == 14 {
        return d.to_string();
    }
    let due = kcp_time(now + chrono::Duration::days(7));
    format!("{}235959", &due[..8])
}

/// A virtual-account window's deadline (`ipgm_date`) must lie after now when the approval issues
/// the account, as the window-less issuance's `va_date` must (`8505`): an account already due
/// could never be paid, its bank refusing every deposit past it.
fn check_window_deadline(s: &Shared, trade: &Trade) -> Result<(), Refusal> {
    let opened = trade.opened.clone().unwrap_or_default();
    let now = s.now();
    let due = crate::vbank::deadline(&deposit_deadline(&opened.ipgm_date, now));
    match due {
        Some(due) if due > now => Ok(()),
        Some(_) => Err(Refusal::new(
            codes::VBANK_DUE_ERROR,
            "입금기한(ipgm_date)이 이미 지났습니다.",
        )),
        None => Err(Refusal::new(
            codes::VBANK_DUE_ERROR,
            "ipgm_date 는 yyyyMMdd 또는 yyyyMMddHHmmss 형식의 입금기한입니다.",
        )),
    }
}

fn handle_approval(s: &Shared, body: &Bytes) -> Result<Reply, Refusal> {
    let fields = Fields::parse(body)?;
    let site_cd = fields.site_cd()?;
    auth::authenticate(&s.ca, &fields, site_cd)?;
    let tran_cd = fields
        .optional("tran_cd")
        .ok_or_else(|| Refusal::new(codes::TRAN_CD_MISSING, "tran_cd 가 없습니다."))?;
    if tran_cd != TRAN_CD_PAYMENT && tran_cd != TRAN_CD_BATCH {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            format!("샌드박스가 지원하지 않는 tran_cd 입니다: {tran_cd}"),
        ));
    }
    let enc_data = fields.required("enc_data")?;
    let enc_info = fields.required("enc_info")?;
    let unknown = || Refusal::new(codes::WINDOW_UNKNOWN, "결제창 결과를 찾을 수 없습니다.");
    let (result, trade) = {
        let mut guard = s.windows();
        let book = &mut *guard;
        let result = book.results.get_mut(enc_data).ok_or_else(unknown)?;
        let trade = book
            .trades
            .get(&result.approval_key)
            .cloned()
            .ok_or_else(unknown)?;
        if trade.site_cd != site_cd {
            return Err(unknown());
        }
        // The pair is one (spec §2.3): another window's `enc_info`, or a mangled one, reads
        // nothing at KCP. Refused before anything is redeemed, so the right pair still approves.
        if enc_info != result.enc_info {
            return Err(Refusal::new(
                codes::ENC_INFO_MISMATCH,
                "결제창 결과 정보(enc_info)가 일치하지 않습니다.",
            ));
        }
        if result.redeemed {
            return Err(Refusal::new(
                codes::WINDOW_REPLAYED,
                "이미 승인 요청된 결제창 결과입니다.",
            ));
        }
        let batch = trade.pay_method == "AUTH";
        if batch != (tran_cd == TRAN_CD_BATCH) {
            return Err(Refusal::new(
                codes::TX_TYPE_ERROR,
                "tran_cd 가 결제창 결과와 다릅니다.",
            ));
        }
        if !batch {
            let ordr_mony = wire::amount("ordr_mony", fields.required("ordr_mony")?)?;
            if ordr_mony != trade.amount {
                return Err(Refusal::new(codes::AMOUNT_MISMATCH, "결제금액 불일치"));
            }
            if fields.required("pay_type")? != pay_type_of(&trade.pay_method) {
                return Err(Refusal::new(
                    codes::PAY_METHOD_ERROR,
                    "pay_type 이 결제수단과 다릅니다.",
                ));
            }
            if fields
                .optional("ordr_no")
                .is_some_and(|o| o != trade.order_no)
            {
                return Err(Refusal::new(codes::ORDER_NO_MISMATCH, "주문번호 불일치"));
            }
            if trade.pay_method == "VCNT" {
                check_window_deadline(s, &trade)?;
            }
        }
        result.redeemed = true;
        let taken = result.clone();
        // Kept to refuse a replay; the card number is not needed for that.
        result.card_no = None;
        (taken, trade)
    };
    if tran_cd == TRAN_CD_BATCH {
        return Ok(batch_key_reply(s, site_cd, &trade, &result));
    }
    let mut ledger = s.ledger();
    if trade.pay_method == "CARD" {
        let card_no = result.card_no.clone().unwrap_or_default();
        let issuer = test_cards::issuer(&card_no);
        let card = card_summary(&issuer, test_cards::mask(&card_no), &result.quota);
        let order = CardOrder {
            order_no: &trade.order_no,
            amount: trade.amount,
            quota: &result.quota,
        };
        let mut approval = approve(s, &mut ledger, site_cd, &order, card, &issuer)?;
        // The window's trace number follows the approval (spec §2.1, §2.4).
        if let Some(entry) = ledger.get_mut(&approval.tno) {
            entry.trace_no = trade.trace_no.clone();
        }
        approval.reply.set("trace_no", trade.trace_no.as_str());
        if trade.escrow {
            approval.reply.set("escw_yn", "Y");
            crate::escrow::open(s, &approval.tno);
        }
        tracing::info!(tno = %approval.tno, site_cd, order_no = %trade.order_no, "kcp sandbox approved a window card payment");
        return Ok(approval.reply);
    }
    let opened = trade.opened.clone().unwrap_or_default();
    let now = s.now();
    let pay_type = pay_type_of(&trade.pay_method);
    let mut entry = ledger.new_approval(
        site_cd,
        &trade.order_no,
        pay_type,
        trade.amount,
        now,
        s.refuses_duplicate_orders(),
    )?;
    if trade.pay_method == "VCNT" {
        entry.state = TransactionState::Issued;
    }
    if trade.pay_method == "TPNT" {
        entry.app_no = ledger::new_point_app_no();
    }
    entry.trace_no = trade.trace_no.clone();
    let app_time = entry.app_time.clone();
    let amount = trade.amount.to_string();
    let vat = (2 * trade.amount + 11) / 22;
    let mut reply = Reply::ok();
    reply
        .set("res_en_msg", "processing completed")
        .set("tno", entry.tno.as_str())
        .set("amount", amount.as_str())
        .set("order_no", trade.order_no.as_str())
        .set("pay_method", pay_type)
        .set("app_time", app_time.as_str())
        .set("trace_no", trade.trace_no.as_str())
        .set("escw_yn", if trade.escrow { "Y" } else { "N" })
        .set("res_tax_flag", "TG03")
        .set("res_tax_mny", (trade.amount - vat).to_string())
        .set("res_vat_mny", vat.to_string())
        .set("res_free_mny", "0")
        .set("van_cd", "VNKC")
        .set("van_apptime", app_time.as_str())
        .set("mall_taxno", "0000000000")
        .set("mcht_taxno", "0000000000");
    match trade.pay_method.as_str() {
        "BANK" => {
            reply
                .set("bank_code", result.bank.as_str())
                .set("bank_name", bank_name(&result.bank))
                .set("bk_mny", amount.as_str());
        }
        "VCNT" => {
            let holder = if opened.buyr_name.is_empty() {
                BUYER.to_string()
            } else {
                opened.buyr_name.clone()
            };
            let account = open_vbank_account(
                s,
                &entry.tno,
                &result.bank,
                &holder,
                DEFAULT_DEPOSITOR,
                &holder,
                &deposit_deadline(&opened.ipgm_date, now),
            );
            set_vbank_fields(&mut reply, &account);
            // KCP's real virtual-account answer (spec §2.4) has these only: no order_no, trace_no,
            // tax split or VAN fields.
            reply.keep_only(&[
                "res_cd",
                "res_msg",
                "tno",
                "amount",
                "pay_method",
                "bankcode",
                "bankname",
                "account",
                "depositor",
                "va_name",
                "va_date",
                "app_time",
                "escw_yn",
            ]);
        }
        "MOBX" => {
            reply
                .set("commid", result.carrier.as_str())
                .set("mobile_no", result.mobile_no.as_str());
        }
        "TPNT" => {
            // A fictitious card of 1,000,000 points, no points added by the payment.
            reply
                .set("pnt_issue", opened.van_code.as_str())
                .set("pnt_amount", amount.as_str())
                .set("use_pnt", amount.as_str())
                .set("add_pnt", "0")
                .set("rsv_pnt", (1_000_000 - trade.amount).max(0).to_string())
                .set("pnt_app_time", app_time.as_str())
                .set("pnt_app_no", entry.app_no.as_str());
            // Points answer their amount as pnt_amount only (KCP's .NET sample: "결제수단 포인트의
            // 경우 pnt_amount로 응답").
            reply.remove("amount");
        }
        _ => {
            reply
                .set("tk_van_code", opened.van_code.as_str())
                .set("tk_app_no", entry.app_no.as_str())
                .set("tk_app_time", app_time.as_str());
        }
    }
    if trade.escrow {
        crate::escrow::open(s, &entry.tno);
    }
    tracing::info!(tno = %entry.tno, site_cd, order_no = %trade.order_no, pay_type, "kcp sandbox approved a window payment");
    ledger.insert(entry);
    Ok(reply)
}

/// The batch window's answer (spec §2.5): a key usable with batch payments (§2.6).
fn batch_key_reply(s: &Shared, site_cd: &str, trade: &Trade, result: &WindowResult) -> Reply {
    // The window was opened with its group (`batch_group_id`), or it showed no window.
    let group_id = trade
        .opened
        .as_ref()
        .map(|opened| opened.group_id.clone())
        .unwrap_or_default();
    let card_no = result.card_no.clone().unwrap_or_default();
    let issuer = test_cards::issuer(&card_no);
    let (batch_key, shown) =
        crate::batch::issue_from_window(s, site_cd, &group_id, &trade.order_no, &card_no);
    tracing::info!(site_cd, group_id = %group_id, key = %shown.id, "kcp sandbox issued a batch key from the window");
    let mut reply = Reply::ok();
    reply
        .set("batch_key", batch_key.as_str())
        .set("card_cd", issuer.card_cd)
        .set("card_name", issuer.card_name)
        .set("card_bank_cd", issuer.bank_cd)
        .set("card_bin_type_01", "0")
        .set("card_bin_type_02", issuer.bin_type_02);
    // KCP's real issuance answer (spec §2.5) has these only: no masked card number, which the
    // window posts to `Ret_URL` instead (`card_mask_no` with `batch_cardno_return_yn=Y`, §2.3),
    // so a gateway must take it from there.
    reply.keep_only(&[
        "res_cd",
        "res_msg",
        "batch_key",
        "card_cd",
        "card_name",
        "card_bank_cd",
        "card_bin_type_01",
        "card_bin_type_02",
    ]);
    reply
}

impl crate::Sandbox {
    /// How many window trades and window results the sandbox holds, and how many of the results
    /// still hold a card number (one the gateway has not redeemed yet).
    pub fn windows_held(&self) -> WindowsHeld {
        let book = self.shared.windows();
        WindowsHeld {
            trades: book.trades.len(),
            results: book.results.len(),
            card_numbers: book
                .results
                .values()
                .filter(|r| r.card_no.is_some())
                .count(),
        }
    }
}

/// [`crate::Sandbox::windows_held`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsHeld {
    pub trades: usize,
    pub results: usize,
    pub card_numbers: usize,
}
