//! The gateway under test: a fresh database, free loopback ports, `openport serve` as a child process.
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::Url;
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::{Child, Command};

/// The demo merchant `openport serve` creates in test mode on an empty database (public test
/// credentials, sandbox only).
pub const DEMO_IMP_KEY: &str = "imp_apikey";
pub const DEMO_IMP_SECRET: &str =
    "ekKoeW8RyKuT0zgaZsUtXXTLQ4AhPFW3ZGseDA6bkA5lamv9OqDMnxyeB9wqOsuO9W3Mx9YSJ4dTqJ3f";

/// How long the gateway may take to migrate, create the demo merchant and answer.
const STARTUP_LIMIT: Duration = Duration::from_secs(90);

/// A short random lowercase/digit tag that makes database names and order numbers unique per run.
pub fn run_tag() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(|b| (b as char).to_ascii_lowercase())
        .collect()
}

/// Where the run's database lives, and how to get rid of it.
pub enum Database {
    Sqlite {
        url: String,
        /// Given on the command line (`sqlite:FILE`), and kept; otherwise a temporary file.
        file: Option<PathBuf>,
    },
    Postgres {
        /// The URL given on the command line (used to CREATE/DROP the run's database).
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Database {
    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url, .. } | Database::Postgres { url, .. } => url,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite { file: None, .. } => {
                "SQLite (temporary file, WAL, synchronous=FULL)".into()
            }
            Database::Sqlite {
                file: Some(file), ..
            } => format!("SQLite ({}, WAL, synchronous=FULL)", file.display()),
            Database::Postgres { name, .. } => format!("PostgreSQL (fresh database {name})"),
        }
    }

    /// `sqlite` → a file in `dir`; `sqlite:FILE` → that file (made if missing, kept afterwards: a
    /// large database grown with benches/grow_sqlite.py); `postgres://…` → `CREATE DATABASE
    /// openport_bench_<tag>` on that server.
    pub async fn create(spec: &str, dir: &Path, tag: &str) -> anyhow::Result<Self> {
        if spec == "sqlite" {
            let file = dir.join("openport-bench.db");
            return Ok(Database::Sqlite {
                url: format!("sqlite://{}?mode=rwc", file.display()),
                file: None,
            });
        }
        if let Some(file) = spec.strip_prefix("sqlite:") {
            let file = std::path::absolute(file).context("--db sqlite:FILE")?;
            return Ok(Database::Sqlite {
                url: format!("sqlite://{}?mode=rwc", file.display()),
                file: Some(file),
            });
        }
        if !(spec.starts_with("postgres://") || spec.starts_with("postgresql://")) {
            bail!("--db must be `sqlite`, `sqlite:FILE` or a postgres://… URL, not {spec:?}");
        }
        let mut url = Url::parse(spec).context("--db: not a URL")?;
        match url.host_str() {
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => {}
            other => bail!(
                "--db: the benchmark only talks to loopback; host {other:?} is not 127.0.0.1/localhost"
            ),
        }
        let name = format!("openport_bench_{tag}");
        let mut admin = PgConnection::connect(spec)
            .await
            .with_context(|| format!("connect to {}", redact(spec)))?;
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = admin.close().await;
        url.set_path(&format!("/{name}"));
        Ok(Database::Postgres {
            admin_url: spec.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Runs `ANALYZE` on the run's PostgreSQL database (no-op on SQLite).
    pub async fn analyze(&self) -> anyhow::Result<()> {
        let Database::Postgres { url, .. } = self else {
            return Ok(());
        };
        let mut conn = PgConnection::connect(url).await?;
        conn.execute("ANALYZE").await?;
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the run's PostgreSQL database (the SQLite file goes with the temporary directory).
    pub async fn destroy(&self) -> anyhow::Result<()> {
        let Database::Postgres {
            admin_url, name, ..
        } = self
        else {
            return Ok(());
        };
        let mut admin = PgConnection::connect(admin_url).await?;
        let forced = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        if admin.execute(forced.as_str()).await.is_err() {
            // PostgreSQL < 13 has no FORCE; the gateway has exited by now anyway.
            admin
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
                .await?;
        }
        let _ = admin.close().await;
        Ok(())
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Two free loopback ports: bound together (so they differ), then released for the gateway.
pub fn free_ports() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?, b.local_addr()?))
}

/// How to start one gateway process.
pub struct Options {
    /// `OPENPORT_RESOLVER__INTERVAL_MS`; the scheduler runs every min(this, 1000) ms.
    pub resolver_interval_ms: u64,
    /// `None`: the embedded sandbox on a free loopback port. `Some(origin)`: no embedded sandbox,
    /// KCP calls go to `origin` (`OPENPORT_KCP__API_BASE`), e.g. the first instance's sandbox.
    pub kcp_api_base: Option<String>,
    /// Log file in the work directory.
    pub log_name: String,
    /// More `OPENPORT_*` settings for this process (e.g. the scheduler's concurrency).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resolver_interval_ms: 1000,
            kcp_api_base: None,
            log_name: "gateway.log".into(),
            env: Vec::new(),
        }
    }
}

/// The running gateway. Dropping it kills the process (`kill_on_drop`).
pub struct Gateway {
    child: Child,
    pub base: String,
    pub sandbox_base: String,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts `bin serve` with a clean environment of its own: every `OPENPORT_*`, `KCP_*` and
    /// `DATABASE_URL` of the caller is removed, then the run's values are set.
    pub fn start(
        bin: &Path,
        db: &Database,
        dir: &Path,
        rust_log: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(bin, db, dir, rust_log, &Options::default())
    }

    /// [`Gateway::start`] with a resolver/scheduler interval, a log file and, for a second or third
    /// instance on the same database, the KCP origin of another instance's embedded sandbox.
    pub fn start_with(
        bin: &Path,
        db: &Database,
        dir: &Path,
        rust_log: Option<&str>,
        opts: &Options,
    ) -> anyhow::Result<Self> {
        let (listen, sandbox) = free_ports()?;
        let log = dir.join(&opts.log_name);
        // Appended: a run may start several gateways on the same database.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("OPENPORT_") || k.starts_with("KCP_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .current_dir(dir)
            .env("OPENPORT_LISTEN", listen.to_string())
            .env("DATABASE_URL", db.url())
            .env("OPENPORT_TEST_MODE", "true")
            // The embedded sandbox in memory: its state file's writes are no part of the figures,
            // and a restarted gateway meets a sandbox that forgot, as before the state file.
            .env("OPENPORT_SANDBOX__STATE_FILE", "")
            .env(
                "OPENPORT_RESOLVER__INTERVAL_MS",
                opts.resolver_interval_ms.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true);
        let sandbox_base = match &opts.kcp_api_base {
            None => {
                cmd.env("OPENPORT_SANDBOX__LISTEN", sandbox.to_string());
                format!("http://{sandbox}")
            }
            Some(base) => {
                cmd.env("OPENPORT_SANDBOX__EMBEDDED", "false")
                    .env("OPENPORT_KCP__API_BASE", base);
                base.clone()
            }
        };
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        if let Some(level) = rust_log {
            cmd.env("RUST_LOG", level);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self {
            child,
            base: format!("http://{listen}"),
            sandbox_base,
            log,
        })
    }

    /// Waits until `POST /users/getToken` answers with a token, and returns it.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<String> {
        let started = Instant::now();
        let mut last_error = String::from("no answer yet");
        while started.elapsed() < STARTUP_LIMIT {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "openport exited during start-up ({status}); its log:\n{}",
                    self.log_tail(40)
                );
            }
            match get_token(client, &self.base).await {
                Ok(token) => return Ok(token),
                Err(e) => last_error = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "openport did not answer within {}s (last: {last_error}); its log:\n{}",
            STARTUP_LIMIT.as_secs(),
            self.log_tail(40)
        )
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL and reap. (The gateway has nothing to flush that a benchmark needs.)
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// `POST /users/getToken` with the demo credentials.
pub async fn get_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let res = client
        .post(format!("{base}/users/getToken"))
        .json(&serde_json::json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    let status = res.status();
    let body: serde_json::Value = res.json().await?;
    match body["response"]["access_token"].as_str() {
        Some(t) if status.is_success() && body["code"] == 0 => Ok(t.to_owned()),
        _ => bail!("getToken answered {status}: {body}"),
    }
}

/// `target/release/openport` next to this crate's workspace (or `$CARGO_TARGET_DIR/release/openport`).
pub fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("release")
        .join(format!("openport{}", std::env::consts::EXE_SUFFIX))
}
