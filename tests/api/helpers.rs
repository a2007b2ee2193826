//! `spawn_app()`: a real openport with its embedded KCP sandbox on random ports and a fresh database.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;

use openport::clock::{Clock, ClockControl};
use openport::config::Config;
use openport::service::merchants::{NewMerchant, DEMO_IMP_KEY, DEMO_IMP_SECRET};
use openport::App;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789abcdef";
pub use kcp_sandbox::test_cards;

/// The settle delay tests run with: longer than the attempt hold of the KCP timeout below (three
/// timeouts, 4.5 s), with no clock skew allowed ([`spawn_app_with`]).
pub const SETTLE_SECS: i64 = 5;
pub const KCP_TIMEOUT_MS: u64 = 1500;

/// KCP's public test site, of every test-mode merchant of the tests.
pub const TEST_SITE_CD: &str = "T0000";

/// The site code of a live instance's first merchant in the tests: a live start refuses KCP's
/// public test sites (T0000, T0007, A52Q7) as the seed's `KCP_SITE_CD`, as a real live deployment
/// is configured with the site code of its own KCP contract.
pub const LIVE_SITE_CD: &str = "AB123";

/// One certificate per site and test binary: issuing RSA keys is slow.
struct TestCredentials {
    cert_pem: String,
    key_path: String,
    key_pem: String,
    passphrase: String,
}

/// A sandbox-issued certificate for `site_cd` and its encrypted key, written to a file of its own.
fn issue_credentials(site_cd: &str) -> TestCredentials {
    let sb = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).expect("sandbox");
    let issued = sb
        .issue_certificate(site_cd, "test-passphrase")
        .expect("issue certificate");
    let path = std::env::temp_dir().join(format!(
        "openport-test-key-{site_cd}-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, &issued.encrypted_private_key_pem).expect("write key");
    TestCredentials {
        cert_pem: issued.certificate_pem,
        key_path: path.to_string_lossy().into_owned(),
        key_pem: issued.encrypted_private_key_pem,
        passphrase: "test-passphrase".into(),
    }
}

/// The pair of [`TEST_SITE_CD`], every test-mode merchant's.
fn credentials() -> &'static TestCredentials {
    static CREDS: OnceLock<TestCredentials> = OnceLock::new();
    CREDS.get_or_init(|| issue_credentials(TEST_SITE_CD))
}

/// The pair of [`LIVE_SITE_CD`], a live instance's first merchant's.
fn live_credentials() -> &'static TestCredentials {
    static CREDS: OnceLock<TestCredentials> = OnceLock::new();
    CREDS.get_or_init(|| issue_credentials(LIVE_SITE_CD))
}

pub struct TestApp {
    pub app: App,
    pub base: String,
    pub http: reqwest::Client,
    pub sandbox: kcp_sandbox::Sandbox,
    pub database_url: String,
    clock: Arc<ClockControl>,
    _dir: Option<tempfile::TempDir>,
    /// Where `serve`'s first live merchant writes its credentials file in tests.
    pub credentials_dir: tempfile::TempDir,
}

/// A fresh database URL: a temp SQLite file, or a new database on the PostgreSQL of `DATABASE_URL`.
pub async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            use sea_orm::sqlx::Connection;
            let name = format!("openport_test_{}", openport::domain::ids::random_hex(6));
            let mut conn = sea_orm::sqlx::PgConnection::connect(&url)
                .await
                .expect("connect to DATABASE_URL");
            sea_orm::sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create database");
            let base = url
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .expect("postgres URL with a database");
            (format!("{base}/{name}"), None)
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("openport.db").display()
            );
            (url, Some(dir))
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Every log line of this test binary, at DEBUG and above for all targets (our code, sqlx,
/// sea-orm, hyper), kept so a test can prove no secret or card number is ever logged.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<std::sync::Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(openport::logging::filter(Some("debug")))
            .with_writer(move || LogWriter(writer_buf.clone()))
            .with_ansi(false)
            .try_init();
        buf
    })
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    log_buffer();
    let creds = credentials();
    let (database_url, dir) = fresh_database().await;
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        admin_token: Some(SecretString::from(ADMIN_TOKEN)),
        ..Config::default()
    };
    config.sandbox.listen = "127.0.0.1:0".parse().unwrap();
    // In memory, as before the state file: a test that wants one names it.
    config.sandbox.state_file = Some(String::new());
    config.background_jobs = false; // tests drive the resolver, scheduler and webhooks themselves
    config.resolver.settle_secs = SETTLE_SECS;
    config.kcp.timeout_ms = KCP_TIMEOUT_MS;
    // Every instance of a test runs on this host, on its one clock: no skew to allow for in the
    // settle delay (which must otherwise outlast the hold by it), and the clock-check tests judge
    // readings with a bound of their own.
    config.resolver.max_clock_skew_secs = 0;
    config.kcp.site_cd = Some(TEST_SITE_CD.into());
    config.kcp.cert_info = Some(creds.cert_pem.clone());
    config.kcp.private_key_path = Some(creds.key_path.clone());
    config.kcp.private_key_password = Some(SecretString::from(creds.passphrase.clone()));
    adjust(&mut config);
    if !config.test_mode && config.kcp.site_cd.as_deref() == Some(TEST_SITE_CD) {
        seed_live_site(&mut config);
    }
    let database_url = config.database_url.clone();
    let (clock, control) = Clock::shifted();
    let credentials_dir = tempfile::tempdir().expect("tempdir");
    let seeding = openport::app::Seeding::FirstMerchant {
        credentials_dir: credentials_dir.path().to_path_buf(),
    };
    let app = App::build_with(config, clock, seeding)
        .await
        .expect("openport starts");
    // An instance configured with an external sandbox gets a detached one here, never called;
    // its tests look at the serving instance's sandbox.
    let sandbox = match &app.sandbox {
        Some(embedded) => embedded.sandbox.clone(),
        None => kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).expect("sandbox"),
    };
    TestApp {
        database_url,
        base: format!("http://{}", app.addr),
        app,
        http: reqwest::Client::new(),
        sandbox,
        clock: control,
        _dir: dir,
        credentials_dir,
    }
}

/// A live instance whose `KCP_SITE_CD` was left at the helper's [`TEST_SITE_CD`] is seeded as a
/// live deployment is: [`LIVE_SITE_CD`], with that site's certificate, key and passphrase where
/// the test left the helper's ones (a test that gives its own pair keeps it).
fn seed_live_site(config: &mut Config) {
    let (test, live) = (credentials(), live_credentials());
    config.kcp.site_cd = Some(LIVE_SITE_CD.into());
    if config.kcp.cert_info.as_deref() == Some(test.cert_pem.as_str()) {
        config.kcp.cert_info = Some(live.cert_pem.clone());
    }
    if config.kcp.private_key_path.as_deref() == Some(test.key_path.as_str()) {
        config.kcp.private_key_path = Some(live.key_path.clone());
    }
    if config
        .kcp
        .private_key_password
        .as_ref()
        .is_some_and(|p| p.expose_secret() == test.passphrase)
    {
        config.kcp.private_key_password = Some(SecretString::from(live.passphrase.clone()));
    }
}

/// The imp_uid an answer's message names (`(imp_uid: imp_…)` or `(imp_uid: imps_…, attempt N)`):
/// read up to the `)` or `,` that ends it, so a scheduled charge's `imps_` id (17 characters) is
/// read whole as a key-in's `imp_` one (16).
pub fn imp_uid_in(message: &Value) -> String {
    let m = message
        .as_str()
        .unwrap_or_else(|| panic!("no message: {message}"));
    let start = m
        .find("(imp_uid: ")
        .unwrap_or_else(|| panic!("the message names no imp_uid: {m}"))
        + "(imp_uid: ".len();
    let len = m[start..]
        .find([')', ','])
        .unwrap_or_else(|| panic!("the imp_uid is not closed: {m}"));
    m[start..start + len].to_string()
}

#[test]
fn imp_uid_in_reads_key_in_and_scheduled_ids_whole() {
    let named = |m: &str| imp_uid_in(&Value::from(m));
    assert_eq!(
        named("확인 중 (imp_uid: imp_123456789012)"),
        "imp_123456789012"
    );
    assert_eq!(
        named("운영자 확인이 필요합니다. (imp_uid: imps_123456789012, attempt 7)"),
        "imps_123456789012"
    );
}

/// How long a test waits for armed faults to be used before it fails.
const FAULTS_USED_WITHIN: Duration = Duration::from_secs(5);

/// A future card expiry in iamport's `YYYY-MM`.
pub fn future_expiry() -> String {
    "2031-12".into()
}

impl TestApp {
    /// Another openport instance on this one's database whose KCP refuses connections (a port
    /// nothing listens on): nothing it asks of KCP can have been sent.
    pub async fn cut_off_from_kcp(&self) -> TestApp {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        self.another_instance(move |c| c.kcp.api_base = Some(nowhere))
            .await
    }

    /// Another openport instance on this one's database, calling this one's KCP sandbox (several
    /// instances sharing one database, master-key rotation); `adjust` sets anything else.
    pub async fn another_instance(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let database_url = self.database_url.clone();
        let sandbox = self
            .app
            .sandbox
            .as_ref()
            .map(|s| format!("http://{}", s.addr));
        spawn_app_with(move |c| {
            c.database_url = database_url;
            c.kcp.api_base = sandbox;
            c.sandbox.embedded = Some(false);
            adjust(c);
        })
        .await
    }

    /// Stops this instance as a graceful shutdown does and starts a new one on the same database
    /// (its temporary directory kept), with an embedded sandbox of its own, never this one's;
    /// `adjust` sets anything else, e.g. the sandbox state file the new sandbox reads.
    pub async fn restart(self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let TestApp {
            app,
            database_url,
            _dir: dir,
            ..
        } = self;
        app.shutdown().await;
        let mut restarted = spawn_app_with(move |c| {
            c.database_url = database_url;
            adjust(c);
        })
        .await;
        restarted._dir = dir;
        restarted
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Moves the clock of the gateway and the sandbox forward.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// Stops the clock of the gateway and the sandbox: from then on only [`Self::advance`] moves
    /// it.
    pub fn stop_clock(&self) {
        self.clock.stop();
    }

    pub async fn token_for(&self, key: &str, secret: &str) -> String {
        let (status, body) = self
            .post(
                "/users/getToken",
                None,
                json!({"imp_key": key, "imp_secret": secret}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["response"]["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn token(&self) -> String {
        self.token_for(DEMO_IMP_KEY, DEMO_IMP_SECRET).await
    }

    /// A second merchant (same test KCP site) with its own credentials: (imp_key, imp_secret).
    pub async fn second_merchant(&self) -> (String, String) {
        self.merchant_on_kcp(None).await
    }

    /// A merchant as [`Self::second_merchant`], on its own KCP origin when `kcp_api_base` names
    /// one.
    pub async fn merchant_on_kcp(&self, kcp_api_base: Option<&str>) -> (String, String) {
        self.merchant_with(kcp_api_base, None).await
    }

    /// A merchant as [`Self::second_merchant`] whose KCP batch group id is `kcp_group_id`.
    pub async fn merchant_in_group(&self, kcp_group_id: &str) -> (String, String) {
        self.merchant_with(None, Some(kcp_group_id)).await
    }

    async fn merchant_with(
        &self,
        kcp_api_base: Option<&str>,
        kcp_group_id: Option<&str>,
    ) -> (String, String) {
        let creds = credentials();
        let created = self
            .app
            .gateway
            .create_merchant(NewMerchant {
                name: "other shop".into(),
                site_cd: "T0000".into(),
                certificate_pem: creds.cert_pem.clone(),
                private_key_pem: creds.key_pem.clone(),
                private_key_passphrase: SecretString::from(creds.passphrase.clone()),
                test_mode: true,
                credentials: None,
                kcp_api_base: kcp_api_base.map(str::to_string),
                kcp_group_id: kcp_group_id.map(str::to_string),
            })
            .await
            .unwrap_or_else(|e| panic!("second merchant: {e}"));
        (
            created.merchant.imp_key,
            created.imp_secret.expose_secret().to_string(),
        )
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        Self::read(req.send().await.expect("request")).await
    }

    /// A form-encoded POST, the fields as given (repeats and bracketed keys kept).
    pub async fn post_form(
        &self,
        path: &str,
        token: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url(path))
            .header("Authorization", token)
            .form(fields);
        Self::read(req.send().await.expect("request")).await
    }

    /// A POST of `body` exactly as given, with `content_type`: for bodies a client writes itself
    /// (odd spellings of forms and JSON the typed helpers would tidy away).
    pub async fn post_text(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url(path))
            .header("Authorization", token)
            .header("Content-Type", content_type)
            .body(body);
        Self::read(req.send().await.expect("request")).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let req = self
            .http
            .put(self.url(path))
            .header("Authorization", token)
            .json(&body);
        Self::read(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        Self::read(req.send().await.expect("request")).await
    }

    pub async fn read(res: reqwest::Response) -> (StatusCode, Value) {
        let status = res.status();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = res.text().await.expect("body");
        assert_eq!(
            ct.as_deref(),
            Some("application/json; charset=UTF-8"),
            "content type of {text}"
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    /// `POST /subscribe/payments/onetime` with an authenticated test card.
    pub async fn pay(
        &self,
        token: &str,
        merchant_uid: &str,
        amount: i64,
        card: &str,
    ) -> (StatusCode, Value) {
        self.post(
            "/subscribe/payments/onetime",
            Some(token),
            json!({
                "merchant_uid": merchant_uid, "amount": amount, "card_number": card,
                "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
                "name": "테스트 상품", "buyer_name": "홍길동", "buyer_email": "buyer@example.com", "buyer_tel": "010-1234-5678"
            }),
        )
        .await
    }

    /// `GET /payments/{imp_uid}`: the Payment object (`null` when not found).
    pub async fn payment(&self, token: &str, imp_uid: &str) -> Value {
        self.get(&format!("/payments/{imp_uid}"), Some(token))
            .await
            .1["response"]
            .clone()
    }

    /// Pays and returns the paid Payment object.
    pub async fn paid(&self, token: &str, merchant_uid: &str, amount: i64) -> Value {
        let (status, body) = self
            .pay(token, merchant_uid, amount, test_cards::SHINHAN_CREDIT)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["code"], 0, "{body}");
        assert_eq!(body["response"]["status"], "paid", "{body}");
        body["response"].clone()
    }

    /// `POST /payments/cancel` for `amount` of the payment: the envelope, whatever it says (the
    /// status is not looked at: refusals answer 200 too).
    pub async fn cancel(&self, token: &str, imp_uid: &str, amount: i64) -> Value {
        self.post(
            "/payments/cancel",
            Some(token),
            json!({"imp_uid": imp_uid, "amount": amount}),
        )
        .await
        .1
    }

    /// The same cancel in the background, while the test acts meanwhile (arms faults, runs the
    /// resolver) before it reads the answer.
    pub fn cancel_in_background(
        &self,
        token: &str,
        imp_uid: &str,
        amount: i64,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let request = self
            .http
            .post(self.url("/payments/cancel"))
            .header("Authorization", token)
            .json(&json!({"imp_uid": imp_uid, "amount": amount}));
        tokio::spawn(async move { Self::read(request.send().await.expect("request")).await })
    }

    /// `DELETE /vbanks/{imp_uid}` (a revocation) in the background, for a test that holds its KCP
    /// calls meanwhile: its status and body once answered.
    pub fn revoke_in_background(
        &self,
        token: &str,
        imp_uid: &str,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let request = self
            .http
            .delete(self.url(&format!("/vbanks/{imp_uid}")))
            .header("Authorization", token);
        tokio::spawn(async move { Self::read(request.send().await.expect("request")).await })
    }

    /// Runs the resolver in the background with KCP's answer to its inquiry held at `gate`, and
    /// returns once KCP has answered the inquiry (the answer held): what the test lets KCP do
    /// from then on, before it opens `gate`, makes that answer stale (e.g. KCP confirms the call
    /// the resolver asks about to its own request meanwhile). A gate, not a slow answer: with a
    /// timer, the inquiry had to reach KCP before the call it asks about and its answer had to
    /// arrive after, each by a margin of a few hundred milliseconds, and a stalled test thread
    /// turned the stale answer into a timeout or a fresh one.
    pub async fn resolve_due_with_its_inquiry_held(
        &self,
        gate: &str,
    ) -> tokio::task::JoinHandle<openport::service::ServiceResult<usize>> {
        self.sandbox.inject(kcp_sandbox::FaultRule::new(
            kcp_sandbox::paths::INQUIRY,
            kcp_sandbox::Fault::HoldAnswer { gate: gate.into() },
        ));
        let gateway = self.app.gateway.clone();
        let resolver = tokio::spawn(async move { gateway.resolve_due(10).await });
        self.sandbox.until_held(gate).await;
        resolver
    }

    /// Waits until every armed fault has been used (the calls they were armed for reached KCP);
    /// fails the test when one is still unused after [`FAULTS_USED_WITHIN`], rather than hang.
    pub async fn until_the_faults_are_used(&self) {
        let deadline = tokio::time::Instant::now() + FAULTS_USED_WITHIN;
        while !self.sandbox.armed_faults().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "faults never used: {:?}",
                self.sandbox.armed_faults()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The attempts left to the operator as conflicts (the first ten).
    pub async fn conflicts(&self) -> Vec<openport::service::attempts::OpenAttempt> {
        self.app.gateway.conflict_attempts(10).await.unwrap()
    }

    /// Runs the resolver until no attempt is open (bounded).
    pub async fn resolve_all(&self) {
        for _ in 0..20 {
            self.app.gateway.resolve_due(1000).await.expect("resolver");
            let open = openport::store::payments::count_open_attempts(&self.app.gateway.db.read)
                .await
                .unwrap();
            if open == 0 {
                return;
            }
            self.advance(400);
        }
        panic!("attempts still open after the resolver ran");
    }

    /// The money invariant: KCP's ledger and openport's payments agree exactly.
    /// No approval without a paid (or net-cancelled / cancelled) payment; no paid payment without an
    /// approval; an open virtual account is a `ready` payment and the other way round.
    pub async fn assert_ledger_agrees(&self) {
        let payments = openport::store::payments::all_payments(&self.app.gateway.db.read)
            .await
            .unwrap();
        let ledger = self.sandbox.ledger();
        for entry in &ledger {
            // A point re-approval (STRA, partial cancel of points) carries its own order number:
            // it belongs to the payment of the approval it re-approves.
            let mut root = entry;
            while let Some(orig) = root.reapproval_of.as_deref() {
                root = ledger
                    .iter()
                    .find(|e| e.tno == orig)
                    .expect("re-approved tno in the ledger");
            }
            let p = payments
                .iter()
                .find(|p| p.order_no == root.order_no)
                .unwrap_or_else(|| {
                    panic!(
                        "KCP approval {} ({}) has no payment in openport",
                        entry.tno, entry.order_no
                    )
                });
            // A point approval cancelled and re-approved is superseded: the payment follows the
            // re-approval's tno and balance.
            if let Some(next) = &entry.reapproved_by {
                assert!(
                    matches!(entry.state, kcp_sandbox::TransactionState::Cancelled),
                    "re-approved {} is not cancelled",
                    entry.tno
                );
                assert_ne!(
                    p.pg_tid.as_deref(),
                    Some(entry.tno.as_str()),
                    "{} still points at {} (re-approved as {next})",
                    p.imp_uid,
                    entry.tno
                );
                continue;
            }
            assert_eq!(
                p.pg_tid.as_deref(),
                Some(entry.tno.as_str()),
                "tno of {}",
                p.imp_uid
            );
            match entry.state {
                kcp_sandbox::TransactionState::Cancelled => assert!(
                    p.status == "failed"
                        || (p.status == "cancelled" && p.cancel_amount == p.amount),
                    "KCP cancelled {} but openport shows {} ({}/{})",
                    entry.tno,
                    p.status,
                    p.cancel_amount,
                    p.amount
                ),
                // A virtual account issued and not paid in full: waiting for its deposit.
                kcp_sandbox::TransactionState::Issued => assert_eq!(
                    p.status, "ready",
                    "KCP holds the open account {} but openport shows {}",
                    entry.tno, p.status
                ),
                _ => {
                    assert!(
                        p.status == "paid" || p.status == "cancelled",
                        "KCP approved {} but openport shows {}",
                        entry.tno,
                        p.status
                    );
                    assert_eq!(
                        p.amount - p.cancel_amount,
                        entry.balance,
                        "balance of {}",
                        p.imp_uid
                    );
                }
            }
        }
        for p in &payments {
            assert_ne!(p.status, "pending", "{} still pending", p.imp_uid);
            // A ready payment with a tno is an issued virtual account: KCP must hold it too.
            if p.status == "paid"
                || p.status == "cancelled"
                || (p.status == "ready" && p.pg_tid.is_some())
            {
                assert!(
                    ledger
                        .iter()
                        .any(|e| Some(e.tno.as_str()) == p.pg_tid.as_deref()),
                    "openport shows {} {} without a KCP approval",
                    p.imp_uid,
                    p.status
                );
            }
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
    /// When the request reached the receiver (before any [`Receiver::slow`] delay).
    pub arrived: std::time::Instant,
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Received>,
    /// Statuses to answer with, in order; then `200`.
    script: VecDeque<u16>,
    /// Answer every request with this status once the script is used up (default 200).
    always: Option<u16>,
    delay: Duration,
}

/// A merchant's webhook endpoint: an axum server on 127.0.0.1:0 that records every request.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    base: String,
}

impl Received {
    /// The body as JSON (webhooks in the merchant's default JSON format).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// Verifies `webhook-signature` as a Standard Webhooks receiver does, with each of `keys`:
    /// for each space-separated signature in order, the index of the key it verifies with.
    /// Panics on a signature that none of them made.
    pub fn signers(&self, keys: &[&[u8]]) -> Vec<usize> {
        use base64::Engine;
        use hmac::Mac;
        let header = |name: &str| self.headers[name].to_str().unwrap().to_string();
        let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
        let expected: Vec<String> = keys
            .iter()
            .map(|key| {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                mac.update(format!("{id}.{ts}.{}", self.body).as_bytes());
                let sig = mac.finalize().into_bytes();
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(sig)
                )
            })
            .collect();
        header("webhook-signature")
            .split(' ')
            .map(|sig| {
                expected
                    .iter()
                    .position(|e| e == sig)
                    .unwrap_or_else(|| panic!("{sig} verifies with none of the keys"))
            })
            .collect()
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move {
                    let (status, delay) = {
                        let mut s = shared.lock().unwrap();
                        s.requests.push(Received {
                            path: uri.path().to_string(),
                            query: uri.query().map(str::to_string),
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                            arrived: std::time::Instant::now(),
                        });
                        let status = s.script.pop_front().or(s.always).unwrap_or(200);
                        (status, s.delay)
                    };
                    tokio::time::sleep(delay).await;
                    let status = axum::http::StatusCode::from_u16(status).unwrap();
                    let body = if status.is_success() {
                        "OK".to_string()
                    } else {
                        "x".repeat(1000)
                    };
                    (status, body)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            state,
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    pub fn always(&self, status: u16) {
        self.state.lock().unwrap().always = Some(status);
    }

    pub fn recover(&self) {
        let mut s = self.state.lock().unwrap();
        s.script.clear();
        s.always = None;
    }

    pub fn slow(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// A webhook receiver that accepts connections and never answers (a "tarpit"): every POST to it
/// holds its connection until the gateway's 30 s timeout. It counts the connections it accepted,
/// which are the POSTs in flight to it while that timeout has not run out.
pub struct Tarpit {
    base: String,
    accepted: Arc<AtomicUsize>,
}

impl Tarpit {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            // Held, never read and never closed, until the test ends.
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { base, accepted }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A pending `failed` webhook for `p` to `url`, as an outcome write puts it in the outbox.
pub fn failed_webhook_row(
    p: &openport::store::entity::payment::Model,
    url: &str,
) -> openport::store::entity::webhook_delivery::ActiveModel {
    use sea_orm::Set;
    openport::store::entity::webhook_delivery::ActiveModel {
        merchant_id: Set(p.merchant_id),
        imp_uid: Set(p.imp_uid.clone()),
        merchant_uid: Set(p.merchant_uid.clone()),
        status: Set("failed".into()),
        cancellation_id: Set(None),
        url: Set(url.into()),
        content_type: Set("json".into()),
        state: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(0),
        lease_until: Set(0),
        last_http_status: Set(None),
        last_error: Set(None),
        created_at: Set(0),
        updated_at: Set(0),
        ..Default::default()
    }
}

/// The test KCP site's certificate (PEM), the path of its encrypted key and the key's passphrase,
/// for an `openport` process configured through `KCP_*`.
pub fn kcp_test_credentials() -> (String, String, String) {
    let creds = credentials();
    (
        creds.cert_pem.clone(),
        creds.key_path.clone(),
        creds.passphrase.clone(),
    )
}

/// A live site's code ([`LIVE_SITE_CD`]), its certificate (PEM), the path of its encrypted key and
/// the key's passphrase, for a live `openport` process configured through `KCP_*`: a live start
/// refuses KCP's public test sites as `KCP_SITE_CD`.
pub fn kcp_live_credentials() -> (String, String, String, String) {
    let creds = live_credentials();
    (
        LIVE_SITE_CD.to_string(),
        creds.cert_pem.clone(),
        creds.key_path.clone(),
        creds.passphrase.clone(),
    )
}

/// A running `openport` binary (`serve`, usually), read up to the line
/// `openport listening on http://ADDR`; killed when dropped. Its stdout and stderr are drained
/// meanwhile, so a chatty process never blocks on a full pipe.
pub struct ServeProcess {
    child: std::process::Child,
    /// `http://ADDR` of the gateway.
    pub base: String,
    /// What it printed up to and including the listening line.
    pub stdout: String,
    /// Every line it has printed so far, on stdout and stderr.
    printed: Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Every line the process has printed so far (its log lines among them).
    pub fn printed(&self) -> String {
        self.printed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts `command` and waits (60 s at most) for its listening line.
    pub fn start(mut command: std::process::Command) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the openport binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let printed = Arc::new(std::sync::Mutex::new(String::new()));
        let keep = |line: &str, printed: &std::sync::Mutex<String>| {
            let mut all = printed.lock().unwrap_or_else(|p| p.into_inner());
            all.push_str(line);
            all.push('\n');
        };
        let errors = {
            let printed = printed.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    keep(&line, &printed);
                }
            })
        };
        let (lines, received) = std::sync::mpsc::channel();
        {
            let printed = printed.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    keep(&line, &printed);
                    // Once the listening line is read nobody receives: keep draining regardless.
                    let _ = lines.send(line);
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(addr) = line.strip_prefix("openport listening on ") {
                        return Self {
                            child,
                            base: addr.trim().to_string(),
                            stdout: seen,
                            printed,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Once stderr is read to its end, `printed` holds all of it.
                    let _ = errors.join();
                    panic!(
                        "openport did not start listening\nprinted (stdout and stderr):\n{}",
                        printed.lock().unwrap_or_else(|p| p.into_inner())
                    );
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `openport` binary in test mode (its default) on `database_url`, listening on a free port,
/// run in `dir` with no other environment, so nothing of the caller's shell (a `DATABASE_URL`,
/// `KCP_*`) reaches it.
pub fn openport_in_test_mode(
    dir: &std::path::Path,
    database_url: &str,
    args: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_openport"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("OPENPORT_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", database_url);
    command
}

/// `POST /users/getToken` with the demo merchant's credentials, to a `serve` process.
pub async fn demo_token_request(served: &ServeProcess) -> (StatusCode, Value) {
    use openport::service::merchants::{DEMO_IMP_KEY, DEMO_IMP_SECRET};
    post_to(
        served,
        "/users/getToken",
        None,
        json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
    )
    .await
}

/// `POST` of a JSON body to a gateway served by a [`ServeProcess`].
pub async fn post_to(
    served: &ServeProcess,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(served.url(path)).json(&body);
    if let Some(t) = token {
        req = req.header("Authorization", t);
    }
    TestApp::read(req.send().await.expect("the gateway answers")).await
}

/// Runs SQL `statements` on the gateway's database, in order, each one required to succeed.
pub async fn execute(app: &TestApp, statements: Vec<String>) {
    use sea_orm::ConnectionTrait;
    for sql in statements {
        app.app
            .gateway
            .db
            .write
            .execute_unprepared(&sql)
            .await
            .unwrap();
    }
}

/// Makes the database refuse the `event` (`INSERT` or `UPDATE`) of every row of `table` for which
/// the SQL condition `when` (on `NEW`, and `OLD` for an update) holds, as a failed write would,
/// until [`allow_writes`] takes the trigger `name` away. One trigger for SQLite and PostgreSQL
/// alike, shared by every test that needs a write to fail part-way.
pub async fn refuse_writes(app: &TestApp, name: &str, event: &str, table: &str, when: &str) {
    let statements = if app.database_url.starts_with("postgres") {
        vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF {when} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION {name}()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {when} \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )]
    };
    execute(app, statements).await;
}

/// Takes away the trigger `name` on `table` that [`refuse_writes`] made.
pub async fn allow_writes(app: &TestApp, name: &str, table: &str) {
    let statements = if app.database_url.starts_with("postgres") {
        vec![
            format!("DROP TRIGGER {name} ON {table}"),
            format!("DROP FUNCTION {name}()"),
        ]
    } else {
        vec![format!("DROP TRIGGER {name}")]
    };
    execute(app, statements).await;
}

/// The plan the database chooses for `query`, one line a step: PostgreSQL's `EXPLAIN` with
/// sequential scans forbidden (tables this small are read whole whatever their indexes, which
/// hides which indexes there are), SQLite's `EXPLAIN QUERY PLAN` details.
pub async fn query_plan(db: &sea_orm::DatabaseConnection, query: &sea_orm::Statement) -> String {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let txn = db.begin().await.unwrap();
    let plan: Vec<String> = if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
        let explain = Statement {
            sql: format!("EXPLAIN {}", query.sql),
            ..query.clone()
        };
        let rows = txn.query_all(explain).await.unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect()
    } else {
        let explain = Statement {
            sql: format!("EXPLAIN QUERY PLAN {}", query.sql),
            ..query.clone()
        };
        let rows = txn.query_all(explain).await.unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "detail").unwrap())
            .collect()
    };
    txn.rollback().await.unwrap();
    plan.join("\n")
}

/// KCP answers "no such trade" (8201) to every inquiry from now on.
pub fn kcp_answers_no_such_trade(app: &TestApp) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::Refuse {
                code: "8201".into(),
                message: "해당 거래 없음".into(),
            },
        )
        .times(100),
    );
}

/// A 10,000-won payment as `merchant_uid`, and a cancel of 3,000 won of it that KCP applies but
/// whose answer is lost, KCP's inquiry then answering "no such trade"
/// ([`kcp_answers_no_such_trade`], left armed): whether it landed is unknown, a conflict for the
/// operator. The payment's imp_uid and the cancel's answer.
pub async fn a_cancel_held_as_a_conflict(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
) -> (String, Value) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let p = app.paid(token, merchant_uid, 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));
    kcp_answers_no_such_trade(app);
    let cancel = app.cancel(token, &imp_uid, 3000).await;
    (imp_uid, cancel)
}

/// PostgreSQL only: holds every `event` (`INSERT` or `UPDATE`) of a row of `table` for which the
/// SQL condition `when` (on `NEW`, and `OLD` for an update) holds 3 s inside its statement, by
/// the trigger `name`: a write kept in its transaction while another runs beside it. A test
/// starts the other once the write is held ([`until_a_write_is_held`]); the 3 s are the other's
/// time to reach its own write, on a loaded database too.
pub async fn slow_writes(app: &TestApp, name: &str, event: &str, table: &str, when: &str) {
    assert!(app.database_url.starts_with("postgres"), "PostgreSQL only");
    execute(
        app,
        vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 PERFORM pg_sleep(3); RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN ({when}) \
                 EXECUTE FUNCTION {name}()"
            ),
        ],
    )
    .await;
}

/// The merchant `imp_key` made a live one, as if by `openport merchant create` on a live instance
/// sharing the database.
pub async fn make_live(app: &TestApp, imp_key: &str) {
    execute(
        app,
        vec![format!(
            "UPDATE merchants SET test_mode = false WHERE imp_key = '{imp_key}'"
        )],
    )
    .await;
}

/// An answer of HTTP 200, code 1, whose message contains `says`: how openport refuses, or says it
/// does not know yet, in iamport's envelope. `why` is printed with the answer on failure.
pub fn assert_code_1_saying(status: StatusCode, res: &Value, says: &str, why: &str) {
    assert_eq!(
        (status, res["code"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{why}: {res}"
    );
    assert!(
        res["message"].as_str().is_some_and(|m| m.contains(says)),
        "{why}: {res}"
    );
}

/// The longest [`until_kcp_has_applied`] waits. KCP applies a late call within milliseconds of
/// its gate opening on an idle machine; the bound only keeps a test whose call never lands from
/// hanging, so it is far above anything a loaded runner adds.
const KCP_APPLIES_WITHIN: Duration = Duration::from_secs(30);

/// Waits until `applied` holds of KCP's books (the sandbox's ledger, a point balance): a call KCP
/// applies after the gateway stopped waiting for it has landed. A poll rather than a fixed sleep:
/// the test, the gateway and the sandbox share one thread, and a sleep sized to KCP's timer lost
/// the race whenever that thread stalled for the sleep's margin (review rM, finding 3), failing
/// with a wrong amount far from the cause. A slow machine now only makes the test slower. Fails
/// the test saying `what` after [`KCP_APPLIES_WITHIN`].
pub async fn until_kcp_has_applied(what: &str, applied: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + KCP_APPLIES_WITHIN;
    while !applied() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not applied at KCP within {}s",
            KCP_APPLIES_WITHIN.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// KCP applies the call it holds unprocessed on `gate` (a [`kcp_sandbox::Fault::HoldRequest`]
/// armed before the call): the test calls this once the gateway has given up waiting (its
/// timeout) and has done whatever must happen while KCP still shows nothing. Returns once
/// `applied` holds ([`until_kcp_has_applied`]). Unlike a `Fault::Delay`, no timer decides which
/// comes first, the gateway's look or KCP's applying the call.
pub async fn kcp_applies_the_held_call(
    app: &TestApp,
    gate: &str,
    what: &str,
    applied: impl Fn() -> bool,
) {
    app.sandbox.until_held(gate).await;
    app.sandbox.open_gate(gate);
    until_kcp_has_applied(what, applied).await;
}

/// How many connections to the test's database wait, in PostgreSQL's `pg_stat_activity`, as
/// `condition` says (`wait_event = 'PgSleep'`: in a [`slow_writes`] trigger).
pub async fn backends_waiting(app: &TestApp, condition: &str) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let row = app
        .app
        .gateway
        .db
        .read
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND {condition}"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// PostgreSQL: returns once a write of the test's database is held in a [`slow_writes`] trigger,
/// its transaction open: the moment a test sends the request that is to run beside it. A fixed
/// sleep stood in for it, and on a loaded database the held request had sometimes not reached its
/// trigger yet, so the other ran first and the race under test never took place. At most 10 s.
pub async fn until_a_write_is_held(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while backends_waiting(app, "wait_event = 'PgSleep'").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no write reached its slow_writes trigger in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
