//! A sandbox on a real socket and a minimal KCP client written from the spec, for the sandbox's
//! own tests. (The gateway has its own client; this one only exists to drive the sandbox.)
#![allow(dead_code)]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use kcp_sandbox::test_points::BenepiaAccount;
use kcp_sandbox::{keyfile, paths, IssuedCertificate, ManualClock, Sandbox, SandboxConfig};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

pub const SITE: &str = "T0000";
pub const OTHER_SITE: &str = "A52Q7";
pub const PASSPHRASE: &str = "changeit";
/// T0000's batch group: site_cd + 7 digits.
pub const GROUP: &str = "T00001000001";

/// KST 2026-03-10 12:00.
pub fn start_time() -> DateTime<Utc> {
    "2026-03-10T03:00:00Z".parse().unwrap()
}

/// A merchant's credentials: the one-line certificate and the decrypted signing key.
pub struct Merchant {
    pub issued: IssuedCertificate,
    pub cert_info: String,
    pub key: SigningKey<Sha256>,
}

impl Merchant {
    fn new(issued: IssuedCertificate) -> Self {
        let pkcs8 = keyfile::decrypt_private_key_pem(&issued.encrypted_private_key_pem, PASSPHRASE)
            .unwrap();
        let key = RsaPrivateKey::from_pkcs8_der(&pkcs8).unwrap();
        Self {
            cert_info: issued.certificate_pem.replace(['\n', '\r'], ""),
            key: SigningKey::new(key),
            issued,
        }
    }

    pub fn sign(&self, message: &str) -> String {
        STANDARD.encode(self.key.sign(message.as_bytes()).to_bytes())
    }
}

/// Certificates are issued once per test binary: RSA key generation is the slow part.
pub fn merchant(site_cd: &str) -> &'static Merchant {
    static T0000: OnceLock<Merchant> = OnceLock::new();
    static A52Q7: OnceLock<Merchant> = OnceLock::new();
    let cell = match site_cd {
        SITE => &T0000,
        OTHER_SITE => &A52Q7,
        other => panic!("no test merchant {other}"),
    };
    cell.get_or_init(|| {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        Merchant::new(sandbox.issue_certificate(site_cd, PASSPHRASE).unwrap())
    })
}

pub struct Harness {
    pub sandbox: Sandbox,
    pub clock: ManualClock,
    pub base: String,
    pub client: reqwest::Client,
}

pub async fn spawn() -> Harness {
    spawn_with(true).await
}

pub async fn spawn_with(test_mode: bool) -> Harness {
    start(SandboxConfig {
        test_mode,
        ..SandboxConfig::default()
    })
    .await
}

/// A sandbox keeping its books in `state_file` (read if it exists).
pub async fn spawn_keeping(state_file: &std::path::Path) -> Harness {
    start(SandboxConfig {
        state_file: Some(state_file.to_path_buf()),
        ..SandboxConfig::default()
    })
    .await
}

/// `config` on a manual clock at [`start_time`], served on a free port.
async fn start(config: SandboxConfig) -> Harness {
    let clock = ManualClock::new(start_time());
    let sandbox = Sandbox::new(SandboxConfig {
        now: clock.as_now(),
        ..config
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kcp_sandbox::serve(sandbox.clone(), listener));
    Harness {
        sandbox,
        clock,
        base,
        client: reqwest::Client::new(),
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a KCP request and returns the JSON answer, insisting on HTTP 200 like KCP.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// POSTs `form` to `url` as a browser submits a form, and returns the page whatever its
    /// status: how the window tests move from one of KCP's pages to the next.
    pub async fn post_form<T: serde::Serialize + ?Sized>(&self, url: &str, form: &T) -> String {
        self.client
            .post(url)
            .form(form)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GETs a control-API path (`/_sandbox/...`) and returns its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POSTs a fault rule to the control API; its response, whatever the status.
    pub async fn arm_fault(&self, rule: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/_sandbox/faults"))
            .json(rule)
            .send()
            .await
            .unwrap()
    }

    pub async fn pay(&self, body: &Value) -> Value {
        self.post(paths::HUB_PAYMENT, body).await
    }

    /// Approves `amount` with the Shinhan test card and returns the tno.
    pub async fn approved(&self, order_no: &str, amount: &str) -> String {
        let reply = self
            .pay(&key_in(
                SITE,
                kcp_sandbox::test_cards::SHINHAN_CREDIT,
                order_no,
                amount,
            ))
            .await;
        assert_eq!(reply["res_cd"], "0000", "{reply}");
        reply["tno"].as_str().unwrap().to_owned()
    }

    pub async fn cancel(&self, tno: &str, mod_type: &str, extra: Value) -> Value {
        let merchant = merchant(SITE);
        let mut body = json!({
            "site_cd": SITE,
            "kcp_cert_info": merchant.cert_info,
            "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^{mod_type}")),
            "tno": tno,
            "mod_type": mod_type,
            "mod_desc": "가맹점 DB 처리 실패(자동취소)",
        });
        merge(&mut body, extra);
        self.post(paths::CANCEL, &body).await
    }

    pub async fn partial_cancel(&self, tno: &str, mod_mny: &str, rem_mny: &str) -> Value {
        self.cancel(tno, "STPC", json!({"mod_mny": mod_mny, "rem_mny": rem_mny}))
            .await
    }

    pub async fn inquire_tno(&self, tno: &str) -> Value {
        let merchant = merchant(SITE);
        self.post(
            paths::INQUIRY,
            &json!({
                "site_cd": SITE,
                "kcp_cert_info": merchant.cert_info,
                "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^PACA")),
                "tno": tno,
                "pay_type": "PACA",
            }),
        )
        .await
    }

    /// An inquiry by tno with any `pay_type` (`PACA`, `PAPT`).
    pub async fn inquire_as(&self, pay_type: &str, tno: &str) -> Value {
        let merchant = merchant(SITE);
        self.post(
            paths::INQUIRY,
            &json!({
                "site_cd": SITE,
                "kcp_cert_info": merchant.cert_info,
                "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^{pay_type}")),
                "tno": tno,
                "pay_type": pay_type,
            }),
        )
        .await
    }

    /// An inquiry by order number with any `pay_type`.
    pub async fn inquire_order_as(&self, pay_type: &str, order_no: &str) -> Value {
        let merchant = merchant(SITE);
        self.post(
            paths::INQUIRY,
            &json!({
                "site_cd": SITE,
                "kcp_cert_info": merchant.cert_info,
                "kcp_sign_data": merchant.sign(&format!("{SITE}^{order_no}^{pay_type}")),
                "order_no": order_no,
                "pay_type": pay_type,
            }),
        )
        .await
    }

    /// Issues a batch key for `card_no` in [`GROUP`] and returns it.
    pub async fn batch_key(&self, card_no: &str) -> String {
        let reply = self.pay(&batch_issue(SITE, GROUP, card_no)).await;
        assert_eq!(reply["res_cd"], "0000", "{reply}");
        reply["batch_key"].as_str().unwrap().to_owned()
    }

    /// `STRA` on a cancelled point payment.
    pub async fn reapprove(&self, tno: &str, mod_mny: &str, mod_ordr_idxx: &str) -> Value {
        self.cancel(
            tno,
            "STRA",
            json!({"mod_mny": mod_mny, "mod_ordr_idxx": mod_ordr_idxx, "mod_ordr_goods": "운동화"}),
        )
        .await
    }

    pub async fn inquire_order(&self, order_no: &str) -> Value {
        let merchant = merchant(SITE);
        self.post(
            paths::INQUIRY,
            &json!({
                "site_cd": SITE,
                "kcp_cert_info": merchant.cert_info,
                "kcp_sign_data": merchant.sign(&format!("{SITE}^{order_no}^PACA")),
                "tno": "",
                "order_no": order_no,
                "pay_type": "PACA",
            }),
        )
        .await
    }
}

/// The named inputs of a page, in order, as a browser would post them back (`&amp;` decoded).
/// Shared by the window tests, which all read KCP's pages as the buyer's browser does.
pub fn inputs(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        Some(tag[start..start + tag[start..].find('"')?].replace("&amp;", "&"))
    };
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap()];
        if let Some(name) = attr(tag, "name") {
            out.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + 6..];
    }
    out
}

/// The value of field `k` of [`inputs`], "" when the page has none.
pub fn get<'a>(fields: &'a [(String, String)], k: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The approval (`/gw/enc/v1/payment`) of a window's answer `fields` for `ordr_mony`, as
/// T0000's server sends it: shared by the mobile and PC window tests, whose answers KCP
/// approves alike.
pub fn approval(fields: &[(String, String)], ordr_mony: &str, pay_type: &str) -> Value {
    json!({"tran_cd": get(fields, "tran_cd"), "site_cd": "T0000", "kcp_cert_info": merchant("T0000").cert_info,
           "enc_data": get(fields, "enc_data"), "enc_info": get(fields, "enc_info"), "ordr_mony": ordr_mony, "pay_type": pay_type})
}

/// A non-authenticated key-in request as spec/kcp.md §2.7 lists it.
pub fn key_in(site_cd: &str, card_no: &str, order_no: &str, amount: &str) -> Value {
    json!({
        "site_cd": site_cd,
        "kcp_cert_info": merchant(site_cd).cert_info,
        "pay_method": "CARD",
        "cust_ip": "",
        "amount": amount,
        "card_mny": amount,
        "currency": "410",
        "quota": "00",
        "ordr_idxx": order_no,
        "good_name": "테스트 상품",
        "buyr_name": "홍길동",
        "buyr_mail": "buyer@example.com",
        "buyr_tel2": "010-0000-0000",
        "card_tx_type": "11111000",
        "card_no": card_no,
        "card_expiry": "3012",
    })
}

/// An authenticated key-in: birth date and PIN prefix added.
pub fn authenticated_key_in(card_no: &str, order_no: &str, taxno: &str, pwd: &str) -> Value {
    let mut body = key_in(SITE, card_no, order_no, "1000");
    merge(
        &mut body,
        json!({"card_tx_type": "11121000", "card_taxno": taxno, "card_pwd": pwd}),
    );
    body
}

pub fn merge(body: &mut Value, extra: Value) {
    let (Value::Object(body), Value::Object(extra)) = (body, extra) else {
        panic!("merge needs objects");
    };
    body.extend(extra);
}

/// A batch key issuance without a window (the sandbox's documented form, `card_tx_type`
/// 12100000).
pub fn batch_issue(site_cd: &str, group_id: &str, card_no: &str) -> Value {
    json!({
        "site_cd": site_cd,
        "kcp_cert_info": merchant(site_cd).cert_info,
        "pay_method": "CARD",
        "card_tx_type": "12100000",
        "sign_txtype": "0001",
        "group_id": group_id,
        "ordr_idxx": "issue1",
        "card_no": card_no,
        "card_expiry": "3012",
        "buyr_name": "홍길동",
    })
}

/// A batch key deletion as spec/kcp.md §2.6 lists it.
pub fn batch_delete(site_cd: &str, group_id: &str, batch_key: &str) -> Value {
    json!({
        "site_cd": site_cd,
        "kcp_cert_info": merchant(site_cd).cert_info,
        "batch_key": batch_key,
        "group_id": group_id,
        "pay_method": "BATCH",
        "tx_type": "10005010",
    })
}

/// A batch payment as spec/kcp.md §2.6 lists it.
pub fn batch_pay(site_cd: &str, batch_key: &str, order_no: &str, amount: &str) -> Value {
    json!({
        "site_cd": site_cd,
        "kcp_cert_info": merchant(site_cd).cert_info,
        "pay_method": "CARD",
        "cust_ip": "",
        "amount": amount,
        "card_mny": amount,
        "currency": "410",
        "quota": "00",
        "ordr_idxx": order_no,
        "good_name": "정기구독",
        "buyr_name": "홍길동",
        "buyr_mail": "",
        "buyr_tel2": "",
        "card_tx_type": "11511000",
        "bt_batch_key": batch_key,
        "bt_group_id": GROUP,
    })
}

/// A Benepia balance inquiry (seed 003 §2.2).
pub fn point_balance(account: &BenepiaAccount) -> Value {
    json!({
        "site_cd": SITE,
        "kcp_cert_info": merchant(SITE).cert_info,
        "pay_method": "POINT",
        "amount": "1004",
        "currency": "410",
        "cust_ip": "0.0.0.0",
        "pt_issue": "SCWB",
        "pt_txtype": "97000000",
        "pt_idno": account.id,
        "pt_pwd": account.password,
        "pt_memcorp_cd": account.memcorp_cd,
        "ordr_idxx": "balance1",
    })
}

/// A Benepia point payment (seed 003 §2.3).
pub fn point_pay(account: &BenepiaAccount, order_no: &str, amount: &str) -> Value {
    json!({
        "site_cd": SITE,
        "kcp_cert_info": merchant(SITE).cert_info,
        "pay_method": "POINT",
        "amount": amount,
        "currency": "410",
        "cust_ip": "0.0.0.0",
        "pt_issue": "SCWB",
        "pt_txtype": "91200000",
        "pt_idno": account.id,
        "pt_pwd": account.password,
        "pt_memcorp_cd": account.memcorp_cd,
        "pt_paycode": "04",
        "pt_mny": amount,
        "ordr_idxx": order_no,
        "good_name": "운동화",
        "buyr_name": "홍길동",
        "buyr_mail": "test@kcp.co.kr",
        "buyr_tel2": "010-000-0000",
    })
}

/// A window-less virtual-account issuance (`pay_method` VCNT, the field set of KCP's pp_cli
/// sample, docs/sandbox.md §2.3): 7,000 won at 수협 (`BK07`), due KST 2026-03-17 23:59:59, to be
/// paid in by 홍길동.
pub fn vbank_issue(order_no: &str) -> Value {
    json!({
        "site_cd": SITE,
        "kcp_cert_info": merchant(SITE).cert_info,
        "pay_method": "VCNT",
        "cust_ip": "",
        "amount": "7000",
        "va_mny": "7000",
        "currency": "410",
        "ordr_idxx": order_no,
        "good_name": "테스트 상품",
        "buyr_name": "홍길동",
        "buyr_mail": "buyer@example.com",
        "buyr_tel2": "01012345678",
        "va_txtype": "41100000",
        "va_bankcode": "BK07",
        "va_name": "홍길동",
        "va_date": "20260317235959",
        "va_receipt_gubn": "0",
    })
}
