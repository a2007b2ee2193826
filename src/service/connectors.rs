//! One PG connector per merchant (each merchant has its own KCP site code, certificate and key),
//! built on first use from the merchant's sealed credentials and kept while the merchant's row
//! names the same ones: a renewed certificate (`openport merchant set-kcp-cert`) is used from the
//! first call made with the row that holds it.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::SecretString;

use super::merchants::runs_in_mode;
use super::secrets::MasterKey;
use super::{ServiceError, ServiceResult};
use crate::pg::kcp::{KcpConfig, KcpConnector, KcpUrls};
use crate::pg::Pg;
use crate::store::entity::merchant;

#[derive(Clone)]
pub struct Connectors {
    urls: KcpUrls,
    timeout: Duration,
    http: reqwest::Client,
    built: Arc<RwLock<HashMap<i64, Built>>>,
    /// The instance's test mode: a connector is handed out only for a merchant of its mode
    /// ([`Connectors::for_merchant`]).
    test_mode: bool,
}

/// A merchant's connector and the stored values it was built from.
struct Built {
    connector: Arc<dyn Pg>,
    from: BuiltFrom,
}

/// The merchant columns a connector is built from, as stored (the key and passphrase sealed): a
/// row that differs (a renewed certificate and key, another KCP origin; a reseal too, which costs
/// one rebuild) gets a new connector.
#[derive(PartialEq, Eq)]
struct BuiltFrom {
    site_cd: String,
    certificate_pem: String,
    private_key_sealed: String,
    passphrase_sealed: String,
    api_base: Option<String>,
}

impl BuiltFrom {
    fn of(m: &merchant::Model) -> Self {
        Self {
            site_cd: m.site_cd.clone(),
            certificate_pem: m.kcp_certificate_pem.clone(),
            private_key_sealed: m.kcp_private_key_sealed.clone(),
            passphrase_sealed: m.kcp_passphrase_sealed.clone(),
            api_base: m.kcp_api_base.clone(),
        }
    }

    fn is_of(&self, m: &merchant::Model) -> bool {
        self.site_cd == m.site_cd
            && self.certificate_pem == m.kcp_certificate_pem
            && self.private_key_sealed == m.kcp_private_key_sealed
            && self.passphrase_sealed == m.kcp_passphrase_sealed
            && self.api_base == m.kcp_api_base
    }
}

/// The answer to a live merchant's request that would call KCP, on an instance in test mode.
pub const LIVE_MERCHANT_IN_TEST_MODE: &str = "테스트 모드 인스턴스는 실 가맹점의 결제를 처리하지 않습니다. 결제, 취소, 빌링키 등 KCP를 거치는 요청은 운영 인스턴스로 보내 주세요.";

/// The answer to a merchant made in test mode whose request would call KCP on a live instance
/// (it gets no token and no checkout there, docs/operations.md: a safety net).
pub const TEST_MERCHANT_ON_LIVE: &str =
    "테스트 모드에서 만든 가맹점의 결제는 운영 인스턴스에서 처리하지 않습니다.";

impl Connectors {
    /// `pool_idle_timeout` (`Config::kcp_pool_idle_timeout`) is how long a connection to KCP is
    /// kept for the next call. It must end before the server's keep-alive does: a server closes
    /// an idle connection on its own timer, and a call sent on it just then fails after it was
    /// sent ("connection closed before message completed"), an unknown outcome for a charge KCP
    /// never saw, settled failed by inquiry only later. reqwest's default keeps connections 90 s.
    pub fn new(
        urls: KcpUrls,
        timeout: Duration,
        pool_idle_timeout: Duration,
        test_mode: bool,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(pool_idle_timeout)
            .build()
            .expect("HTTP client with static settings");
        Self {
            urls,
            timeout,
            http,
            built: Arc::default(),
            test_mode,
        }
    }

    /// How long one KCP call may take (`kcp.timeout_ms`): how long a browser's `Ret_URL` post
    /// waits for another post's approval in flight (service/checkout.rs).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URLs of a merchant's KCP: its own origin's when it names one, else the instance's.
    pub fn urls_for(&self, api_base: Option<&str>) -> KcpUrls {
        api_base.map_or_else(|| self.urls.clone(), KcpUrls::with_base)
    }

    /// Merchant `m`'s KCP, refused (code 1) for a merchant of the other mode than the instance
    /// ([`runs_in_mode`]). Every KCP call of a merchant, the requests' and the background work's,
    /// gets its connector here, before the call's payment, attempt or key is written: so this is
    /// where an instance in test mode turns down a live merchant's charge, checkout, billing key,
    /// virtual account, points, cancel, revocation or escrow shipping, with nothing written.
    /// Its KCP is the sandbox (or a staging host): served there, a live merchant's payment was
    /// approved by the sandbox, recorded `paid`, and its `paid` webhook delivered by a live
    /// instance, so anyone with the shop's public imp_code got unpaid goods shipped. Lookups call
    /// no KCP and stay served. The background work never gets here for the other mode's merchants
    /// (it skips them first, `runs_in_mode`); a live instance serves test-mode merchants nothing
    /// at all (`serves_in_mode`), this is its safety net.
    ///
    /// The connector is built from `m` as given (the row the caller read, at most a minute old, or
    /// dropped at once on PostgreSQL when announced): one built from other credentials is
    /// replaced, so a certificate and key renewed by `openport merchant set-kcp-cert` are used from
    /// then on, not only after a restart.
    pub fn for_merchant(
        &self,
        m: &merchant::Model,
        secrets: &MasterKey,
    ) -> ServiceResult<Arc<dyn Pg>> {
        if !runs_in_mode(self.test_mode, m) {
            return Err(ServiceError::Refused(
                if self.test_mode {
                    LIVE_MERCHANT_IN_TEST_MODE
                } else {
                    TEST_MERCHANT_ON_LIVE
                }
                .into(),
            ));
        }
        if let Some(c) = self.built.read().ok().and_then(|map| {
            map.get(&m.id)
                .filter(|b| b.from.is_of(m))
                .map(|b| b.connector.clone())
        }) {
            return Ok(c);
        }
        let unseal = |s: &str| {
            secrets.open_string(s).map_err(|e| {
                ServiceError::Internal(format!("merchant {} KCP credentials: {e}", m.id))
            })
        };
        let config = KcpConfig {
            site_cd: m.site_cd.clone(),
            certificate_pem: m.kcp_certificate_pem.clone(),
            private_key_pem: unseal(&m.kcp_private_key_sealed)?,
            private_key_passphrase: SecretString::from(unseal(&m.kcp_passphrase_sealed)?),
            urls: self.urls_for(m.kcp_api_base.as_deref()),
            timeout: self.timeout,
        };
        let connector: Arc<dyn Pg> =
            Arc::new(KcpConnector::new(config, self.http.clone()).map_err(|e| {
                ServiceError::Internal(format!("merchant {} KCP connector: {e}", m.id))
            })?);
        if let Ok(mut map) = self.built.write() {
            map.insert(
                m.id,
                Built {
                    connector: connector.clone(),
                    from: BuiltFrom::of(m),
                },
            );
        }
        Ok(connector)
    }
}

#[cfg(test)]
mod tests;
