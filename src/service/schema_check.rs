//! An instance left running while a newer openport migrated its database stops taking work.
//!
//! A start refuses a database holding migrations this binary does not know
//! (`store::SchemaError::Newer`), but a running instance used to never look again: left running
//! through an upgrade (docs/operations.md "Upgrades" says to stop every older instance first),
//! it went on serving on the new schema, answering 500s, while its scheduler, checkout and KCP
//! notification handler wrote rows that broke the new version's rules (upgrade drill, review r1
//! finding 2c). Now every serving instance reads the version table every
//! [`SCHEMA_CHECK_EVERY`] (app.rs `spawn_schema_check`, one small read); once it finds a
//! migration it does not know it records so, once and for good, and from then on:
//! - every request but `GET /health` and `GET /admin/status` is answered HTTP 503, code -1,
//!   [`OUTDATED`] (api/outdated.rs), before its token or body is read; KCP's notifications are
//!   not acknowledged, so KCP sends them again, to the upgraded instances;
//! - its background work claims nothing: the scheduler, the resolver and its sweeps (retired
//!   keys, KCP notifications, virtual-account looks), the webhook worker and its pruning;
//! - `GET /health` answers 503 `{"status":"outdated"}` (load balancers take it out) and
//!   `GET /admin/status` 503 naming the migrations.
//!
//! Work already under way (a request in its KCP call, a scheduled charge in flight, a webhook
//! POST) runs to its end: stopping it half-way would leave an attempt open for the new version's
//! resolver to settle, for no gain. The instance does not exit: an operator's service manager
//! (`Restart=always`, a container's restart policy) would start it again, into the start's refusal,
//! over and over, and an exited instance tells its load balancer less than a 503 that names the
//! cause. The clock check (service/clock_check.rs) makes the same choice: refuse, stay up, say so.
//! The verdict is never taken back: what the newer version changed since cannot be judged by a
//! binary that does not know its migrations, and a restart checks again (and refuses).
use std::time::Duration;

use super::{Gateway, ServiceResult};

/// How often a serving instance reads the version table: an instance left running through an
/// upgrade stops taking work within this (the brief's "about a minute", with room for one slow
/// read).
pub const SCHEMA_CHECK_EVERY: Duration = Duration::from_secs(30);

/// The answer to every request (but the health check and the operator status) of an instance
/// whose database a newer openport migrated: this instance is older than its database and must
/// be stopped (or upgraded); nothing was done.
pub const OUTDATED: &str =
    "이 openport 인스턴스는 데이터베이스보다 오래된 버전이라 요청을 처리하지 \
     않았습니다(새 버전이 데이터베이스를 마이그레이션했습니다). 운영자가 이 인스턴스를 중지하고 새 \
     버전으로 교체해야 합니다.";

impl Gateway {
    /// Reads the version table and records a migration this binary does not know (see the
    /// module's doc); answers whether this instance is now outdated. Once it is, nothing is read.
    pub async fn check_schema(&self) -> ServiceResult<bool> {
        if self.is_outdated() {
            return Ok(true);
        }
        let unknown = self.db.unknown_migrations().await?;
        if unknown.is_empty() {
            return Ok(false);
        }
        self.record_newer_schema(unknown.join(", "));
        Ok(true)
    }

    /// Records that a newer openport migrated the database (`names`: the migrations this binary
    /// does not know), logging the ERROR with the operator's instruction once.
    pub fn record_newer_schema(&self, names: String) {
        if self.newer_schema.set(names).is_err() {
            return;
        }
        let names = self.newer_schema.get().map_or("", String::as_str);
        tracing::error!(
            "this database was migrated by a newer version of openport while this instance was \
             serving (migrations this version does not know: {names}): this instance takes no \
             more work (every request but /health and /admin/status answers 503, its scheduler, \
             resolver and webhook worker claim nothing) and stays up answering so, rather than \
             exit into a restart its start would refuse; stop it and run the newer version \
             (docs/operations.md \"Upgrades\")"
        );
    }

    /// Whether a newer openport migrated this instance's database (see the module's doc): one
    /// atomic load, read by every request.
    pub fn is_outdated(&self) -> bool {
        self.newer_schema.get().is_some()
    }

    /// The migrations this binary does not know, once found.
    pub fn newer_schema(&self) -> Option<&str> {
        self.newer_schema.get().map(String::as_str)
    }
}
