//! KCP's standard payment window (spec/kcp.md §1.2, §2.1–2.4): trade registration, the window
//! page at `PayUrl` (usable by a person, drivable by a test through stable element ids), the
//! post back to the merchant's `Ret_URL`, and the approval that redeems the window's result once.
//!
//! Element ids of the window page: `#card_no`, `#card_expiry` (YYMM), `#quota`, `#bank`,
//! `#mobile_no`, `#pin`, `#pay`, `#cancel`.
//!
//! `enc_data` is an opaque handle to what the buyer entered, kept in memory here; it never
//! carries the card number.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use rand::distributions::{Alphanumeric, DistString};

use crate::clock::kcp_time;
use crate::hub::{
    approve, card_summary, check_card_number, check_expiry, issuer_decides, CardOrder,
};
use crate::ledger::{self, LedgerEntry, TransactionState};
use crate::wire::{Fields, Refusal, Reply};
use crate::{auth, codes, test_cards, Shared};

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
}

/// What the buyer entered, redeemable once at `gw/enc/v1/payment`.
#[derive(Clone)]
pub(crate) struct WindowResult {
    approval_key: String,
    method: String,
    card_no: Option<String>,
    quota: String,
    bank: Option<String>,
    mobile_no: Option<String>,
    group_id: String,
    redeemed: bool,
}

#[derive(Default)]
pub(crate) struct WindowBook {
    trades: HashMap<String, Trade>,
    results: HashMap<String, WindowResult>,
    /// Escrow approvals (tno → site) and whether shipping was registered (`STE1`).
    escrow: HashMap<String, (String, bool)>,
    /// Issued virtual accounts: tno → account number.
    accounts: HashMap<String, String>,
}

/// The account number of an issued virtual account.
pub(crate) fn vbank_account(s: &Shared, tno: &str) -> Option<String> {
    s.windows().accounts.get(tno).cloned()
}

/// A documented sandbox code: `STE1` on a transaction that is not an escrow payment.
pub const NOT_ESCROW: &str = "8501";
/// A documented sandbox code: `STE1` a second time.
pub const ESCROW_ALREADY_SHIPPED: &str = "8502";

/// Escrow shipping start (`mod_type STE1` on `gw/mod/v1/cancel`, documented assumption: spec
/// §2.11): carrier (`deli_corp`) and waybill (`deli_numb`) are required; once per transaction.
pub(crate) fn escrow_shipping(
    s: &Shared,
    site_cd: &str,
    tno: &str,
    fields: &Fields,
) -> Result<Reply, Refusal> {
    fields.required("deli_numb")?;
    fields.required("deli_corp")?;
    let mut book = s.windows();
    match book.escrow.get_mut(tno) {
        Some((site, _)) if site != site_cd => Err(Refusal::new(
            codes::NO_SUCH_TRANSACTION,
            codes::NO_SUCH_TRANSACTION_MSG,
        )),
        Some((_, shipped)) if *shipped => Err(Refusal::new(
            ESCROW_ALREADY_SHIPPED,
            "이미 배송시작이 등록된 거래입니다.",
        )),
        Some((_, shipped)) => {
            *shipped = true;
            let mut reply = Reply::ok();
            reply.set("tno", tno);
            Ok(reply)
        }
        None => Err(Refusal::new(NOT_ESCROW, "에스크로 거래가 아닙니다.")),
    }
}

/// Registration codes of seed 000 (`Code`).
const MISSING: &str = "0001";
const BAD: &str = "0002";
const AUTH: &str = "0003";
/// A window result redeemed twice (documented sandbox code).
pub const WINDOW_REPLAYED: &str = "9530";
/// A window result unknown to the sandbox (documented sandbox code).
pub const WINDOW_UNKNOWN: &str = "9531";

fn reg_error(code: &str, msg: &str) -> Response {
    Json(serde_json::json!({"Code": code, "Message": msg})).into_response()
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// `POST /std/tradeReg/register` (JSON, certificate checked) and `POST /trade/register.do`
/// (older mobile endpoint: JSON or form, no certificate).
pub(crate) async fn register_std(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&body) {
        Ok(f) => f,
        Err(_) => return reg_error(BAD, "요청 형식 오류"),
    };
    let Ok(site_cd) = fields.site_cd() else {
        return reg_error(MISSING, "site_cd 누락");
    };
    if auth::authenticate(&s.ca, &fields, site_cd).is_err() {
        return reg_error(AUTH, "인증 실패");
    }
    let get = |k: &str| fields.optional(k).map(str::to_string);
    register(&s, &headers, get)
}

pub(crate) async fn register_mobile(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let map: HashMap<String, String> =
        match serde_json::from_slice::<HashMap<String, String>>(&body) {
            Ok(m) => m,
            Err(_) => form_fields(&body),
        };
    register(&s, &headers, |k| {
        map.get(k).cloned().filter(|v| !v.is_empty())
    })
}

fn register(s: &Shared, headers: &HeaderMap, get: impl Fn(&str) -> Option<String>) -> Response {
    let need = |k: &str| get(k).ok_or(k.to_string());
    let (site_cd, order_no, good_mny, good_name, pay_method, ret_url) = match (
        need("site_cd"),
        need("ordr_idxx"),
        need("good_mny"),
        need("good_name"),
        need("pay_method"),
        need("Ret_URL"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e), Ok(f)) => (a, b, c, d, e, f),
        _ => return reg_error(MISSING, "필수 파라미터 누락"),
    };
    let Ok(amount) = good_mny.parse::<i64>() else {
        return reg_error(BAD, "good_mny 형식 오류");
    };
    if order_no.len() > 40
        || !order_no.chars().all(|c| c.is_ascii_alphanumeric())
        || good_mny.len() > 12
    {
        return reg_error(BAD, "파라미터 형식 오류");
    }
    if !matches!(
        pay_method.as_str(),
        "CARD" | "BANK" | "VCNT" | "MOBX" | "TPNT" | "GIFT" | "AUTH"
    ) {
        return reg_error(BAD, "pay_method 오류");
    }
    let approval_key = format!(
        "{}=",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
    );
    let trace_no = format!(
        "{site_cd}{}",
        Alphanumeric
            .sample_string(&mut rand::thread_rng(), 11)
            .to_ascii_uppercase()
    );
    let trade = Trade {
        site_cd,
        order_no,
        amount,
        good_name,
        pay_method: pay_method.clone(),
        ret_url,
        escrow: get("escw_used").as_deref() == Some("Y"),
        trace_no: trace_no.clone(),
    };
    s.windows().trades.insert(approval_key.clone(), trade);
    let pay_url = format!("http://{}/pay/mobileGW.kcp", host_of(headers));
    Json(serde_json::json!({
        "Code": "0000", "Message": "정상처리", "approvalKey": approval_key, "traceNo": trace_no,
        "PayUrl": pay_url, "paymentMethod": pay_method, "request_URI": "/pay/mobileGW.kcp"
    }))
    .into_response()
}

fn escape(s: &str) -> String {
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

/// `POST /pay/mobileGW.kcp`: the window (spec §2.2 fields).
pub(crate) async fn window_page(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let key = get("approval_key");
    let Some(trade) = s.windows().trades.get(&key).cloned() else {
        return page(
            "오류",
            "<p id=\"error\">등록되지 않은 거래입니다. (approval_key)</p>",
        );
    };
    if get("traceNo") != trade.trace_no
        || get("ordr_idxx") != trade.order_no
        || get("good_mny") != trade.amount.to_string()
    {
        return page(
            "오류",
            "<p id=\"error\">거래정보가 등록 내용과 다릅니다.</p>",
        );
    }
    let quotaopt: u8 = get("quotaopt").parse().unwrap_or(0);
    let inputs = match trade.pay_method.as_str() {
        "CARD" | "AUTH" => {
            let mut q = String::from("<option value=\"00\">일시불</option>");
            if trade.amount >= 50_000 {
                for m in 2..=quotaopt.min(12) {
                    q.push_str(&format!("<option value=\"{m:02}\">{m}개월</option>"));
                }
            }
            format!(
                "<label>카드번호 <input id=\"card_no\" name=\"card_no\" inputmode=\"numeric\" autocomplete=\"off\"></label>\
                 <label>유효기간(YYMM) <input id=\"card_expiry\" name=\"card_expiry\" maxlength=\"4\"></label>\
                 <label>할부 <select id=\"quota\" name=\"quota\">{q}</select></label>"
            )
        }
        "BANK" | "VCNT" => "<label>은행 <select id=\"bank\" name=\"bank\"><option value=\"BK04\">국민은행</option>\
             <option value=\"BK20\">우리은행</option><option value=\"BK88\">신한은행</option><option value=\"BK07\">수협</option></select></label>"
            .to_string(),
        "MOBX" => "<label>통신사 <select id=\"carrier\" name=\"carrier\"><option>SKT</option><option>KTF</option><option>LGT</option></select></label>\
             <label>휴대폰번호 <input id=\"mobile_no\" name=\"mobile_no\" inputmode=\"numeric\"></label>"
            .to_string(),
        _ => "<label>번호/PIN <input id=\"pin\" name=\"pin\"></label>".to_string(),
    };
    let hidden = [
        "approval_key",
        "param_opt_1",
        "param_opt_2",
        "param_opt_3",
        "buyr_name",
        "buyr_tel1",
        "buyr_tel2",
        "buyr_mail",
        "batch_cardno_return_yn",
        "escw_used",
        "kcp_group_id",
    ]
    .iter()
    .map(|k| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(&get(k))
        )
    })
    .collect::<String>();
    page(
        "KCP 결제",
        &format!(
            "<p>{} — <strong>{}원</strong></p><form id=\"window\" method=\"post\" action=\"/pay/submit\">{hidden}{inputs}\
             <button id=\"pay\" type=\"submit\" name=\"action\" value=\"pay\">결제하기</button>\
             <button id=\"cancel\" type=\"submit\" name=\"action\" value=\"cancel\">취소</button></form>",
            escape(&trade.good_name),
            trade.amount
        ),
    )
}

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

/// The auto-submitting form that brings the window's result to `Ret_URL` (spec §2.3).
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
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body><form id=\"ret\" method=\"post\" action=\"{}\" accept-charset=\"UTF-8\">{inputs}</form>\
         <script>document.getElementById('ret').submit();</script></body></html>",
        escape(ret_url)
    ))
    .into_response()
}

/// `POST /pay/submit`: the buyer paid or cancelled in the window.
pub(crate) async fn submit(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let key = get("approval_key");
    let Some(trade) = s.windows().trades.get(&key).cloned() else {
        return page("오류", "<p id=\"error\">등록되지 않은 거래입니다.</p>");
    };
    let mut out: Vec<(&str, String)> = vec![
        ("req_tx", "pay".into()),
        ("site_cd", trade.site_cd.clone()),
        ("ordr_idxx", trade.order_no.clone()),
        ("good_name", trade.good_name.clone()),
        ("good_mny", trade.amount.to_string()),
        ("buyr_name", get("buyr_name")),
        ("buyr_tel1", get("buyr_tel1")),
        ("buyr_tel2", get("buyr_tel2")),
        ("buyr_mail", get("buyr_mail")),
        ("param_opt_1", get("param_opt_1")),
        ("param_opt_2", get("param_opt_2")),
        ("param_opt_3", get("param_opt_3")),
        (
            "escw_used",
            if trade.escrow { "Y".into() } else { "N".into() },
        ),
        (
            "tran_cd",
            if trade.pay_method == "AUTH" {
                "00300001".into()
            } else {
                "00100000".into()
            },
        ),
        ("use_pay_method", bitmask(&trade.pay_method).into()),
    ];
    let refuse = |mut out: Vec<(&str, String)>, code: &str, msg: &str| {
        out.push(("res_cd", code.to_string()));
        out.push(("res_msg", msg.to_string()));
        post_back(&trade.ret_url, &out)
    };
    if get("action") == "cancel" {
        return refuse(out, "3001", "사용자가 취소하였습니다");
    }
    let mut result = WindowResult {
        approval_key: key.clone(),
        method: trade.pay_method.clone(),
        card_no: None,
        quota: "00".into(),
        bank: None,
        mobile_no: None,
        group_id: get("kcp_group_id"),
        redeemed: false,
    };
    match trade.pay_method.as_str() {
        "CARD" | "AUTH" => {
            let card_no: String = get("card_no")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            if let Err(r) = check_card_number(&card_no) {
                return refuse(out, r.code, &r.message);
            }
            if let Err(r) = check_expiry(&s, &get("card_expiry")) {
                return refuse(out, r.code, &r.message);
            }
            let issuer = test_cards::issuer(&card_no);
            if trade.pay_method == "CARD" {
                if let Err(r) = issuer_decides(&s, &issuer) {
                    return refuse(out, r.code, &r.message);
                }
            }
            if get("batch_cardno_return_yn") == "Y" {
                out.push(("card_mask_no", test_cards::mask(&card_no)));
            }
            result.quota = Some(get("quota"))
                .filter(|q| !q.is_empty())
                .unwrap_or_else(|| "00".into());
            result.card_no = Some(card_no);
        }
        "BANK" | "VCNT" => {
            result.bank = Some(
                Some(get("bank"))
                    .filter(|b| !b.is_empty())
                    .unwrap_or_else(|| "BK04".into()),
            )
        }
        "MOBX" => {
            let no: String = get("mobile_no")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            if no.len() < 10 {
                return refuse(out, codes::INVALID_FIELD, "휴대폰번호 형식 오류");
            }
            result.mobile_no = Some(no);
        }
        _ => {
            if get("pin").trim().is_empty() {
                return refuse(out, codes::INVALID_FIELD, "번호를 입력해 주세요");
            }
        }
    }
    let enc_data = Alphanumeric.sample_string(&mut rand::thread_rng(), 48);
    let enc_info = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    s.windows().results.insert(enc_data.clone(), result);
    out.push(("res_cd", "0000".into()));
    out.push(("res_msg", "정상처리".into()));
    out.push(("enc_data", enc_data));
    out.push(("enc_info", enc_info));
    out.push(("ordr_chk", format!("{}|{}", trade.order_no, trade.amount)));
    out.push(("cash_yn", "N".into()));
    post_back(&trade.ret_url, &out)
}

fn pay_type_of(method: &str) -> &'static str {
    match method {
        "CARD" => "PACA",
        "BANK" => "PABK",
        "VCNT" => "PAVC",
        "MOBX" => "PAMC",
        "TPNT" => "PAPT",
        _ => "PATK",
    }
}

/// `POST /gw/enc/v1/payment`: redeems a window result once (spec §2.4).
pub(crate) async fn approve_window(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match handle_approval(&s, &body) {
        Ok(r) => r.into_response(),
        Err(r) => r.into_response(),
    }
}

fn handle_approval(s: &Shared, body: &Bytes) -> Result<Reply, Refusal> {
    let fields = Fields::parse(body)?;
    let site_cd = fields.site_cd()?;
    auth::authenticate(&s.ca, &fields, site_cd)?;
    let tran_cd = fields.required("tran_cd")?;
    let enc_data = fields.required("enc_data")?;
    fields.required("enc_info")?;
    let (result, trade) = {
        let mut guard = s.windows();
        let book = &mut *guard;
        let result = book
            .results
            .get_mut(enc_data)
            .ok_or_else(|| Refusal::new(WINDOW_UNKNOWN, "결제창 결과를 찾을 수 없습니다."))?;
        if result.redeemed {
            return Err(Refusal::new(
                WINDOW_REPLAYED,
                "이미 승인 요청된 결제창 결과입니다.",
            ));
        }
        let snapshot = result.clone();
        let trade = book
            .trades
            .get(&snapshot.approval_key)
            .cloned()
            .ok_or_else(|| Refusal::new(WINDOW_UNKNOWN, "거래 정보가 없습니다."))?;
        if trade.site_cd != site_cd {
            return Err(Refusal::new(
                WINDOW_UNKNOWN,
                "다른 상점의 결제창 결과입니다.",
            ));
        }
        if tran_cd != "00300001" {
            let ordr_mony: i64 = fields
                .required("ordr_mony")?
                .parse()
                .map_err(|_| Refusal::new(codes::AMOUNT_ERROR, "ordr_mony 형식 오류"))?;
            if ordr_mony != trade.amount {
                return Err(Refusal::new(codes::AMOUNT_MISMATCH, "결제금액 불일치"));
            }
            if fields.required("pay_type")? != pay_type_of(&snapshot.method) {
                return Err(Refusal::new(
                    codes::PAY_METHOD_ERROR,
                    "pay_type이 결제수단과 다릅니다.",
                ));
            }
        }
        result.redeemed = true;
        (snapshot, trade)
    };
    if tran_cd == "00300001" {
        let card_no = result.card_no.clone().unwrap_or_default();
        let issuer = test_cards::issuer(&card_no);
        let batch_key = crate::batch::issue_from_window(s, site_cd, &result.group_id, &card_no);
        let mut reply = Reply::ok();
        reply
            .set("batch_key", batch_key.as_str())
            .set("card_cd", issuer.card_cd)
            .set("card_name", issuer.card_name)
            .set("card_bank_cd", issuer.bank_cd)
            .set("card_bin_type_01", "0")
            .set("card_bin_type_02", issuer.bin_type_02)
            .set("card_mask_no", test_cards::mask(&card_no));
        return Ok(reply);
    }
    let order = CardOrder {
        order_no: &trade.order_no,
        amount: trade.amount,
        quota: &result.quota,
    };
    let mut ledger = s.ledger();
    if result.method == "CARD" {
        let card_no = result.card_no.clone().unwrap_or_default();
        let issuer = test_cards::issuer(&card_no);
        let card = card_summary(&issuer, test_cards::mask(&card_no), &result.quota);
        let mut approval = approve(s, &mut ledger, site_cd, &order, card, &issuer)?;
        if trade.escrow {
            approval.reply.set("escw_yn", "Y");
            s.windows()
                .escrow
                .insert(approval.tno.clone(), (site_cd.to_string(), false));
        }
        return Ok(approval.reply);
    }
    if ledger.order_is_live(site_cd, &trade.order_no) {
        return Err(Refusal::new(
            codes::DUPLICATE_ORDER,
            "이미 승인된 주문번호입니다.",
        ));
    }
    let now = s.now();
    let app_time = kcp_time(now);
    let pay_type = pay_type_of(&result.method);
    let entry = LedgerEntry {
        tno: ledger.new_tno(&app_time[..8]),
        site_cd: site_cd.to_owned(),
        order_no: trade.order_no.clone(),
        pay_method: pay_type.to_owned(),
        amount: trade.amount,
        balance: trade.amount,
        state: TransactionState::Approved,
        app_time: app_time.clone(),
        app_no: ledger::new_app_no(),
        trace_no: trade.trace_no.clone(),
        approved_at: now,
        card: None,
        point: None,
        cancels: Vec::new(),
        reapproved_by: None,
        reapproval_of: None,
    };
    let amount = trade.amount.to_string();
    let mut reply = Reply::ok();
    reply
        .set("res_en_msg", "processing completed")
        .set("tno", entry.tno.as_str())
        .set("amount", amount.as_str())
        .set("order_no", trade.order_no.as_str())
        .set("pay_method", pay_type)
        .set("app_time", app_time.as_str())
        .set("trace_no", trade.trace_no.as_str())
        .set("escw_yn", if trade.escrow { "Y" } else { "N" });
    let bank_name = |code: &str| match code {
        "BK20" => "우리은행",
        "BK88" => "신한은행",
        "BK07" => "수협",
        _ => "국민은행",
    };
    match result.method.as_str() {
        "BANK" => {
            let code = result.bank.clone().unwrap_or_default();
            reply
                .set("bank_code", code.as_str())
                .set("bank_name", bank_name(&code))
                .set("bk_mny", amount.as_str());
        }
        "VCNT" => {
            let code = result.bank.clone().unwrap_or_default();
            let due = kcp_time(now + chrono::Duration::days(7));
            let account = format!("T{:013}", rand::random::<u64>() % 10_000_000_000_000);
            reply
                .set("bankcode", code.as_str())
                .set("bankname", bank_name(&code))
                .set("account", account.as_str())
                .set("depositor", "한국사이버결제")
                .set("va_name", "구매자")
                .set("va_date", format!("{}235959", &due[..8]));
            s.windows().accounts.insert(entry.tno.clone(), account);
        }
        "MOBX" => {
            reply
                .set("commid", "SKT")
                .set("mobile_no", result.mobile_no.clone().unwrap_or_default());
        }
        "TPNT" => {
            reply
                .set("pnt_issue", "SCSK")
                .set("pnt_amount", amount.as_str())
                .set("use_pnt", amount.as_str())
                .set("pnt_app_time", app_time.as_str())
                .set("pnt_app_no", entry.app_no.as_str());
        }
        _ => {
            reply
                .set("tk_van_code", "SCCL")
                .set("tk_app_no", entry.app_no.as_str())
                .set("tk_app_time", app_time.as_str());
        }
    }
    if trade.escrow {
        s.windows()
            .escrow
            .insert(entry.tno.clone(), (site_cd.to_string(), false));
    }
    tracing::info!(tno = %entry.tno, site_cd, order_no = %trade.order_no, pay_type, "kcp sandbox approved a window payment");
    ledger.insert(entry);
    Ok(reply)
}
