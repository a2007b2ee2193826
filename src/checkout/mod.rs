//! Browser-facing checkout: the `IMP` script, request_pay's server side, the hand-off page that
//! posts to KCP's window, `Ret_URL`, and the answer to the browser (callback or redirect).
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;
use tower_http::cors::{Any, CorsLayer};

use crate::api::envelope::{json_response, ok};
use crate::api::error::ApiError;
use crate::api::extract;
use crate::api::notifications::Peer;
use crate::app::{AppState, PublicUrls};
use crate::domain::checkout::{window_plan, WindowMethod};
use crate::domain::order;
use crate::domain::payment::{
    check_notice_urls, MAX_AMOUNT, PG_KCP, PG_KCP_BILLING, TAX_FREE_UNSUPPORTED,
};
use crate::net::AddressList;
use crate::service::checkout::{CheckoutFinish, CheckoutRequest, HandOff, Rsp, WindowFields};
use crate::service::pay::ChargeOrder;
use crate::service::ServiceError;

/// The SDK, embedded so the binary serves exactly the file the browser suite tests.
const IAMPORT_JS: &str = include_str!("../../js-sdk/src/iamport.js");
/// The demo shop (test mode): seed 000's point-purchase page.
const DEMO_HTML: &str = include_str!("../../js-sdk/demo/index.html");

pub fn router() -> Router<AppState> {
    // Merchant pages call these from their own origin (a preflighted JSON POST): the CORS layer
    // wraps the routes so it answers the preflight before method routing does.
    let cross_origin = Router::new()
        .route("/checkout/request", post(request).options(preflight))
        .route(
            "/checkout/session/{token}/cancel",
            post(cancel).options(preflight),
        )
        .route("/checkout/session/{token}/status", get(status))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any),
        );
    Router::new()
        .route("/js/iamport.js", get(script))
        // iamport's own script paths, so a page only has to change the host.
        .route("/v1/iamport.js", get(script))
        .route("/js/{file}", get(versioned_script))
        .route("/checkout/session/{token}", get(hand_off))
        .route("/checkout/kcp/return", post(kcp_return))
        .route("/", get(demo))
        .route("/demo/api/verify/{imp_uid}", get(verify))
        .merge(cross_origin)
}

/// Answered by the CORS layer; the route exists so OPTIONS reaches it.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn script() -> Response {
    let mut res = IAMPORT_JS.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=UTF-8"),
    );
    res
}

/// iamport's versioned script names (`/js/iamport.payment-1.1.5.js`, `…-1.1.8.js`, `…-1.2.0.js`,
/// each still loaded by merchant pages in the wild) and the minified names of these and of
/// `iamport.js` (`/js/iamport.min.js`, `/js/iamport.payment-1.2.0.min.js`), which the SDK's own
/// base detection (`SCRIPT_PATH` in js-sdk/src/iamport.js) takes for its paths: a page only
/// changes the host. Every one is the one SDK, unminified. Anything else under `/js/` is the API's
/// 404.
async fn versioned_script(Path(file): Path<String>) -> Response {
    let stem = file
        .strip_suffix(".js")
        .map(|stem| stem.strip_suffix(".min").unwrap_or(stem));
    let is_version = |v: &str| {
        !v.is_empty()
            && v.split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    };
    let is_sdk = stem.is_some_and(|stem| {
        stem == "iamport"
            || stem
                .strip_prefix("iamport.payment-")
                .is_some_and(is_version)
    });
    if is_sdk {
        script().await
    } else {
        crate::api::not_found().await.into_response()
    }
}

async fn demo(State(s): State<AppState>) -> Response {
    if !s.gateway.settings.test_mode {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(DEMO_HTML).into_response()
}

/// The base of the URLs this request hands out (`Ret_URL`, the hand-off page), which the buyer's
/// browser must reach: `OPENPORT_PUBLIC_URL` when configured. Otherwise the request's `Host`,
/// which the client writes, so only in test mode or when it names this machine (a loopback
/// address or `localhost`); its scheme is `https` only when a trusted proxy
/// (`OPENPORT_TRUSTED_PROXIES`) says so in `X-Forwarded-Proto` (docs/operations.md "Public URL").
fn public_base(
    urls: &PublicUrls,
    test_mode: bool,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    proxies: &AddressList,
) -> Result<String, NoPublicBase> {
    if let Some(base) = &urls.configured {
        return Ok(base.clone());
    }
    let authority: axum::http::uri::Authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse().ok())
        .filter(|a: &axum::http::uri::Authority| !a.as_str().contains('@'))
        .ok_or(NoPublicBase::MalformedHost)?;
    if !(test_mode || is_loopback_host(authority.host())) {
        return Err(NoPublicBase::Unconfigured);
    }
    let from_proxy = peer.is_some_and(|ip| match proxies {
        AddressList::Only(list) => !list.is_empty() && proxies.contains(ip),
        AddressList::Any => false,
    });
    let https = from_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    Ok(format!("{scheme}://{}", authority.as_str()))
}

/// Why a request has no base for the URLs it would hand out.
#[derive(Debug, PartialEq, Eq)]
enum NoPublicBase {
    /// The request's `Host` is missing or no `host[:port]` (a path, credentials, quotes…): the
    /// client's error, answered 400; with a configured public URL it does not matter.
    MalformedHost,
    /// Outside test mode, without `OPENPORT_PUBLIC_URL`, a `Host` that is not this machine: the
    /// operator's to fix, answered 503 and logged.
    Unconfigured,
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Deserialize)]
struct RequestBody {
    imp_code: Option<String>,
    params: Option<Value>,
    #[serde(default)]
    mobile: bool,
    page_url: Option<String>,
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value is not an integer (a fraction, text, an object…).
#[derive(Debug, PartialEq, Eq)]
struct NotAnInteger;

/// An integer param as a page sends it: a JSON integer, a number without a fraction (JavaScript
/// has no other kind: `1e3` is 1000), or a string of digits. None when absent or null. A whole
/// number beyond `i64` saturates (`1e20` → `i64::MAX`), so the range check that follows names the
/// ceiling instead of taking the number for something else.
fn int(v: &Value, k: &str) -> Result<Option<i64>, NotAnInteger> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or(NotAnInteger),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| NotAnInteger),
        Some(_) => Err(NotAnInteger),
    }
}

/// An identifier (`merchant_uid`, `customer_uid`) as a page sends it: a string, or a number it
/// computed; empty is none, as absent. Another type is refused rather than taken as none: the
/// merchant meant an identifier, and a payment under another one could not be found by it.
fn id_text(v: &Value, k: &str) -> Result<Option<String>, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{k} 값은 문자열이어야 합니다.")),
    }
}

/// A flag (`escrow`, `digital`): `true`, `false`, or absent/null (false). iamport's SDK types them
/// `boolean`; anything else (`"true"`, `"Y"`, `1`) is refused rather than guessed, since escrow
/// changes how KCP holds the money and a guess either way is a payment the merchant did not ask
/// for.
fn flag(v: &Value, k: &str) -> Result<bool, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{k} 값은 true 또는 false여야 합니다.")),
    }
}

/// iamport `kcpProducts`: an array of `{orderNumber, name, quantity, amount}` (quantity 1 when
/// absent, amount 0). KCP's `good_info` carries them as given (spec/kcp.md §2.11), so what is not
/// a product is refused, not passed on: an item that is no object, a quantity below 1, an amount
/// below 0, either above KCP's 12 digits or not an integer.
fn products(p: &Value) -> Result<Vec<(String, String, i64, i64)>, String> {
    let items = match p.get("kcpProducts") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(
            "kcpProducts는 상품 객체({orderNumber, name, quantity, amount})의 배열이어야 합니다."
                .into(),
        ),
    };
    let in_range = |item: &Value, i: usize, k: &str, default: i64, min: i64| {
        match int(item, k) {
            Ok(n) => Some(n.unwrap_or(default)),
            Err(NotAnInteger) => None,
        }
        .filter(|n| (min..=MAX_AMOUNT).contains(n))
        .ok_or_else(|| {
            format!("kcpProducts[{i}].{k}는 {min} 이상 {MAX_AMOUNT} 이하의 정수여야 합니다.")
        })
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if !item.is_object() {
                return Err(format!(
                    "kcpProducts[{i}]는 상품 객체({{orderNumber, name, quantity, amount}})여야 합니다."
                ));
            }
            Ok((
                text(item, "orderNumber").unwrap_or_default(),
                text(item, "name").unwrap_or_default(),
                in_range(item, i, "quantity", 1, 1)?,
                in_range(item, i, "amount", 0, 0)?,
            ))
        })
        .collect()
}

/// The merchant page's address as the SDK reported it (`location.href`), kept only when it is an
/// http(s) URL: it becomes a mobile buyer's way back (a redirect) and the origin results are
/// posted to, so anything else (`javascript:`, `data:`, a file) is taken as no page at all.
fn web_page(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u.into(),
        _ => String::new(),
    }
}

fn origin_of(url: &str) -> String {
    let rest = url.split_once("://");
    match rest {
        Some((scheme, r)) => format!("{scheme}://{}", r.split('/').next().unwrap_or("")),
        None => String::new(),
    }
}

/// iamport's `vbank_due` (Korea time), in the forms PortOne's SDK documents: `YYYY-MM-DD` and
/// `YYYYMMDD` (through that day), `YYYY-MM-DD HH:mm:ss`, `YYYYMMDDHHmm` (through that minute) and
/// `YYYYMMDDHHmmss`; also `YYYY-MM-DD HH:mm` and Unix seconds (10 digits, as `POST /vbanks` takes).
fn vbank_due(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDateTime, TimeZone};
    let s = s.trim();
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        return chrono::DateTime::from_timestamp(s.parse().ok()?, 0);
    }
    // `YYYY-MM-DD HH:mm:ss` → `YYYYMMDDHHmmss`: separators only where the form puts them.
    let digits: String = match s.len() {
        10 | 16 | 19 => {
            let b = s.as_bytes();
            let at = |i: usize, c: u8| b.get(i) == Some(&c);
            let shaped = at(4, b'-')
                && at(7, b'-')
                && (s.len() == 10 || (at(10, b' ') || at(10, b'T')) && at(13, b':'))
                && (s.len() != 19 || at(16, b':'));
            if !shaped {
                return None;
            }
            s.chars().filter(char::is_ascii_digit).collect()
        }
        _ => s.to_string(),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = match digits.len() {
        8 => format!("{digits}235959"),
        12 => format!("{digits}59"),
        14 => digits,
        _ => return None,
    };
    let naive = NaiveDateTime::parse_from_str(&local, "%Y%m%d%H%M%S").ok()?;
    crate::domain::KST
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The channel a request's `pg` names (`kcp`, `kcp_billing`, in any case) and the KCP site code
/// after its dot (`kcp.{site_cd}`: iamport's way to pick one of a merchant's KCP sites; KCP's site
/// codes are upper case), checked against the merchant's when the window is opened. A `pg` of another PG (`html5_inicis`, `tosspayments`, …) is refused: openport has KCP
/// only, and opening KCP's window instead would record a payment the merchant's code believes
/// went elsewhere. No `pg` is the merchant's default channel.
fn pg_channel(pg: &str) -> Result<(String, Option<String>), String> {
    // The rule every call taking a `pg` shares with the REST API's (domain/pg.rs).
    crate::domain::pg::channel(pg).map_err(|e| e.to_string())
}

/// Whether a request opens KCP's billing-key window (seed 004, "비인증 결제창 요청"): KCP issues
/// a key there and never charges ("실제 승인은 이루어지지 않습니다"), whatever amount it shows, while
/// its payment window charges and never issues a key. So a request must not carry a
/// customer_uid and be charged without a key:
/// - `kcp_billing` (or `kcp_billing.{site_cd}`) is the billing window, and needs customer_uid;
/// - customer_uid without a pg (the merchant's default channel, per the seed) opens it too;
/// - on `kcp` (the payment window's channel) customer_uid is taken as a key request only with
///   amount 0; with an amount the merchant expects a charge KCP's billing window would not make,
///   so it is refused with the way that works (issue on `kcp_billing`, charge with `again`).
fn billing_window(channel: &str, has_customer_uid: bool, amount: i64) -> Result<bool, String> {
    if channel == PG_KCP_BILLING {
        if !has_customer_uid {
            return Err("kcp_billing 결제창에는 customer_uid가 필요합니다.".into());
        }
        return Ok(true);
    }
    if !has_customer_uid {
        return Ok(false);
    }
    if channel == PG_KCP && amount != 0 {
        return Err(
            "KCP 결제창은 customer_uid로 빌링키를 발급하지 않습니다: pg 'kcp_billing'으로 \
                    빌링키를 발급한 뒤 REST API(/subscribe/payments/again)로 결제해 주세요."
                .into(),
        );
    }
    Ok(true)
}

/// `m_redirect_url` as the merchant page meant it: a relative URL is resolved against the page
/// (`page_url`, the SDK's `location.href`) now, since the redirect is answered from openport's
/// `Ret_URL`, where the browser would resolve it against openport's host. Only http(s): the
/// buyer's browser is sent there.
fn resolve_redirect(url: &str, page_url: &str) -> Result<String, String> {
    let resolved = match reqwest::Url::parse(page_url) {
        Ok(page) if matches!(page.scheme(), "http" | "https") => page.join(url.trim()),
        _ => reqwest::Url::parse(url.trim()),
    };
    match resolved {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u.into()),
        _ => Err(
            "m_redirect_url은 http(s) 주소이거나 결제 페이지 기준의 상대 주소여야 합니다.".into(),
        ),
    }
}

/// RequestPayParams (spec §6) → a checkout request; a refusal carries iamport's envelope. The
/// identifiers and the amount follow the REST API's rules ([`crate::domain::order`]), so nothing
/// opens here that a REST charge would refuse.
fn parse(
    p: &Value,
    merchant_uid: String,
    mobile: bool,
    page_url: &str,
) -> Result<CheckoutRequest, String> {
    let merchant_uid = order::merchant_uid(Some(merchant_uid)).map_err(|e| e.to_string())?;
    let amount = int(p, "amount")
        .map_err(|NotAnInteger| "amount는 정수여야 합니다.".to_string())?
        .ok_or_else(|| order::OrderFieldError::AmountMissing.to_string())?;
    // Mixed taxation (comm_free_mny, spec/kcp.md §6) is for KCP's TG03-contracted sites only and
    // is not sent: refused rather than dropped, or the tax-free part would be taxed.
    let no_tax_free = match p.get("tax_free") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s.trim().is_empty() => true,
        Some(_) => int(p, "tax_free") == Ok(Some(0)),
    };
    if !no_tax_free {
        return Err(TAX_FREE_UNSUPPORTED.into());
    }
    let pay_method = text(p, "pay_method").unwrap_or_else(|| "card".into());
    if crate::domain::checkout::EASY_PAY_METHODS.contains(&pay_method.as_str()) {
        return Err(easy_pay_refused(&pay_method));
    }
    let customer_uid = id_text(p, "customer_uid")?
        .map(order::customer_uid)
        .transpose()
        .map_err(|e| e.to_string())?;
    let (channel, pg_site_cd) = pg_channel(&text(p, "pg").unwrap_or_default())?;
    let billing = billing_window(&channel, customer_uid.is_some(), amount)?;
    // A billing-key window may show 0 (it charges nothing); a payment window takes REST's range.
    let amount =
        order::amount(Some(amount), if billing { 0 } else { 1 }).map_err(|e| e.to_string())?;
    if billing && pay_method != "card" {
        return Err("빌링키 발급 결제창(customer_uid)은 pay_method 'card'만 지원합니다.".into());
    }
    let currency = order::currency(text(p, "currency"))
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| "KRW".into());
    let notice_url = crate::domain::text::string_list(p.get("notice_url").cloned())
        .map_err(|e| format!("notice_url: {e}"))?;
    check_notice_urls(&notice_url)?;
    let custom_data = match p.get("custom_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    };
    let products = products(p)?;
    let escrow = flag(p, "escrow")?;
    let digital = flag(p, "digital")?;
    // Only a virtual account has a deadline: public integrations pass the `'YYYYMMDD'`
    // placeholder with every pay method, and a card payment must not be refused for it. On a
    // virtual account a value in none of the forms (that placeholder, say) is taken as absent,
    // KCP's default deadline, with a warning: a refusal would keep the shop's vbank option from
    // ever opening a window, where iamport's page pays. A deadline that reads is still checked.
    let vbank_due = match text(p, "vbank_due") {
        Some(d) if pay_method == "vbank" => {
            let due = vbank_due(&d);
            if due.is_none() {
                tracing::warn!(
                    %merchant_uid,
                    "vbank_due is in no form openport reads; KCP's default deposit deadline applies"
                );
            }
            due
        }
        _ => None,
    };
    // Card options (`display.card_quota`, `card`, `appCard`) mean something to a card window
    // only (the billing-key window is one): a page builds one params object for its method
    // picker, so a bank transfer, virtual account, phone or gift payment ignores them, as iamport
    // does, rather than being refused for an option it never uses (as `vbank_due` above).
    let card_window = matches!(
        window_plan(&pay_method, billing).map(|w| w.method),
        Some(WindowMethod::Card | WindowMethod::BatchKey)
    );
    let (card_quota, used_card) = if card_window {
        (card_quota(p)?, card_detail(p)?)
    } else {
        (None, Vec::new())
    };
    if card_window && flag(p, "appCard")? {
        return Err(
            "appCard(앱카드 결제만 노출)는 지원하지 않습니다: KCP 결제창에 앱카드만 보이게 하는 \
             설정이 없어, 다른 결제 방식도 열린 결제창이 됩니다."
                .into(),
        );
    }
    korean_window(p, &merchant_uid);
    app_scheme_not_sent(p, &merchant_uid);
    let shop_name = match text(p, "company") {
        Some(company) => Some(
            crate::domain::text::for_kcp("company", &company, SHOP_NAME_MAX_BYTES)
                .map_err(|e| e.to_string())?,
        )
        .filter(|name| !name.is_empty()),
        None => None,
    };
    Ok(CheckoutRequest {
        order: ChargeOrder {
            merchant_uid,
            amount,
            currency,
            name: text(p, "name"),
            buyer_name: text(p, "buyer_name"),
            buyer_email: text(p, "buyer_email"),
            buyer_tel: text(p, "buyer_tel"),
            buyer_addr: text(p, "buyer_addr"),
            buyer_postcode: text(p, "buyer_postcode"),
            custom_data,
            notice_url,
            customer_uid,
            ..ChargeOrder::default()
        },
        pay_method,
        billing,
        pg_site_cd,
        escrow,
        products,
        card_quota,
        used_card,
        shop_name,
        shop_user_id: p.get("bypass").and_then(|b| text(b, "shop_user_id")),
        confirm_url: text(p, "confirm_url"),
        // Mobile only: the PC answer is the overlay's callback and never redirects, and iamport
        // ignores it on PC (seed 001 §2.1), so an app-scheme URL, or a relative one from a page
        // that is not http(s) (an app shell, `file://`), must not refuse a PC payment.
        redirect_url: match text(p, "m_redirect_url") {
            Some(url) if mobile => Some(resolve_redirect(&url, page_url)?),
            _ => None,
        },
        mobile,
        page_origin: origin_of(page_url),
        page_url: without_result(page_url),
        digital,
        vbank_due,
    })
}

/// The most instalment months KCP's window offers (`quotaopt` 0–12, spec/kcp.md §2.2).
const MAX_QUOTA_MONTHS: u8 = 12;

/// `display.card_quota`, the instalment months the window may offer (`[]`: lump sum only;
/// iamport's manual types it `array of integer`). Months are integers or digit strings (pages
/// build the array from `<option value>` text) from 0 to 12; anything else, and a value that is
/// not an array, is refused before the window, naming the field. Nothing is dropped: a month
/// left out could leave `[]`, KCP's "lump sum only", the most restrictive window, and a bare
/// number ignored would leave KCP's default of up to 12 months; either offers the buyer other
/// terms than the merchant's page shows. A month over 12 is out of `quotaopt`'s range.
fn card_quota(p: &Value) -> Result<Option<Vec<u8>>, String> {
    let refused = || format!("display.card_quota는 0~{MAX_QUOTA_MONTHS} 정수의 배열이어야 합니다.");
    let months = match p.get("display").and_then(|d| d.get("card_quota")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(months)) => months,
        Some(_) => return Err(refused()),
    };
    months
        .iter()
        .map(|m| {
            let month = match m {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => {
                    let s = s.trim();
                    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| s.parse::<u64>().ok())
                        .flatten()
                }
                _ => None,
            };
            month
                .and_then(|m| u8::try_from(m).ok())
                .filter(|m| *m <= MAX_QUOTA_MONTHS)
                .ok_or_else(refused)
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(Some)
}

/// Why an easy-pay `pay_method` is refused. KCP's window would open as its plain card window
/// (the fields that open it on an easy pay are not in spec/kcp.md), and recording the easy pay
/// would tell the merchant, who reconciles fees or funds promotions on `emb_pg_provider`, that
/// it approved a payment no answer says it did; recording `card` instead would open a card
/// window under the page's easy-pay button. A refusal tells the merchant at once, before the
/// buyer sees anything: `card` opens KCP's card window, recorded as what it is.
fn easy_pay_refused(pay_method: &str) -> String {
    format!(
        "pay_method '{pay_method}'는 지원하지 않습니다: openport는 KCP 결제창을 간편결제로 바로 \
         열지 못합니다. pay_method 'card'로 KCP 카드 결제창을 열어 주세요."
    )
}

/// The longest shop name sent as KCP's `shop_name` (spec/kcp.md §2.2 gives no limit; 50 bytes,
/// `buyr_mail`'s, is an assumption that fits a shop's name).
const SHOP_NAME_MAX_BYTES: usize = 50;

/// `card`'s keys (seed 004 §3), before the window. `card.detail` ("특정 카드사 노출": entries
/// `{card_code, enabled}` applied in order, `card_code: '*'` for every card) becomes KCP's
/// `used_card`, the cards the window offers (spec/kcp.md §2.2): the KCP codes of the cards
/// enabled after a `'*'` disabled them all. What `used_card` cannot say is refused, naming the
/// key, rather than opening a window with cards the merchant did not allow: a card taken out of
/// all the others (KCP's field lists the cards offered, and openport does not know every card
/// KCP offers), nothing enabled, a `card_code` KCP's window has no code for. `card.direct`
/// (opening one card company's module directly) has no field in spec/kcp.md, and a window with
/// every card and every instalment plan is not what it asks for: refused. Empty: every card.
fn card_detail(p: &Value) -> Result<Vec<&'static str>, String> {
    let card = match p.get("card") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(card @ Value::Object(_)) => card,
        Some(_) => return Err("card는 {direct, detail} 객체여야 합니다.".into()),
    };
    if card.get("direct").is_some_and(|d| !d.is_null()) {
        return Err(
            "card.direct(카드사 결제창 바로 호출)는 지원하지 않습니다: openport는 KCP 결제창을 \
             카드사 모듈로 바로 열지 못합니다. 카드사는 card.detail로, 할부개월은 \
             display.card_quota로 지정해 주세요."
                .into(),
        );
    }
    let entries = match card.get("detail") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err("card.detail은 {card_code, enabled} 객체의 배열이어야 합니다.".into())
        }
    };
    // Every card is offered until an entry says otherwise, as at iamport.
    let mut all = true;
    let mut named: Vec<(String, bool)> = vec![];
    for (i, entry) in entries.iter().enumerate() {
        let (Some(code), Some(Value::Bool(enabled))) =
            (text(entry, "card_code"), entry.get("enabled"))
        else {
            return Err(format!(
                "card.detail[{i}]은 {{card_code: 문자열, enabled: true/false}}여야 합니다."
            ));
        };
        let code = code.trim().to_string();
        if code == "*" {
            all = *enabled;
            named.clear();
        } else {
            named.retain(|(c, _)| *c != code);
            named.push((code, *enabled));
        }
    }
    if all {
        if let Some((code, _)) = named.iter().find(|(_, enabled)| !enabled) {
            return Err(format!(
                "card.detail로 카드사({code})를 빼는 설정은 지원하지 않습니다: KCP 결제창에는 \
                 허용할 카드사만 지정할 수 있습니다. {{card_code: '*', enabled: false}} 뒤에 \
                 허용할 카드사를 enabled: true로 나열해 주세요."
            ));
        }
        return Ok(vec![]);
    }
    let mut used = vec![];
    for (code, _) in named.iter().filter(|(_, enabled)| *enabled) {
        let kcp = crate::domain::checkout::kcp_card_codes(code);
        if kcp.is_empty() {
            return Err(format!(
                "card.detail의 card_code '{code}'는 KCP 결제창에서 지정할 수 없는 카드사 코드입니다."
            ));
        }
        for k in kcp {
            if !used.contains(&k) {
                used.push(k);
            }
        }
    }
    if used.is_empty() {
        return Err("card.detail로 모든 카드사를 막으면 결제할 수 없습니다: 허용할 카드사를 enabled: true로 지정해 주세요.".into());
    }
    Ok(used)
}

/// `language`: KCP's window fields in spec/kcp.md have no language, so KCP's window is Korean
/// whatever is asked. Anything but Korean (`ko`, blank, or none), such as `en` (PortOne's KCP
/// guide: "en 설정시 영문으로 출력"), opens the Korean window with a warning rather than being
/// refused: a refusal would leave an English storefront written for iamport with no payment at
/// all. Called once per checkout request, so it warns once per checkout.
fn korean_window(p: &Value, merchant_uid: &str) {
    let korean = match p.get("language") {
        None | Some(Value::Null) => true,
        Some(Value::String(l)) => l.trim().is_empty() || l.trim().eq_ignore_ascii_case("ko"),
        Some(_) => false,
    };
    if !korean {
        tracing::warn!(
            %merchant_uid,
            "language other than 'ko' asked; KCP's window has no other language, opened in Korean"
        );
    }
}

/// `app_scheme`: seed 001 §3 has in-app integrations pass the app's scheme, so that a buyer comes
/// back to the app from an ISP or app-card app. KCP's window fields in spec/kcp.md have none, so
/// it is not sent: the checkout goes on as without it (a refusal would leave an app written for
/// iamport with no payment), with a warning per checkout, so that the merchant finds out from the
/// log, not from buyers left in the card app (docs/api.md).
fn app_scheme_not_sent(p: &Value, merchant_uid: &str) {
    let given = match p.get("app_scheme") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    };
    if given {
        tracing::warn!(
            %merchant_uid,
            "app_scheme asked; KCP's window has no field for it, not sent to KCP"
        );
    }
}

/// The longest `user_agent` kept: browsers send 100 to 300 characters; the rest of a longer one
/// tells nothing a merchant needs.
const USER_AGENT_MAX_CHARS: usize = 512;

/// The buyer's browser as its `User-Agent` header names it, cut to [`USER_AGENT_MAX_CHARS`];
/// None when absent, blank or not UTF-8.
fn buyer_user_agent(headers: &HeaderMap) -> Option<String> {
    let ua = headers
        .get(axum::http::header::USER_AGENT)?
        .to_str()
        .ok()?
        .trim();
    (!ua.is_empty()).then(|| ua.chars().take(USER_AGENT_MAX_CHARS).collect())
}

fn refusal(code: i32, message: String, merchant_uid: &str, imp_uid: Option<String>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({"code": code, "message": message, "response": {"imp_uid": imp_uid, "merchant_uid": merchant_uid}}),
    )
}

async fn request(
    State(s): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<RequestBody>(&body) else {
        return ApiError::bad_request("요청 본문(JSON)을 해석할 수 없습니다.").into_response();
    };
    let params = req.params.unwrap_or(Value::Null);
    // Optional, as at iamport: one is made up and reported in the rsp.
    let given_uid = id_text(&params, "merchant_uid");
    let merchant_uid = match &given_uid {
        Ok(Some(uid)) => uid.clone(),
        Ok(None) => crate::domain::ids::new_merchant_uid(s.gateway.clock.now()),
        Err(_) => String::new(),
    };
    let m = match s
        .gateway
        .merchant_by_code(req.imp_code.as_deref().unwrap_or(""))
        .await
    {
        Ok(m) => m,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut parsed = match given_uid.and_then(|_| {
        parse(
            &params,
            merchant_uid.clone(),
            req.mobile,
            &web_page(req.page_url.as_deref().unwrap_or("")),
        )
    }) {
        Ok(p) => p,
        Err(msg) => return refusal(-1, msg, &merchant_uid, None),
    };
    // The SDK posts this from the buyer's browser: its User-Agent is the payment's `user_agent`,
    // as iamport records it.
    parsed.order.user_agent = buyer_user_agent(&headers);
    let base = match public_base(
        &s.urls,
        s.gateway.settings.test_mode,
        &headers,
        peer,
        &s.notify_sources.proxies,
    ) {
        Ok(base) => base,
        Err(NoPublicBase::MalformedHost) => {
            // The client's mistake (or a probe), not the operator's: no ERROR, and never the
            // header's text in the log.
            tracing::warn!("checkout refused: the request's Host header is not a host[:port]");
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"code": -1,
                    "message": "요청의 Host 헤더가 올바르지 않아 결제창을 열 수 없습니다.",
                    "response": {"imp_uid": null, "merchant_uid": merchant_uid}}),
            );
        }
        Err(NoPublicBase::Unconfigured) => {
            tracing::error!(
                "checkout refused: OPENPORT_PUBLIC_URL is not set and the request's Host is not this machine"
            );
            // Logged just above, once (`api::failures`).
            return crate::api::failures::deliberate(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"code": -1,
                    "message": "openport의 공개 주소(OPENPORT_PUBLIC_URL)가 설정되지 않아 결제창을 열 수 없습니다.",
                    "response": {"imp_uid": null, "merchant_uid": merchant_uid}}),
            ));
        }
    };
    let return_url = format!("{base}/checkout/kcp/return");
    let gateway = s.gateway.clone();
    let started =
        tokio::spawn(async move { gateway.start_checkout(&m, parsed, &return_url).await }).await;
    match started {
        Ok(Ok(st)) => ok(serde_json::json!({
            "imp_uid": st.imp_uid,
            "merchant_uid": st.merchant_uid,
            "session": st.token,
            "start_url": format!("{base}/checkout/session/{}", st.token),
        }))
        .into_response(),
        Ok(Err(r)) => refusal(r.code, r.message, &merchant_uid, r.imp_uid),
        Err(e) => ApiError::from(crate::service::ServiceError::Internal(format!(
            "checkout task: {e}"
        )))
        .into_response(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The hand-off page: on mobile a form posted to KCP's `PayUrl` (spec/kcp.md §1.2 step 2), on
/// PC KCP's PC flow ([`pc_window_page`], §1.1). A window that ended is answered as `Ret_URL`
/// answered it ([`HandOff::Ended`], [`answer`]): a reload, or Back from the shop's result page,
/// never opens KCP's window again. On PC that is the result page, which hands the payment as
/// recorded to the overlay's page, so its `IMP.request_pay` callback runs as at any other end;
/// it sends the browser nowhere, so any browser may be shown it. On mobile it is the redirect to
/// `m_redirect_url`. The page carries the window's return key, so it is never stored.
///
/// Only the browser that opened a mobile window is sent on ([`opened_here`]): the request that
/// made the session names its `m_redirect_url` freely (anyone holding a merchant's public imp_code
/// can make one and end it through its cancel call), so an ended window's URL redirecting any
/// browser would be an open redirect on openport's own host. Any other browser is told the
/// payment ended, with no link ([`ended_page`]).
async fn hand_off(
    State(s): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let session = match s.gateway.hand_off(&token).await {
        Ok(HandOff::Open(x)) => *x,
        Ok(HandOff::Ended(f)) if !f.mobile || opened_here(&headers, &token) => {
            return no_store(answer_checked(&s, *f).await)
        }
        Ok(HandOff::Ended(_)) => return no_store(ended_page()),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let window: WindowFields = serde_json::from_str(&session.params).unwrap_or_default();
    let inputs: String = window
        .hand_off_fields(&token)
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let url = session.pay_url.as_deref().unwrap_or("");
    if window.pc_flow {
        let ret_url = window
            .fields
            .iter()
            .find(|(k, _)| k == "Ret_URL")
            .map_or("", |(_, v)| v.as_str());
        return no_store(Html(pc_window_page(url, ret_url, &inputs)).into_response());
    }
    let mut res = no_store(Html(mobile_hand_off_page(url, &inputs)).into_response());
    // `Secure` when the page was handed out over https: the URLs this request would hand out
    // are the ones the window's start made (`OPENPORT_PUBLIC_URL`, or a trusted proxy's
    // `X-Forwarded-Proto`). Over plain http (test mode, a loopback host) a browser would drop a
    // `Secure` cookie.
    let https = public_base(
        &s.urls,
        s.gateway.settings.test_mode,
        &headers,
        peer,
        &s.notify_sources.proxies,
    )
    .is_ok_and(|base| base.starts_with("https://"));
    let secure = if https { "; Secure" } else { "" };
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{}=1; Max-Age={WINDOW_COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}",
        window_cookie(&token)
    )) {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    res
}

/// What a browser other than the one that opened an ended mobile window is shown: that the
/// payment ended, as a whole page like the others, with no link and nothing of the payment.
fn ended_page() -> Response {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>결제 종료</title></head><body>\
         <p id=\"openport-ended\">이미 종료된 결제입니다.</p></body></html>",
    )
    .into_response()
}

/// How long the browser that opened a mobile window is remembered as its own (seconds): long
/// enough for a buyer who comes back to the hand-off page after paying in a bank or card app.
const WINDOW_COOKIE_MAX_AGE: u32 = 24 * 60 * 60;

/// The name of the cookie that marks the browser that opened window `token`: named after a
/// digest of the token (hex, so a valid cookie name), never the token itself, which is the
/// window's bearer capability (docs/security.md). The browser sends this cookie with every request
/// under the hand-off page's directory (`…/checkout/session/`; set without a `Path`, behind a
/// reverse proxy's path prefix too) for a day, including a plain-http one an attacker on the
/// network redirects it to once: named after the token, that request showed every window the
/// buyer opened that day. Its own domain (not [`return_key_of`]'s nor the stored digest), so the
/// name is neither.
///
/// [`return_key_of`]: crate::service::checkout::return_key_of
fn window_cookie(token: &str) -> String {
    let digest = crate::service::secrets::token_digest(&format!("openport window cookie\0{token}"));
    format!("openport_window_{}", &digest[..32])
}

/// Whether the request comes from the browser that opened window `token`'s hand-off page (it
/// carries [`window_cookie`]). Also under the name releases before 2026-12-06 gave it,
/// `openport_window_{token}`: a buyer who opened a window before an upgrade and comes back to its
/// hand-off page within the cookie's day is still sent on to `m_redirect_url`, not shown "이미
/// 종료된 결제입니다." with no way back to the shop. Nothing sets that name any more; only a
/// browser that was handed the token reads as its opener by it. It can go a release later.
fn opened_here(headers: &HeaderMap, token: &str) -> bool {
    let name = window_cookie(token);
    let before_the_digest = format!("openport_window_{token}");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| {
            pair.trim()
                .split_once('=')
                .is_some_and(|(k, _)| k == name || k == before_the_digest)
        })
}

/// `res` with `Cache-Control: no-store`.
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The mobile hand-off page: posts the window's form to KCP's `PayUrl` (`pay_url`). It submits
/// while the page is still loading, from an inline script, and must keep doing so (not from a
/// timer or `onload`): a form submitted before its document has completely loaded replaces that
/// document's history entry (HTML's form submission algorithm), so the page takes no place in the
/// history, and Back from KCP's window returns to the merchant page rather than to this page,
/// which would post to KCP again (or, restored from a back-forward cache, stay blank).
/// js-sdk/test/window-flows.test.mjs holds the browser to it.
fn mobile_hand_off_page(pay_url: &str, inputs: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>결제창으로 이동 중</title></head>\
         <body><form id=\"kcp_hand_off\" method=\"post\" action=\"{action}\" accept-charset=\"UTF-8\">{inputs}\
         <noscript><button type=\"submit\">결제창 열기</button></noscript></form>\
         <script>document.getElementById('kcp_hand_off').submit();</script></body></html>",
        action = escape(pay_url),
    )
}

/// The hand-off page of a PC checkout: KCP's PC flow (spec/kcp.md §1.1). `m_Completepayment` is
/// declared before KCP's script (`script_url`) loads; the page then calls
/// `KCP_Pay_Execute_Web(form)`, and KCP, once the buyer is done in the layer it renders in this
/// page, fills the form's answer inputs and calls `m_Completepayment`, which posts the form to
/// `Ret_URL` (`ret_url`) whatever the answer: a refusal or the buyer's close (`res_cd` 3001)
/// ends the payment there, as a mobile window's answer does. KCP's `GetField` copies an answer
/// handed over as another form or as JSON.
///
/// When KCP's script does not load (KCP down, a network or an ad-blocker dropping it: its
/// `onerror`, or no `KCP_Pay_Execute_Web` once it ran), or loads but its call throws before its
/// layer is in the page (a KCP-side script error, a broken deploy: when it throws, no element it
/// added is in the page outside the form, whose inputs it may fill in), the page ends the window
/// itself as a refusal in KCP's window ends it ([`KCP_UNREACHABLE_CODE`]), so the payment fails
/// with that reason and the merchant page's callback runs at once. Left to the overlay's ×, the
/// only way out of an empty page, an outage was recorded as the buyer's cancel (`3001`), which
/// pages take for a buyer who changed their mind. Nothing was sent to KCP: a window is approved
/// only from a result KCP answered. A throw once KCP's layer is up ends nothing: the buyer may be
/// paying in it.
fn pc_window_page(script_url: &str, ret_url: &str, inputs: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>결제창</title>\
         <script>function m_Completepayment(FormOrJson,closeEvent){{\
         var form=document.getElementById('order_info');\
         if(FormOrJson&&FormOrJson!==form&&typeof GetField==='function'){{GetField(form,FormOrJson);}}\
         if(form.res_cd.value!=='0000'&&typeof closeEvent==='function'){{try{{closeEvent();}}catch(e){{}}}}\
         form.submit();}}\
         function m_KcpUnavailable(){{\
         var form=document.getElementById('order_info');\
         if(!form){{document.addEventListener('DOMContentLoaded',m_KcpUnavailable);return;}}\
         if(m_KcpUnavailable.done){{return;}}m_KcpUnavailable.done=true;\
         document.getElementById('kcp_pc_error').hidden=false;\
         form.res_cd.value='{code}';form.res_msg.value='{message}';form.submit();}}</script>\
         <script src=\"{script}\" onerror=\"m_KcpUnavailable()\"></script></head>\
         <body><form id=\"order_info\" name=\"order_info\" method=\"post\" action=\"{action}\" accept-charset=\"UTF-8\">{inputs}</form>\
         <p id=\"kcp_pc_error\" hidden>{message}</p>\
         <script>(function(){{var form=document.getElementById('order_info');\
         if(typeof KCP_Pay_Execute_Web!=='function'){{m_KcpUnavailable();return;}}\
         var all=document.body.getElementsByTagName('*'),before=Array.prototype.slice.call(all);\
         try{{KCP_Pay_Execute_Web(form);}}catch(e){{\
         var shown=Array.prototype.some.call(all,function(el){{\
         return before.indexOf(el)<0&&!form.contains(el);}});\
         if(!shown){{m_KcpUnavailable();}}}}}})();</script></body></html>",
        script = escape(script_url),
        action = escape(ret_url),
        code = KCP_UNREACHABLE_CODE,
        message = KCP_UNREACHABLE_MESSAGE,
    )
}

/// The `res_cd` a PC hand-off page posts to `Ret_URL` when KCP's PC script did not load, or its
/// call threw before KCP's layer came up ([`pc_window_page`]): up to 4 letters or digits, as
/// KCP's codes, so every answer of the payment reads it back from its fail_reason (`[W001] …`)
/// as the code of a refusal in KCP's window. None of KCP's codes in spec/kcp.md.
const KCP_UNREACHABLE_CODE: &str = "W001";
/// Its `res_msg`, the fail_reason's text and what the buyer and the merchant page are told (no
/// quote, backslash or markup: it is written into the page's script and text as it is).
const KCP_UNREACHABLE_MESSAGE: &str = "KCP 결제창을 불러오지 못했습니다.";

/// The JSON endpoints (`cancel`, `status`, the demo's `verify`) take their path through
/// [`extract::Path`]: a segment that is not UTF-8 (`%ff`) gets the envelope the SDK parses, not
/// axum's plain text.
async fn cancel(
    State(s): State<AppState>,
    extract::Path(token): extract::Path<String>,
) -> Response {
    match s.gateway.cancel_checkout(&token).await {
        Ok(f) => ok(f.rsp).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The payment as it stands, read-only: what the SDK polls after the window answered `F500`
/// (`Gateway::checkout_status`).
async fn status(
    State(s): State<AppState>,
    extract::Path(token): extract::Path<String>,
) -> Response {
    match s.gateway.checkout_status(&token).await {
        Ok(f) => no_store(ok(f.rsp).into_response()),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn kcp_return(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = crate::api::notifications::decode_form(&headers, &body);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let gateway = s.gateway.clone();
    let posted = form.clone();
    let done = tokio::spawn(async move { gateway.complete_checkout(&posted).await }).await;
    match done {
        Ok(Ok(f)) => answer_checked(&s, f).await,
        Ok(Err(failed)) => {
            tracing::warn!(%request_id, "Ret_URL: {}", failed.error);
            match failed.checking {
                // The redirect is a mobile buyer's only way back to the shop: every end of the
                // window takes it, an outcome not known as "being checked" with the imp_uid.
                Some(checking) if checking.mobile => answer_checked(&s, checking).await,
                // A post that is not the window's (no such order, not its return key).
                None if matches!(failed.error, ServiceError::NotFound(_)) => {
                    return_error_page(&failed.error, &request_id)
                }
                _ => match stop_unanswered(&s, form, &request_id).await {
                    Some(f) => answer_checked(&s, f).await,
                    None => return_error_page(&failed.error, &request_id),
                },
            }
        }
        Err(e) => {
            tracing::error!(%request_id, "Ret_URL task: {e}");
            match stop_unanswered(&s, form, &request_id).await {
                Some(f) => answer_checked(&s, f).await,
                None => crate::api::failures::deliberate(
                    StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                ),
            }
        }
    }
}

/// [`crate::service::Gateway::stop_unanswered_window`] for the `Ret_URL` post `form` that could
/// not be answered: a PC window nothing came of is failed with a general message naming the
/// request id (the logged detail stays in the log), in a task of its own so that a browser
/// leaving does not cut it short.
async fn stop_unanswered(
    s: &AppState,
    form: Vec<(String, String)>,
    request_id: &str,
) -> Option<CheckoutFinish> {
    let reason = format!(
        "결제를 처리하는 중 오류가 발생하여 결제를 중단했습니다. 잠시 후 다시 시도해 주세요. \
         (요청번호: {request_id})"
    );
    let gateway = s.gateway.clone();
    tokio::spawn(async move { gateway.stop_unanswered_window(&form, reason).await })
        .await
        .ok()
        .flatten()
}

/// What the buyer's browser is shown when `Ret_URL` cannot answer with an `rsp`. Our own
/// messages for a window we do not know are shown as they are; anything else (a database or
/// internal failure, whose text names our internals) only in general terms, with the request
/// id that finds the logged detail. Money may have moved before such a failure, so the buyer
/// is told to look at the order before paying again.
fn return_error_page(e: &ServiceError, request_id: &str) -> Response {
    let message = match e {
        ServiceError::NotFound(m) | ServiceError::BadRequest(m) => m.clone(),
        _ => format!(
            "결제 결과를 처리하는 중 오류가 발생했습니다. 다시 결제하기 전에 주문 내역을 확인해 \
             주세요. (요청번호: {request_id})"
        ),
    };
    Html(format!(
        "<!doctype html><meta charset=utf-8><p id=\"openport-error\">{}</p>",
        escape(&message)
    ))
    .into_response()
}

/// [`answer`], once the merchant's redirect origins (domain/redirect_origins.rs) are read again
/// for a mobile redirect: the window was checked against them when it opened, but the list may
/// have changed since (an origin taken out, a list set after windows were opened to elsewhere).
/// A `Ret_URL` post is a cross-site POST from KCP's window, which carries no `SameSite=Lax`
/// cookie, so unlike the hand-off page it cannot tell the buyer's browser from any other: a
/// redirect the list no longer allows is never answered, and the browser is told the payment
/// ended, with no link ([`ended_page`]). The payment's outcome is recorded all the same.
async fn answer_checked(s: &AppState, f: CheckoutFinish) -> Response {
    if f.mobile {
        if let Some(url) = f.redirect_url.as_deref().filter(|u| !u.is_empty()) {
            if !s.gateway.redirect_still_allowed(f.merchant_id, url).await {
                return ended_page();
            }
        }
    }
    answer(f)
}

/// PC: a page that hands `rsp` to the merchant page (the SDK's overlay); mobile: a redirect to
/// `m_redirect_url` with `imp_uid, merchant_uid, imp_success` (+ error fields), `&`-joined when
/// the URL already has a query (spec §6).
pub fn answer(f: CheckoutFinish) -> Response {
    if f.mobile {
        if let Some(url) = f.redirect_url.as_deref().filter(|u| !u.is_empty()) {
            return Redirect::to(&redirect_target(url, &f.rsp)).into_response();
        }
    }
    let rsp = script_json(&f.rsp).unwrap_or_else(|| "{}".into());
    let origin = script_json(if f.page_origin.is_empty() {
        "*"
    } else {
        &f.page_origin
    })
    .unwrap_or_else(|| "\"*\"".into());
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>결제 완료</title></head><body>\
         <p id=\"openport-result\">{}</p><script>(function(){{var rsp={rsp};\
         var target=window.parent!==window?window.parent:window.opener;\
         if(target){{target.postMessage({{source:'openport',rsp:rsp}},{origin});}}}})();</script></body></html>",
        if f.rsp.success { "결제가 완료되었습니다." } else { "결제가 완료되지 않았습니다." }
    ))
    .into_response()
}

/// JSON to embed in a `<script>`: `<`, `>` and `&` as `\u00XX` escapes, so no `</script>`,
/// `<!--` or `<script` in the buyer's or merchant's text changes how the HTML parser reads the
/// script, and U+2028/U+2029 escaped for older JavaScript engines. JSON.parse and the script both
/// read the escapes back as the original characters.
fn script_json<T: serde::Serialize + ?Sized>(value: &T) -> Option<String> {
    let json = serde_json::to_string(value).ok()?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Some(out)
}

/// `url` with iamport's result parameters in its query, before any `#fragment`: `&`-joined to a
/// query it has, nothing added after a trailing `?` or `&` (the SDK's `redirectUrl` for a refusal
/// before the window does the same).
pub fn redirect_target(url: &str, rsp: &Rsp) -> String {
    let mut pairs = vec![
        ("imp_uid", rsp.imp_uid.as_deref().unwrap_or("")),
        ("merchant_uid", rsp.merchant_uid.as_str()),
        ("imp_success", if rsp.success { "true" } else { "false" }),
    ];
    if !rsp.success {
        pairs.push(("error_code", rsp.error_code.as_deref().unwrap_or("F400")));
        pairs.push(("error_msg", rsp.error_msg.as_deref().unwrap_or("")));
    }
    let query: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, URI_COMPONENT)))
        .collect();
    let (url, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let joiner = if !url.contains('?') {
        "?"
    } else if url.ends_with('?') || url.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{url}{joiner}{}{fragment}", query.join("&"))
}

/// What JavaScript's `encodeURIComponent` escapes (all but `A–Z a–z 0–9 - _ . ! ~ * ' ( )`): the
/// redirect's values are written as the SDK's own redirect writes them, a space as `%20`. The
/// `+` of a form encoding reads as a space to `URLSearchParams` and server frameworks, but a page
/// that decodes by hand (`decodeURIComponent`, as hand-rolled iamport samples do) shows it.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The query keys [`redirect_target`] appends (and `success`, the rsp's other name for
/// `imp_success`, which a page may have copied into its URL).
const RESULT_KEYS: [&str; 6] = [
    "imp_uid",
    "merchant_uid",
    "imp_success",
    "success",
    "error_code",
    "error_msg",
];

/// Merchant page `url` without the result parameters of an earlier checkout, for the mobile flow
/// without `m_redirect_url`, which returns to the page (the SDK's `location.href`): a page the
/// buyer reached from a failed attempt still carries its `imp_uid`, `imp_success=false`, … and a
/// parser that takes a key's first value (`URLSearchParams.get`) would read the old failure
/// before the new result, so a paid order could be shown failed and paid again. Every other pair
/// and the `#fragment` are kept as written. An explicit `m_redirect_url` is the merchant's own
/// and gets the result appended as given, as at iamport.
fn without_result(url: &str) -> String {
    let (head, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let Some((path, query)) = head.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = form_urlencoded::parse(pair.as_bytes()).next();
            !key.is_some_and(|(key, _)| RESULT_KEYS.contains(&key.as_ref()))
        })
        .collect();
    if kept.iter().all(|pair| pair.is_empty()) {
        return format!("{path}{fragment}");
    }
    format!("{path}?{}{fragment}", kept.join("&"))
}

/// The demo's server side: re-queries the payment over REST with the demo credentials, as a
/// merchant's backend should, and compares the amount with the package the page offered. It calls
/// this instance on its own listen address only (never a host the request names, which would let
/// anyone make openport fetch a URL of their choosing and show the answer) and follows no
/// redirect.
async fn verify(
    State(s): State<AppState>,
    extract::Path(imp_uid): extract::Path<String>,
) -> Response {
    if !s.gateway.settings.test_mode {
        return StatusCode::NOT_FOUND.into_response();
    }
    let id_like = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if imp_uid.is_empty() || imp_uid.len() > 64 || !imp_uid.chars().all(id_like) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"verified": false, "error": "imp_uid is not an imp_uid"}),
        );
    }
    let base = &s.urls.local;
    let Ok(http) = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let result = async {
        let token: Value = http
            .post(format!("{base}/users/getToken"))
            .json(&serde_json::json!({"imp_key": crate::service::merchants::DEMO_IMP_KEY, "imp_secret": crate::service::merchants::DEMO_IMP_SECRET}))
            .send()
            .await?
            .json()
            .await?;
        let t = token["response"]["access_token"].as_str().unwrap_or_default().to_string();
        let payment: Value = http.get(format!("{base}/payments/{imp_uid}")).header("Authorization", t).send().await?.json().await?;
        Ok::<_, reqwest::Error>(payment)
    }
    .await;
    match result {
        Ok(p) => {
            let r = &p["response"];
            // A merchant checks the amount against its own order before crediting anything: the
            // demo's order id names the points package, and 1 point costs 1 won.
            let ordered = r["merchant_uid"]
                .as_str()
                .and_then(|uid| uid.strip_prefix("demo-points-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|points| points.parse::<i64>().ok());
            let amount_ok = ordered.is_some() && ordered == r["amount"].as_i64();
            let settled =
                r["status"] == "paid" || (r["status"] == "ready" && r["pay_method"] == "vbank");
            let verified = settled && amount_ok;
            json_response(
                StatusCode::OK,
                &serde_json::json!({"verified": verified, "payment": r}),
            )
        }
        Err(e) => json_response(
            StatusCode::BAD_GATEWAY,
            &serde_json::json!({"verified": false, "error": e.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_is_read_in_any_case_and_every_rule_sees_the_same_channel() {
        // How `pg` is read is domain/pg.rs's (its tests).
        // `KCP` with a customer_uid and an amount is refused as `kcp` is, never opened as a
        // billing window that charges nothing; `KCP_BILLING` still needs a customer_uid.
        let refused = |pg: &str, customer_uid: bool, amount: i64| {
            let (channel, _) = pg_channel(pg).unwrap();
            billing_window(&channel, customer_uid, amount)
        };
        assert!(refused("KCP", true, 1000).is_err());
        assert!(refused("kcp", true, 1000).is_err());
        assert!(refused("KCP_BILLING", false, 0).is_err());
        assert_eq!(refused("KCP_BILLING", true, 0), Ok(true));
    }

    async fn text_of(res: Response) -> String {
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    fn headers(host: &str, proto: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap());
        }
        h
    }

    fn urls(configured: Option<&str>) -> PublicUrls {
        PublicUrls {
            configured: configured.map(str::to_string),
            local: "http://127.0.0.1:8080".into(),
        }
    }

    #[test]
    fn a_configured_public_url_is_the_base_whatever_the_request_says() {
        let proxies = AddressList::parse("10.0.0.0/8").unwrap();
        let base = public_base(
            &urls(Some("https://pay.example.com/pg")),
            false,
            &headers("evil.test", Some("http")),
            Some("10.0.0.2".parse().unwrap()),
            &proxies,
        );
        assert_eq!(base.as_deref(), Ok("https://pay.example.com/pg"));
    }

    #[test]
    fn x_forwarded_proto_is_believed_from_a_trusted_proxy_only() {
        let proxies = AddressList::parse("10.0.0.0/8").unwrap();
        let h = headers("shop.test:8443", Some("https"));
        let from =
            |peer: &str| public_base(&urls(None), true, &h, Some(peer.parse().unwrap()), &proxies);
        assert_eq!(from("10.0.0.2").as_deref(), Ok("https://shop.test:8443"));
        assert_eq!(from("198.51.100.7").as_deref(), Ok("http://shop.test:8443"));
        let nobody = AddressList::Only(vec![]);
        let base = public_base(
            &urls(None),
            true,
            &h,
            Some("10.0.0.2".parse().unwrap()),
            &nobody,
        );
        assert_eq!(base.as_deref(), Ok("http://shop.test:8443"));
    }

    #[test]
    fn without_a_public_url_production_takes_only_a_loopback_host() {
        let none = AddressList::Only(vec![]);
        let base = |host: &str, test_mode: bool| {
            public_base(&urls(None), test_mode, &headers(host, None), None, &none)
        };
        assert_eq!(
            base("pay.example.com", false),
            Err(NoPublicBase::Unconfigured)
        );
        assert_eq!(
            base("203.0.113.9:8080", false),
            Err(NoPublicBase::Unconfigured)
        );
        for local in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            assert_eq!(base(local, false), Ok(format!("http://{local}")), "{local}");
        }
        assert_eq!(
            base("pay.example.com", true).as_deref(),
            Ok("http://pay.example.com")
        );
    }

    #[test]
    fn a_host_that_is_no_host_is_the_clients_error_in_either_mode() {
        let none = AddressList::Only(vec![]);
        for test_mode in [true, false] {
            let base =
                |host: &str| public_base(&urls(None), test_mode, &headers(host, None), None, &none);
            for bad in ["user@evil.test", "evil.test/x", "evil.example\"><script>"] {
                assert_eq!(base(bad), Err(NoPublicBase::MalformedHost), "{bad}");
            }
            assert_eq!(
                public_base(&urls(None), test_mode, &HeaderMap::new(), None, &none),
                Err(NoPublicBase::MalformedHost)
            );
        }
    }

    #[test]
    fn the_result_goes_into_the_query_before_the_fragment_as_the_sdk_puts_it() {
        let rsp = Rsp::refused("o-1", None, "거절");
        assert_eq!(
            redirect_target("https://shop.test/done?order=7#top", &rsp),
            "https://shop.test/done?order=7&imp_uid=&merchant_uid=o-1&imp_success=false\
             &error_code=F400&error_msg=%EA%B1%B0%EC%A0%88#top"
        );
        assert!(redirect_target("https://shop.test/done#top", &rsp)
            .starts_with("https://shop.test/done?imp_uid=&"));
        assert!(redirect_target("https://shop.test/done?", &rsp)
            .starts_with("https://shop.test/done?imp_uid=&"));
        assert!(redirect_target("https://shop.test/done?a=1&", &rsp)
            .starts_with("https://shop.test/done?a=1&imp_uid=&"));
    }

    /// Review rU, F5: a space is `%20`, as the SDK's own redirect (`encodeURIComponent`) writes
    /// it, never `+`, which a page decoding by hand (`decodeURIComponent`) shows as a `+`.
    #[test]
    fn the_redirects_query_values_are_percent_encoded_as_the_sdks_own_redirect_encodes_them() {
        let message = "사용자가 결제를 취소하였습니다. (1+1=2 & 50%)";
        let rsp = Rsp::refused("order 7/a", None, message);
        let target = redirect_target("https://shop.test/done", &rsp);
        let query = target.split_once('?').unwrap().1;
        assert!(!query.contains('+') && !query.contains(' '), "{target}");
        let value = |key: &str| {
            let pair = query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} in {target}"));
            percent_encoding::percent_decode_str(pair)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        assert_eq!(value("error_msg"), message);
        assert_eq!(value("merchant_uid"), "order 7/a");
        assert!(
            query.contains("merchant_uid=order%207%2Fa&"),
            "as encodeURIComponent: {target}"
        );
    }

    #[test]
    fn the_page_returned_to_keeps_its_own_parameters_but_no_earlier_result() {
        assert_eq!(
            without_result(
                "https://shop.test/cart?step=2&imp_uid=imp_old&merchant_uid=o-1\
                 &imp_success=false&error_code=3001&error_msg=%EC%B7%A8%EC%86%8C&success=false\
                 &coupon=a%20b#top"
            ),
            "https://shop.test/cart?step=2&coupon=a%20b#top"
        );
        assert_eq!(
            without_result("https://shop.test/cart?imp%5Fuid=x&imp_success#top"),
            "https://shop.test/cart#top"
        );
        for kept in [
            "https://shop.test/cart",
            "https://shop.test/cart?step=2",
            "https://shop.test/cart?my_imp_uid=1&uid=2#imp_uid=3",
            "",
        ] {
            assert_eq!(without_result(kept), kept);
        }
    }

    #[test]
    fn a_page_url_other_than_http_is_no_page_at_all() {
        assert_eq!(
            web_page("https://shop.test/order?id=1"),
            "https://shop.test/order?id=1"
        );
        for url in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "",
            "shop",
        ] {
            assert_eq!(web_page(url), "", "{url}");
        }
    }

    #[test]
    fn a_relative_m_redirect_url_is_the_merchant_pages_and_only_http_is_taken() {
        let page = "https://shop.test/cart/checkout?step=2";
        assert_eq!(
            resolve_redirect("/done?order=1#top", page).unwrap(),
            "https://shop.test/done?order=1#top"
        );
        assert_eq!(
            resolve_redirect("done", page).unwrap(),
            "https://shop.test/cart/done"
        );
        assert_eq!(
            resolve_redirect("http://other.test/x", page).unwrap(),
            "http://other.test/x"
        );
        assert_eq!(
            resolve_redirect("https://other.test/x", "").unwrap(),
            "https://other.test/x"
        );
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://shop.test/x",
        ] {
            assert!(resolve_redirect(bad, page).is_err(), "{bad}");
        }
        assert!(
            resolve_redirect("/done", "").is_err(),
            "nothing to resolve against"
        );
    }

    #[tokio::test]
    async fn text_in_the_rsp_cannot_end_or_hide_the_result_pages_script() {
        let mut rsp = Rsp::refused("o-<!--<script>", None, "x");
        rsp.buyer_name = Some("</script><script>alert(1)</script>&amp;\u{2028}\u{2029}".into());
        rsp.custom_data = Some("{\"note\":\"<!--<script>\"}".into());
        let page = text_of(answer(CheckoutFinish {
            rsp: rsp.clone(),
            mobile: false,
            redirect_url: None,
            page_origin: "https://shop.test".into(),
            merchant_id: 1,
        }))
        .await;
        let script = &page[page.find("<script>").unwrap() + 8..];
        let script = &script[..script.find("</script>").expect("one script element")];
        assert!(
            script.ends_with("})();"),
            "the script element ends where it should: {script}"
        );
        assert!(!script.contains('<') && !script.contains('>') && !script.contains('&'));
        assert!(!script.contains('\u{2028}') && !script.contains('\u{2029}'));
        let json =
            &script[script.find("var rsp=").unwrap() + 8..script.find(";var target").unwrap()];
        let back: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back["buyer_name"], rsp.buyer_name.unwrap().as_str());
        assert_eq!(back["custom_data"], rsp.custom_data.unwrap().as_str());
        assert_eq!(back["merchant_uid"], "o-<!--<script>");
    }

    #[test]
    fn vbank_due_takes_every_documented_form_in_korea_time() {
        let kst = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_local_timezone(chrono::FixedOffset::east_opt(9 * 3600).unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let end_of_day = kst("2031-12-24 23:59:59");
        assert_eq!(vbank_due("2031-12-24"), Some(end_of_day));
        assert_eq!(vbank_due("20311224"), Some(end_of_day));
        assert_eq!(
            vbank_due("2031-12-24 18:30:15"),
            Some(kst("2031-12-24 18:30:15"))
        );
        assert_eq!(
            vbank_due("2031-12-24 18:30"),
            Some(kst("2031-12-24 18:30:59"))
        );
        assert_eq!(vbank_due("203112241830"), Some(kst("2031-12-24 18:30:59")));
        assert_eq!(
            vbank_due("20311224183015"),
            Some(kst("2031-12-24 18:30:15"))
        );
        assert_eq!(
            vbank_due("1955000000"),
            chrono::DateTime::from_timestamp(1_955_000_000, 0)
        );
    }

    #[test]
    fn a_vbank_due_that_is_no_documented_form_or_no_date_is_none() {
        for bad in [
            "YYYYMMDD",
            "next week",
            "2031-1224",
            "2031/12/24",
            "20311324",
            "2031-12-24 25:00:00",
            "2031-12-24-18:30",
            "",
        ] {
            assert_eq!(vbank_due(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_database_failure_at_ret_url_shows_the_buyer_a_request_id_and_not_its_text() {
        let e = ServiceError::Db(sea_orm::DbErr::Custom(
            "connection to 10.0.0.5:5432 refused".into(),
        ));
        let page = text_of(return_error_page(&e, "req-123")).await;
        assert!(page.contains("req-123"), "{page}");
        assert!(!page.contains("database"), "{page}");
        assert!(!page.contains("10.0.0.5"), "{page}");
    }

    #[tokio::test]
    async fn an_unknown_window_at_ret_url_is_named_as_such() {
        let e = ServiceError::NotFound("결제창 정보가 존재하지 않습니다.".into());
        let page = text_of(return_error_page(&e, "req-1")).await;
        assert!(page.contains("결제창 정보가 존재하지 않습니다."), "{page}");
    }
}
