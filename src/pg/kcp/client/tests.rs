//! HTTP semantics against a throw-away local server (not the KCP sandbox: the connector is tested
//! against the wire spec, independently of the sandbox's implementation).

use super::*;
use crate::pg::{CancelKind, DeclineReason};
use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse, Router};
use serde_json::Value;
use std::sync::{Arc, Mutex};

use crate::pg::kcp::wire::tests::{
    self as wire_fixtures, batch_payment, point_account, point_payment,
};

pub(crate) const CERT: &str = include_str!("../../../../tests/fixtures/kcp/splCert.pem");
pub(crate) const KEY: &str = include_str!("../../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");

/// spec/kcp.md §2.4 (amount and order adjusted to [`KeyInRequest::sample`]).
pub(crate) const APPROVED: &str = r#"{"order_no":"TEST1234567890","partcanc_yn":"Y","res_msg":"정상처리","card_mny":"1000",
 "card_no":"123456******0000","quota":"00","amount":"1000","pay_method":"PACA","res_cd":"0000",
 "app_time":"20230327113214","tno":"23336986737476","card_bin_type_01":"0","card_bin_type_02":"0",
 "card_cd":"CCLG","card_name":"신한카드","app_no":"82050813"}"#;

#[derive(Clone)]
struct Script {
    status: u16,
    body: &'static str,
    delay: Duration,
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

async fn answer(State(s): State<Script>, req: axum::extract::Request) -> impl IntoResponse {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().unwrap().push((path, content_type, json));
    tokio::time::sleep(s.delay).await;
    (
        StatusCode::from_u16(s.status).unwrap(),
        [("content-type", "application/json")],
        s.body,
    )
}

/// A local server answering every POST with `status`/`body` after `delay`; returns the connector
/// pointed at it and what the server received.
async fn kcp(status: u16, body: &'static str, delay: Duration) -> (KcpConnector, Script) {
    let script = Script {
        status,
        body,
        delay,
        seen: Arc::default(),
    };
    let app = Router::new().fallback(answer).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (connector(&base, Duration::from_millis(500)), script)
}

fn config(base: &str, timeout: Duration) -> KcpConfig {
    KcpConfig {
        site_cd: "T0000".into(),
        certificate_pem: CERT.into(),
        private_key_pem: KEY.into(),
        private_key_passphrase: SecretString::from("changeit".to_owned()),
        urls: KcpUrls::with_base(base),
        timeout,
    }
}

fn connector(base: &str, timeout: Duration) -> KcpConnector {
    KcpConnector::new(config(base, timeout), reqwest::Client::new()).expect("connector builds")
}

fn golden(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kcp/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_unknown<T: std::fmt::Debug>(result: Result<T, PgError>) -> String {
    match result {
        Err(PgError::Unknown(message)) => message,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approval_posts_the_golden_body_as_json_to_the_hub_path() {
    let (kcp, script) = kcp(200, APPROVED, Duration::ZERO).await;

    let approval = kcp.approve_key_in(&KeyInRequest::sample()).await.unwrap();

    assert_eq!(approval.tno, "23336986737476");
    assert_eq!(approval.masked_card_number, "123456******0000");
    let seen = script.seen.lock().unwrap();
    let (path, content_type, body) = &seen[0];
    assert_eq!(path, "/gw/hub/v1/payment");
    assert!(content_type.starts_with("application/json"));
    assert_eq!(body, &golden("keyin-authenticated"));
}

#[tokio::test]
async fn an_approval_for_another_amount_is_a_mismatch_to_net_cancel() {
    let body = APPROVED
        .replace(r#""amount":"1000""#, r#""amount":"10000""#)
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;

    match kcp.approve_key_in(&KeyInRequest::sample()).await {
        Err(PgError::Mismatch {
            tno,
            detail,
            other_order,
        }) => {
            assert_eq!(tno, "23336986737476");
            assert!(detail.contains("amount 10000"), "{detail}");
            assert_eq!(
                other_order, None,
                "this order's approval, of another amount"
            );
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

/// An answer naming another order is about that order's trade: it names the order, so the
/// gateway does not take the trade for this call's approval (service/orphans.rs).
#[tokio::test]
async fn an_approval_for_another_order_is_a_mismatch_naming_that_order() {
    let body = APPROVED.replace("TEST1234567890", "OTHER123").leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    match kcp.approve_key_in(&KeyInRequest::sample()).await {
        Err(PgError::Mismatch { other_order, .. }) => {
            assert_eq!(other_order.as_deref(), Some("OTHER123"));
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_kcp_refusal_is_declined_with_kcp_code_and_message() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8186","res_msg":"일한도 초과"}"#,
        Duration::ZERO,
    )
    .await;

    match kcp.approve_key_in(&KeyInRequest::sample()).await {
        Err(PgError::Declined {
            code,
            message,
            reason,
        }) => {
            assert_eq!(
                (code.as_str(), message.as_str(), reason),
                ("8186", "일한도 초과", DeclineReason::CardDeclined)
            )
        }
        other => panic!("expected Declined, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusal_body_with_a_4xx_status_is_still_a_decline() {
    let (kcp, _) = kcp(
        400,
        r#"{"res_cd":"8107","res_msg":"카드번호 오류"}"#,
        Duration::ZERO,
    )
    .await;
    let err = kcp
        .approve_key_in(&KeyInRequest::sample())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PgError::Declined {
                reason: DeclineReason::CardRejected,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_503_is_unknown_even_with_a_refusal_body() {
    let (kcp, _) = kcp(503, r#"{"res_cd":"8186","res_msg":"x"}"#, Duration::ZERO).await;
    let message = assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
    assert!(message.contains("503"), "{message}");
}

#[tokio::test]
async fn a_garbage_body_is_unknown() {
    for body in ["<html>bad gateway</html>", "{\"res_cd\":\"0000\",", ""] {
        let (kcp, _) = kcp(200, body, Duration::ZERO).await;
        assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
    }
}

#[tokio::test]
async fn a_body_without_res_cd_is_unknown() {
    let (kcp, _) = kcp(200, r#"{"tno":"23336986737476"}"#, Duration::ZERO).await;
    assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
}

#[tokio::test]
async fn a_success_without_tno_is_unknown_because_money_may_have_moved() {
    let (kcp, _) = kcp(200, r#"{"res_cd":"0000","amount":"1000"}"#, Duration::ZERO).await;
    assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
}

#[tokio::test]
async fn a_hanging_kcp_is_unknown_after_the_configured_timeout() {
    let (kcp, _) = kcp(200, APPROVED, Duration::from_secs(30)).await;

    let started = std::time::Instant::now();
    let message = assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);

    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout not honoured: {:?}",
        started.elapsed()
    );
    assert!(message.contains("in time"), "{message}");
}

#[tokio::test]
async fn a_dropped_connection_is_unknown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            drop(socket);
        }
    });
    let kcp = connector(&base, Duration::from_secs(2));
    assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
}

#[tokio::test]
async fn a_refused_connection_is_not_sent_not_unknown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let kcp = connector(&base, Duration::from_secs(2));
    let refused = kcp
        .cancel(&CancelRequest {
            tno: "23336986737476".into(),
            kind: CancelKind::Full,
            reason: String::new(),
        })
        .await;
    assert!(matches!(refused, Err(PgError::NotSent(_))), "{refused:?}");
    let refused = kcp.approve_key_in(&KeyInRequest::sample()).await;
    assert!(matches!(refused, Err(PgError::NotSent(_))), "{refused:?}");
}

/// A URL that parses but that reqwest cannot send to (a scheme-less api base such as
/// `stg-spl.kcp.co.kr:443` reads as the scheme `stg-spl.kcp.co.kr`; a scheme other than http(s))
/// fails before anything leaves openport: the payment can fail at once instead of waiting for an
/// inquiry that could never reach KCP either.
#[tokio::test]
async fn a_request_that_cannot_be_built_is_not_sent_not_unknown() {
    for base in ["stg-spl.kcp.co.kr:443", "ftp://127.0.0.1:1"] {
        let kcp = connector(base, Duration::from_secs(2));
        let refused = kcp.approve_key_in(&KeyInRequest::sample()).await;
        assert!(
            matches!(refused, Err(PgError::NotSent(_))),
            "{base}: {refused:?}"
        );
        let refused = kcp
            .cancel(&CancelRequest {
                tno: "23336986737476".into(),
                kind: CancelKind::Full,
                reason: String::new(),
            })
            .await;
        assert!(
            matches!(refused, Err(PgError::NotSent(_))),
            "{base}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_partial_cancel_posts_the_golden_body_and_returns_the_balance_after() {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20230327120000","mod_mny":"300","rem_mny":"700","mod_pcan_seq_no":"1"}"#,
        Duration::ZERO,
    )
    .await;
    let req = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Partial {
            amount: 300,
            balance_before: 1000,
        },
        reason: "부분취소".into(),
    };

    let done = kcp.cancel(&req).await.unwrap();

    assert_eq!(done.remaining, 700);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/mod/v1/cancel");
    assert_eq!(seen[0].2, golden("cancel-partial"));
}

#[tokio::test]
async fn cancelling_an_already_cancelled_trade_is_declined_as_already_cancelled() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8133","res_msg":"이미 취소된 거래"}"#,
        Duration::ZERO,
    )
    .await;
    let req = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Full,
        reason: String::new(),
    };
    let err = kcp.cancel(&req).await.unwrap_err();
    assert!(
        matches!(
            err,
            PgError::Declined {
                reason: DeclineReason::AlreadyCancelled,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_inquiry_by_order_number_answered_8201_means_not_found() {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"8201","res_msg":"거래 없음"}"#,
        Duration::ZERO,
    )
    .await;

    let state = kcp
        .inquire(&TradeRef::OrderNo("TEST1234567890".into()))
        .await
        .unwrap();

    assert_eq!(state, TradeState::NotFound);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/std/inquery");
    assert_eq!(seen[0].2, golden("inquiry-by-order-no"));
}

#[tokio::test]
async fn an_inquiry_by_tno_reports_an_approved_trade() {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"0000","tno":"23336986737476","order_no":"TEST1234567890","pay_method":"PACA","amount":"1000",
            "rem_mny":"1000","stat_ca_cd":"STSR","app_time":"20230327113214","app_no":"82050813","card_no":"123456******0000"}"#,
        Duration::ZERO,
    )
    .await;

    let state = kcp
        .inquire(&TradeRef::Tno("23336986737476".into()))
        .await
        .unwrap();

    assert!(
        matches!(
            state,
            TradeState::Approved {
                remaining: 1000,
                ..
            }
        ),
        "{state:?}"
    );
    assert_eq!(script.seen.lock().unwrap()[0].2, golden("inquiry-by-tno"));
}

#[tokio::test]
async fn an_inquiry_answer_about_another_trade_is_unknown() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"0000","tno":"99999999999999","order_no":"X","amount":"1000","stat_ca_cd":"STSR"}"#,
        Duration::ZERO,
    )
    .await;
    assert_unknown(kcp.inquire(&TradeRef::Tno("23336986737476".into())).await);
}

#[tokio::test]
async fn an_inquiry_failure_other_than_8201_is_not_not_found() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"9999","res_msg":"system"}"#,
        Duration::ZERO,
    )
    .await;
    assert!(matches!(
        kcp.inquire(&TradeRef::OrderNo("A1".into())).await,
        Err(PgError::Declined { .. })
    ));
}

#[tokio::test]
async fn invalid_card_data_is_refused_before_anything_is_sent() {
    let (kcp, script) = kcp(200, APPROVED, Duration::ZERO).await;
    let mut req = KeyInRequest::sample();
    req.card.expiry_yymm = "13/26".into();
    assert!(matches!(
        kcp.approve_key_in(&req).await,
        Err(PgError::Declined { .. })
    ));
    assert!(script.seen.lock().unwrap().is_empty());
}

#[test]
fn a_wrong_passphrase_fails_at_construction_without_revealing_it() {
    let mut cfg = config("http://127.0.0.1:1", Duration::from_secs(1));
    cfg.private_key_passphrase = SecretString::from("hunter2-secret".to_owned());
    match KcpConnector::new(cfg, reqwest::Client::new()) {
        Err(PgError::Config(message)) => {
            assert!(message.contains("passphrase"), "{message}");
            assert!(!message.contains("hunter2-secret"));
        }
        other => panic!("expected Config, got {other:?}"),
    }
}

#[test]
fn an_invalid_site_code_or_url_is_a_configuration_error() {
    let mut cfg = config("http://127.0.0.1:1", Duration::from_secs(1));
    cfg.site_cd = "T0000X".into();
    assert!(matches!(
        KcpConnector::new(cfg, reqwest::Client::new()),
        Err(PgError::Config(_))
    ));
    let cfg = config("not a url", Duration::from_secs(1));
    assert!(matches!(
        KcpConnector::new(cfg, reqwest::Client::new()),
        Err(PgError::Config(_))
    ));
}

#[test]
fn config_and_connector_debug_redact_key_and_passphrase() {
    let cfg = config("http://127.0.0.1:1", Duration::from_secs(1));
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("changeit") && !debug.contains("ENCRYPTED"),
        "{debug}"
    );
    let kcp = KcpConnector::new(cfg, reqwest::Client::new()).unwrap();
    let debug = format!("{kcp:?}");
    assert!(
        !debug.contains("changeit") && !debug.contains("MII"),
        "{debug}"
    );
}

#[test]
fn the_seeds_payment_and_register_urls_replace_those_of_the_environment() {
    let prod = KcpUrls::production();
    let seed = KcpUrls::production().with_named(
        Some("https://stg-spl.kcp.co.kr/gw/enc/v1/payment"),
        Some("https://testsmpay.kcp.co.kr/trade/register.do"),
    );
    assert_eq!(
        seed.enc_payment,
        "https://stg-spl.kcp.co.kr/gw/enc/v1/payment"
    );
    assert_eq!(
        seed.mobile_trade_register,
        "https://testsmpay.kcp.co.kr/trade/register.do"
    );
    assert_eq!(
        seed.trade_register, prod.trade_register,
        "the other one stays"
    );
    assert_eq!(seed.hub, prod.hub);
    let newer = KcpUrls::production().with_named(
        None,
        Some("https://stg-spl.kcp.co.kr/std/tradeReg/register"),
    );
    assert_eq!(
        newer.trade_register,
        "https://stg-spl.kcp.co.kr/std/tradeReg/register"
    );
    assert_eq!(newer.mobile_trade_register, prod.mobile_trade_register);
    assert_eq!(newer.enc_payment, prod.enc_payment);
}

#[test]
fn urls_follow_the_spec_table_and_with_base_keeps_the_paths() {
    let test = KcpUrls::test();
    assert_eq!(test.hub, "https://stg-spl.kcp.co.kr/gw/hub/v1/payment");
    assert_eq!(test.cancel, "https://stg-spl.kcp.co.kr/gw/mod/v1/cancel");
    assert_eq!(test.inquiry, "https://stg-spl.kcp.co.kr/std/inquery");
    assert_eq!(
        test.enc_payment,
        "https://stg-spl.kcp.co.kr/gw/enc/v1/payment"
    );
    assert_eq!(
        test.trade_register,
        "https://stg-spl.kcp.co.kr/std/tradeReg/register"
    );
    assert_eq!(
        test.mobile_trade_register,
        "https://testsmpay.kcp.co.kr/trade/register.do"
    );
    assert_eq!(
        test.pc_script,
        "https://testspay.kcp.co.kr/plugin/kcp_spay_hub.js"
    );
    let prod = KcpUrls::production();
    assert_eq!(prod.hub, "https://spl.kcp.co.kr/gw/hub/v1/payment");
    assert_eq!(
        prod.pc_script,
        "https://spay.kcp.co.kr/plugin/kcp_spay_hub.js"
    );
    assert_eq!(
        prod.mobile_trade_register,
        "https://smpay.kcp.co.kr/trade/register.do"
    );
    let local = KcpUrls::with_base("http://127.0.0.1:8080/");
    assert_eq!(local.inquiry, "http://127.0.0.1:8080/std/inquery");
    assert_eq!(
        local.pc_script,
        "http://127.0.0.1:8080/plugin/kcp_spay_hub.js"
    );
    assert_eq!(
        local.mobile_trade_register,
        "http://127.0.0.1:8080/trade/register.do"
    );
    assert_eq!(
        local.trade_register,
        "http://127.0.0.1:8080/std/tradeReg/register"
    );
}

/// spec/kcp.md §1: KCP's REST hosts do not serve its windows. An api base naming KCP's staging
/// or production REST origin takes the window side (the PC script, the older mobile
/// registration) from that environment's hosts, as [`KcpUrls::test`] / [`KcpUrls::production`]
/// do, however the origin is written.
#[test]
fn with_base_on_kcps_own_rest_hosts_takes_the_window_hosts_of_that_environment() {
    for base in [
        "https://stg-spl.kcp.co.kr",
        "https://stg-spl.kcp.co.kr/",
        " https://STG-SPL.kcp.co.kr:443 ",
    ] {
        let urls = KcpUrls::with_base(base);
        assert_eq!(
            urls.pc_script, "https://testspay.kcp.co.kr/plugin/kcp_spay_hub.js",
            "{base}"
        );
        assert_eq!(
            urls.mobile_trade_register, "https://testsmpay.kcp.co.kr/trade/register.do",
            "{base}"
        );
        assert_eq!(urls.hub, "https://stg-spl.kcp.co.kr/gw/hub/v1/payment");
        assert_eq!(urls, KcpUrls::test(), "{base}");
    }
    let prod = KcpUrls::with_base("https://spl.kcp.co.kr/");
    assert_eq!(
        prod.pc_script,
        "https://spay.kcp.co.kr/plugin/kcp_spay_hub.js"
    );
    assert_eq!(
        prod.mobile_trade_register,
        "https://smpay.kcp.co.kr/trade/register.do"
    );
    assert_eq!(prod, KcpUrls::production());
    // Another port or scheme on that host is not KCP's REST origin: one origin for everything.
    for base in ["https://stg-spl.kcp.co.kr:8443", "http://stg-spl.kcp.co.kr"] {
        let urls = KcpUrls::with_base(base);
        assert_eq!(urls.pc_script, format!("{base}/plugin/kcp_spay_hub.js"));
        assert_eq!(urls.hub, format!("{base}/gw/hub/v1/payment"));
    }
}

// ----- billing keys and Benepia points (PgBilling) -------------------------------------------

/// spec/kcp.md §2.5.
const BATCH_KEY_ISSUED: &str = r#"{"res_msg":"정상처리","card_cd":"CCDI","card_bin_type_02":"0","card_bank_cd":"0321",
 "batch_key":"2304051168518034","card_name":"현대카드","card_bin_type_01":"0","res_cd":"0000"}"#;

/// spec/kcp.md §2.6: card approval fields, card number masked by KCP.
const BATCH_APPROVED: &str = r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","order_no":"20230412329",
 "amount":"1100","card_mny":"1100","pay_method":"PACA","app_time":"20230412100000","app_no":"30012345",
 "card_cd":"CCLG","card_name":"신한카드","card_no":"461954******7815","quota":"00","card_bin_type_01":"0",
 "card_bin_type_02":"0","partcanc_yn":"Y"}"#;

/// spec/kcp.md §2.8 point payment answer.
const POINTS_APPROVED: &str = r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737999","pnt_amount":"1004",
 "pnt_app_time":"20230327113214","pnt_app_no":"P0012345","rsv_pnt":"13996"}"#;

/// spec/kcp.md §2.8 re-approval answer: a NEW tno for the re-approved amount.
const POINTS_REAPPROVED: &str = r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986738000","pnt_amount":"600",
 "pnt_app_no":"P0012346","pnt_app_time":"20230328090000","rsv_pnt":"14400"}"#;

const BATCH_KEY: &str = "2304051168518034";

/// Like [`kcp`], for the spec's billing merchant `A52Q7`.
async fn kcp_billing(status: u16, body: &'static str) -> (KcpConnector, Script) {
    let (kcp, script) = kcp(status, body, Duration::ZERO).await;
    let mut cfg = config(
        kcp.urls.hub.trim_end_matches("/gw/hub/v1/payment"),
        Duration::from_millis(500),
    );
    cfg.site_cd = "A52Q7".into();
    (
        KcpConnector::new(cfg, reqwest::Client::new()).unwrap(),
        script,
    )
}

/// The spec's batch-key request (birth and PIN given).
fn batch_key_request() -> BatchKeyRequest {
    wire_fixtures::batch_key_request(Some("951010"), Some("00"))
}

/// Runs every `PgBilling` call once against `kcp` and returns each result's error, if any.
async fn every_billing_call(kcp: &KcpConnector) -> Vec<(&'static str, Option<PgError>)> {
    vec![
        (
            "issue_batch_key",
            kcp.issue_batch_key(&batch_key_request()).await.err(),
        ),
        (
            "pay_with_batch_key",
            kcp.pay_with_batch_key(&batch_payment()).await.err(),
        ),
        (
            "delete_batch_key",
            kcp.delete_batch_key(BATCH_KEY, "A52Q71000489").await.err(),
        ),
        (
            "point_balance",
            kcp.point_balance("TEST1234567890", &point_account())
                .await
                .err(),
        ),
        (
            "pay_with_points",
            kcp.pay_with_points(&point_payment()).await.err(),
        ),
        (
            "reapprove_points",
            kcp.reapprove_points("23336986737476", 600, "TEST1234567891", "테스트 상품")
                .await
                .err(),
        ),
    ]
}

#[tokio::test]
async fn issuing_a_batch_key_posts_the_assumed_hub_body_and_returns_the_key() {
    let (kcp, script) = kcp_billing(200, BATCH_KEY_ISSUED).await;

    let key = kcp.issue_batch_key(&batch_key_request()).await.unwrap();

    assert_eq!(key.batch_key, BATCH_KEY);
    assert_eq!(
        (key.issuer_code.as_str(), key.masked_card_number.as_str()),
        ("CCDI", "123456******0000")
    );
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/hub/v1/payment");
    assert_eq!(seen[0].2, golden("batch-issue-authenticated"));
}

#[tokio::test]
async fn a_batch_key_success_without_a_key_is_unknown() {
    let (kcp, _) = kcp_billing(
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","card_cd":"CCDI"}"#,
    )
    .await;
    assert_unknown(kcp.issue_batch_key(&batch_key_request()).await);
}

#[tokio::test]
async fn a_refused_batch_key_issuance_is_declined_with_kcps_category() {
    let (kcp, _) = kcp_billing(200, r#"{"res_cd":"8109","res_msg":"유효기간 오류"}"#).await;
    let err = kcp.issue_batch_key(&batch_key_request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            PgError::Declined {
                reason: DeclineReason::CardRejected,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_batch_payment_posts_the_spec_example_and_returns_the_approval() {
    let (kcp, script) = kcp_billing(200, BATCH_APPROVED).await;

    let approval = kcp.pay_with_batch_key(&batch_payment()).await.unwrap();

    assert_eq!(
        (
            approval.tno.as_str(),
            approval.amount,
            approval.masked_card_number.as_str()
        ),
        ("23336986737476", 1100, "461954******7815")
    );
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/hub/v1/payment");
    assert_eq!(seen[0].2, golden("batch-pay"));
}

#[tokio::test]
async fn a_batch_payment_approved_for_another_amount_or_order_is_a_mismatch() {
    for body in [
        BATCH_APPROVED.replace(r#""amount":"1100""#, r#""amount":"11000""#),
        BATCH_APPROVED.replace("20230412329", "20230412330"),
    ] {
        let (kcp, _) = kcp_billing(200, body.leak()).await;
        match kcp.pay_with_batch_key(&batch_payment()).await {
            Err(PgError::Mismatch { tno, .. }) => assert_eq!(tno, "23336986737476"),
            other => panic!("expected Mismatch, got {other:?}"),
        }
    }
}

/// spec/kcp.md §2.4/§2.6/§6: the hub's `amount == card_mny`, and §5 makes the amount comparison
/// mandatory. A card answer whose `amount` is the order's but whose `card_mny` is another amount
/// approved something else: key-in, a billing-key charge and a card window alike are a `Mismatch`
/// to net-cancel, naming the other amount.
#[tokio::test]
async fn a_card_approval_naming_another_card_mny_is_a_mismatch_on_every_card_path() {
    let other_card_mny = |body: &str, from: &str, to: &str| -> &'static str {
        let changed = body.replace(
            &format!(r#""card_mny":"{from}""#),
            &format!(r#""card_mny":"{to}""#),
        );
        assert_ne!(changed, body, "the answer names card_mny");
        changed.leak()
    };
    let expect_mismatch =
        |path: &str, result: Result<CardApproval, PgError>, named: &str| match result {
            Err(PgError::Mismatch { tno, detail, .. }) => {
                assert_eq!(tno, "23336986737476", "{path}");
                assert!(detail.contains(named), "{path}: {detail}");
            }
            other => panic!("{path}: expected Mismatch, got {other:?}"),
        };

    let (kcp_key_in, _) = kcp(
        200,
        other_card_mny(APPROVED, "1000", "10000"),
        Duration::ZERO,
    )
    .await;
    expect_mismatch(
        "key-in",
        kcp_key_in.approve_key_in(&KeyInRequest::sample()).await,
        "an amount named 10000 ",
    );

    let (kcp_batch, _) = kcp_billing(200, other_card_mny(BATCH_APPROVED, "1100", "110")).await;
    expect_mismatch(
        "billing-key charge",
        kcp_batch.pay_with_batch_key(&batch_payment()).await,
        "an amount named 110 ",
    );

    // A card window's card part above the trade's amount: the card paid more than the order.
    let (kcp_window, _) = kcp(
        200,
        other_card_mny(APPROVED, "1000", "1001"),
        Duration::ZERO,
    )
    .await;
    expect_mismatch(
        "card window",
        approve_card_window(&kcp_window).await,
        "an amount named 1001 ",
    );
}

/// A card window approval of 1,000 won (the order `TEST1234567890`), the card answer read back.
async fn approve_card_window(kcp: &KcpConnector) -> Result<CardApproval, PgError> {
    let window = crate::pg::WindowApprovalRequest {
        order_no: "TEST1234567890".into(),
        amount: 1000,
        tran_cd: "00100000".into(),
        enc_data: "ZW5jX2RhdGE".into(),
        enc_info: "ZW5jX2luZm8".into(),
        use_pay_method: "100000000000".into(),
    };
    let approved = crate::pg::PgCheckout::approve_window(kcp, &window).await;
    approved.map(|a| match a.approval {
        crate::pg::WindowApproval::Card(card) => card,
        other => panic!("a card answer read as {other:?}"),
    })
}

/// docs/kcp.md §5: a card window's trade (its `amount`, which KCP checked against `ordr_mony`)
/// may be paid only partly by the card when the buyer used a KCP coupon or points in the window
/// (`card_mny` below `amount`): the order's trade, approved for its amount, not net-cancelled.
/// A hub payment (key-in, billing key) has no such part: there `amount == card_mny` (spec §2.6),
/// and a lower `card_mny` stays a mismatch.
#[tokio::test]
async fn a_card_window_approval_whose_card_mny_is_below_its_amount_is_approved_but_a_hub_payment_is_not(
) {
    let below = APPROVED.replace(r#""card_mny":"1000""#, r#""card_mny":"700""#);
    assert_ne!(below, APPROVED, "the answer names card_mny");
    let below: &'static str = below.leak();

    let (kcp_window, _) = kcp(200, below, Duration::ZERO).await;
    let card = approve_card_window(&kcp_window).await.unwrap();
    assert_eq!(card.amount, 1000);

    let (kcp_key_in, _) = kcp(200, below, Duration::ZERO).await;
    match kcp_key_in.approve_key_in(&KeyInRequest::sample()).await {
        Err(PgError::Mismatch { detail, .. }) => {
            assert!(detail.contains("an amount named 700 "), "{detail}")
        }
        other => panic!("key-in: expected Mismatch, got {other:?}"),
    }
}

/// The same answers with `card_mny` equal to the order's amount, or without it (the key-in
/// sample's `amount` alone), are approvals: only a `card_mny` that disagrees is refused.
#[tokio::test]
async fn a_card_approval_whose_card_mny_is_the_orders_or_absent_is_approved() {
    let without = APPROVED.replace(r#""card_mny":"1000","#, "").leak();
    for body in [APPROVED, without] {
        let (kcp, _) = kcp(200, body, Duration::ZERO).await;
        assert_eq!(
            kcp.approve_key_in(&KeyInRequest::sample())
                .await
                .unwrap()
                .amount,
            1000
        );
    }
}

#[tokio::test]
async fn deleting_a_batch_key_posts_the_spec_body() {
    let (kcp, script) = kcp_billing(200, r#"{"res_cd":"0000","res_msg":"정상처리"}"#).await;

    kcp.delete_batch_key(BATCH_KEY, "A52Q71000489")
        .await
        .unwrap();

    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/hub/v1/payment");
    assert_eq!(seen[0].2, golden("batch-delete"));
}

#[tokio::test]
async fn the_point_balance_call_sends_amount_zero_and_returns_rsv_pnt() {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","rsv_pnt":"15000"}"#,
        Duration::ZERO,
    )
    .await;

    let balance = kcp
        .point_balance("TEST1234567890", &point_account())
        .await
        .unwrap();

    assert_eq!(balance, 15_000);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/hub/v1/payment");
    assert_eq!(seen[0].2, golden("point-balance"));
}

#[tokio::test]
async fn a_point_payment_posts_the_golden_body_and_returns_the_approval() {
    let (kcp, script) = kcp(200, POINTS_APPROVED, Duration::ZERO).await;

    let approval = kcp.pay_with_points(&point_payment()).await.unwrap();

    assert_eq!(
        (
            approval.tno.as_str(),
            approval.order_no.as_str(),
            approval.amount,
            approval.balance_after
        ),
        ("23336986737999", "TEST1234567890", 1004, 13_996)
    );
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/hub/v1/payment");
    assert_eq!(seen[0].2, golden("point-pay"));
}

#[tokio::test]
async fn points_approved_for_another_amount_are_a_mismatch_naming_the_tno() {
    let body = POINTS_APPROVED
        .replace(r#""pnt_amount":"1004""#, r#""pnt_amount":"104""#)
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    match kcp.pay_with_points(&point_payment()).await {
        Err(PgError::Mismatch { tno, detail, .. }) => {
            assert_eq!(tno, "23336986737999");
            assert!(detail.contains("104"), "{detail}");
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_point_reapproval_posts_a_signed_stra_to_the_cancel_path_and_returns_the_new_tno() {
    let (kcp, script) = kcp(200, POINTS_REAPPROVED, Duration::ZERO).await;

    let approval = kcp
        .reapprove_points("23336986737476", 600, "TEST1234567891", "테스트 상품")
        .await
        .unwrap();

    assert_eq!(
        approval,
        PointApproval {
            tno: "23336986738000".into(),
            order_no: "TEST1234567891".into(),
            amount: 600,
            app_no: "P0012346".into(),
            approved_at: "2023-03-28T00:00:00Z".parse().unwrap(),
            balance_after: 14_400,
        }
    );
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/mod/v1/cancel");
    assert_eq!(seen[0].2, golden("point-reapprove"));
}

#[tokio::test]
async fn a_point_reapproval_for_another_amount_is_a_mismatch_on_the_new_tno() {
    let body = POINTS_REAPPROVED
        .replace(r#""pnt_amount":"600""#, r#""pnt_amount":"1004""#)
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    match kcp
        .reapprove_points("23336986737476", 600, "TEST1234567891", "테스트 상품")
        .await
    {
        Err(PgError::Mismatch { tno, .. }) => assert_eq!(tno, "23336986738000"),
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_full_cancel_of_a_point_payment_is_the_ordinary_stsc_call() {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20230327120000"}"#,
        Duration::ZERO,
    )
    .await;
    let done = kcp
        .cancel(&CancelRequest {
            tno: "23336986737476".into(),
            kind: CancelKind::Full,
            reason: "가맹점 DB 처리 실패(자동취소)".into(),
        })
        .await
        .unwrap();
    assert_eq!(done.remaining, 0);
    assert_eq!(script.seen.lock().unwrap()[0].2, golden("cancel-full"));
}

#[tokio::test]
async fn every_billing_call_treats_5xx_as_unknown() {
    let (kcp, _) = kcp_billing(502, r#"{"res_cd":"8107","res_msg":"x"}"#).await;
    for (call, err) in every_billing_call(&kcp).await {
        assert!(matches!(err, Some(PgError::Unknown(_))), "{call}: {err:?}");
    }
}

#[tokio::test]
async fn every_billing_call_treats_an_unreadable_body_as_unknown() {
    for body in [
        "<html>bad gateway</html>",
        "{\"res_cd\":\"0000\",",
        r#"{"rsv_pnt":"1"}"#,
    ] {
        let (kcp, _) = kcp_billing(200, body).await;
        for (call, err) in every_billing_call(&kcp).await {
            assert!(
                matches!(err, Some(PgError::Unknown(_))),
                "{call} / {body}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_billing_call_treats_a_success_without_its_key_data_as_unknown() {
    let (kcp, _) = kcp_billing(200, r#"{"res_cd":"0000","res_msg":"정상처리"}"#).await;
    for (call, err) in every_billing_call(&kcp).await {
        if call == "delete_batch_key" {
            assert!(
                err.is_none(),
                "a delete needs nothing but res_cd 0000: {err:?}"
            );
        } else {
            assert!(matches!(err, Some(PgError::Unknown(_))), "{call}: {err:?}");
        }
    }
}

#[tokio::test]
async fn every_billing_call_is_declined_on_a_kcp_refusal() {
    let (kcp, _) = kcp_billing(200, r#"{"res_cd":"8133","res_msg":"이미 취소된 거래"}"#).await;
    for (call, err) in every_billing_call(&kcp).await {
        assert!(
            matches!(err, Some(PgError::Declined { ref code, .. }) if code == "8133"),
            "{call}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_hanging_kcp_is_unknown_for_billing_calls_too() {
    let (kcp, _) = kcp(200, POINTS_APPROVED, Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    assert_unknown(kcp.pay_with_points(&point_payment()).await);
    assert_unknown(kcp.pay_with_batch_key(&batch_payment()).await);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn billing_errors_never_carry_keys_card_data_or_point_credentials() {
    let secrets = [
        BATCH_KEY,
        "1234567800000000",
        "951010",
        "benepia01",
        "pw1234",
    ];
    for body in [
        r#"{"res_cd":"0000"}"#,
        "{\"res_cd\":\"0000\",\"batch_key\":",
        r#"{"res_cd":"0000","tno":"1","pnt_amount":"x2304051168518034"}"#,
    ] {
        let (kcp, _) = kcp_billing(200, body).await;
        for (call, err) in every_billing_call(&kcp).await {
            let text = err.map(|e| format!("{e} {e:?}")).unwrap_or_default();
            for secret in secrets {
                assert!(!text.contains(secret), "{call} leaks {secret}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn invalid_billing_input_is_refused_before_anything_is_sent() {
    let (kcp, script) = kcp_billing(200, BATCH_APPROVED).await;
    let mut pay = batch_payment();
    pay.batch_key = "not a key".into();
    assert!(matches!(
        kcp.pay_with_batch_key(&pay).await,
        Err(PgError::Declined { .. })
    ));
    let mut issue = batch_key_request();
    issue.card.birth = None; // a PIN prefix without a birth date
    assert!(matches!(
        kcp.issue_batch_key(&issue).await,
        Err(PgError::Declined {
            reason: DeclineReason::CardRejected,
            ..
        })
    ));
    let mut account = point_account();
    account.password = String::new();
    assert!(kcp.point_balance("A1", &account).await.is_err());
    assert!(script.seen.lock().unwrap().is_empty());
}

mod amounts;
mod vbank;
mod window;

/// A throw-away KCP answering cancels by `mod_type`: `STSC` approved, `STE4` "already
/// cancelled", any other `8507`; returns the connector and the mod_types it received.
async fn escrow_kcp() -> (KcpConnector, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let json: Value = serde_json::from_slice(&body).unwrap();
                let mod_type = json["mod_type"].as_str().unwrap_or_default().to_string();
                seen.lock().unwrap().push(mod_type.clone());
                let answer = match mod_type.as_str() {
                    "STSC" => {
                        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20230327120000"}"#
                    }
                    "STE4" => r#"{"res_cd":"8133","res_msg":"이미 취소된 거래"}"#,
                    _ => r#"{"res_cd":"8507","res_msg":"배송 단계가 다릅니다"}"#,
                };
                ([("content-type", "application/json")], answer)
            }
        }
    };
    let app = Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (connector(&base, Duration::from_millis(500)), seen)
}

fn cancel_of(kind: CancelKind) -> CancelRequest {
    CancelRequest {
        tno: "23336986737476".into(),
        kind,
        reason: "취소".into(),
    }
}

/// One connector call is one KCP call: an escrow status change KCP refuses is answered as that
/// refusal, with nothing sent after it, even where KCP would approve the plain `STSC`. Whether to
/// send the `STSC` is the service's decision, made after it renews the attempt's lease for that
/// second call (service/cancel.rs `Gateway::cancel_at_kcp`); sent inside the connector, both
/// calls ran on one lease and the attempt fell due for the resolver while the STSC was on its way.
#[tokio::test]
async fn an_escrow_cancel_is_sent_once_and_its_refusal_is_the_answer() {
    use crate::pg::EscrowCancel;
    let (kcp, seen) = escrow_kcp().await;

    for (kind, mod_type, reason) in [
        (EscrowCancel::BeforeShipping, "STE2", DeclineReason::Other),
        (EscrowCancel::CloseVbank, "STE5", DeclineReason::Other),
        (
            EscrowCancel::AfterShipping,
            "STE4",
            DeclineReason::AlreadyCancelled,
        ),
    ] {
        seen.lock().unwrap().clear();
        let refused = kcp.cancel(&cancel_of(CancelKind::Escrow(kind))).await;
        assert!(
            matches!(&refused, Err(PgError::Declined { reason: r, .. }) if *r == reason),
            "{refused:?}"
        );
        assert_eq!(*seen.lock().unwrap(), [mod_type], "no second call");
    }

    // A plain cancel that is refused is not sent again either.
    let (plain, script) = kcp_refusing_everything().await;
    let refused = plain.cancel(&cancel_of(CancelKind::Full)).await;
    assert!(
        matches!(refused, Err(PgError::Declined { .. })),
        "{refused:?}"
    );
    assert_eq!(script.seen.lock().unwrap().len(), 1);
}

async fn kcp_refusing_everything() -> (KcpConnector, Script) {
    kcp(200, r#"{"res_cd":"8501","res_msg":"거절"}"#, Duration::ZERO).await
}
