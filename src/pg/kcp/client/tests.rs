//! HTTP semantics against a throw-away local server (not the KCP sandbox: the connector is tested
//! against the wire spec, independently of the sandbox's implementation).

use super::*;
use crate::pg::{CancelKind, CardSecret, DeclineReason};
use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse, Router};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const CERT: &str = include_str!("../../../../tests/fixtures/kcp/splCert.pem");
const KEY: &str = include_str!("../../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");

/// spec/kcp.md §2.4 (amount and order adjusted to the request below).
const APPROVED: &str = r#"{"order_no":"TEST1234567890","partcanc_yn":"Y","res_msg":"정상처리","card_mny":"1000",
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

fn key_in() -> KeyInRequest {
    KeyInRequest {
        order_no: "TEST1234567890".into(),
        amount: 1000,
        good_name: "테스트 상품".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "test@kcp.co.kr".into(),
        buyer_tel: "01000000000".into(),
        card: CardSecret {
            number: "1234567800000000".into(),
            expiry_yymm: "2607".into(),
            birth: Some("951010".into()),
            pwd_2digit: Some("00".into()),
        },
        quota: 0,
        customer_ip: "".into(),
    }
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

    let approval = kcp.approve_key_in(&key_in()).await.unwrap();

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

    match kcp.approve_key_in(&key_in()).await {
        Err(PgError::Mismatch { tno, detail }) => {
            assert_eq!(tno, "23336986737476");
            assert!(detail.contains("amount 10000"), "{detail}");
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approval_for_another_order_is_a_mismatch() {
    let body = APPROVED.replace("TEST1234567890", "OTHER123").leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    assert!(matches!(
        kcp.approve_key_in(&key_in()).await,
        Err(PgError::Mismatch { .. })
    ));
}

#[tokio::test]
async fn a_kcp_refusal_is_declined_with_kcp_code_and_message() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8186","res_msg":"일한도 초과"}"#,
        Duration::ZERO,
    )
    .await;

    match kcp.approve_key_in(&key_in()).await {
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
    let err = kcp.approve_key_in(&key_in()).await.unwrap_err();
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
    let message = assert_unknown(kcp.approve_key_in(&key_in()).await);
    assert!(message.contains("503"), "{message}");
}

#[tokio::test]
async fn a_garbage_body_is_unknown() {
    for body in ["<html>bad gateway</html>", "{\"res_cd\":\"0000\",", ""] {
        let (kcp, _) = kcp(200, body, Duration::ZERO).await;
        assert_unknown(kcp.approve_key_in(&key_in()).await);
    }
}

#[tokio::test]
async fn a_body_without_res_cd_is_unknown() {
    let (kcp, _) = kcp(200, r#"{"tno":"23336986737476"}"#, Duration::ZERO).await;
    assert_unknown(kcp.approve_key_in(&key_in()).await);
}

#[tokio::test]
async fn a_success_without_tno_is_unknown_because_money_may_have_moved() {
    let (kcp, _) = kcp(200, r#"{"res_cd":"0000","amount":"1000"}"#, Duration::ZERO).await;
    assert_unknown(kcp.approve_key_in(&key_in()).await);
}

#[tokio::test]
async fn a_hanging_kcp_is_unknown_after_the_configured_timeout() {
    let (kcp, _) = kcp(200, APPROVED, Duration::from_secs(30)).await;

    let started = std::time::Instant::now();
    let message = assert_unknown(kcp.approve_key_in(&key_in()).await);

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
    assert_unknown(kcp.approve_key_in(&key_in()).await);
}

#[tokio::test]
async fn a_refused_connection_is_unknown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let kcp = connector(&base, Duration::from_secs(2));
    assert_unknown(
        kcp.cancel(&CancelRequest {
            tno: "1".into(),
            kind: CancelKind::Full,
            reason: String::new(),
        })
        .await,
    );
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
    let mut req = key_in();
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
    let prod = KcpUrls::production();
    assert_eq!(prod.hub, "https://spl.kcp.co.kr/gw/hub/v1/payment");
    assert_eq!(
        prod.mobile_trade_register,
        "https://smpay.kcp.co.kr/trade/register.do"
    );
    let local = KcpUrls::with_base("http://127.0.0.1:8080/");
    assert_eq!(local.inquiry, "http://127.0.0.1:8080/std/inquery");
    assert_eq!(
        local.mobile_trade_register,
        "http://127.0.0.1:8080/trade/register.do"
    );
    assert_eq!(
        local.trade_register,
        "http://127.0.0.1:8080/std/tradeReg/register"
    );
}
