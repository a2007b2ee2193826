//! One PG connector per merchant (each merchant has its own KCP site code, certificate and key),
//! built on first use from the merchant's sealed credentials and kept for the process lifetime.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::SecretString;

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
    built: Arc<RwLock<HashMap<i64, Arc<dyn Pg>>>>,
}

impl Connectors {
    pub fn new(urls: KcpUrls, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client with static settings");
        Self {
            urls,
            timeout,
            http,
            built: Arc::default(),
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

    pub fn for_merchant(
        &self,
        m: &merchant::Model,
        secrets: &MasterKey,
    ) -> ServiceResult<Arc<dyn Pg>> {
        if let Some(c) = self
            .built
            .read()
            .ok()
            .and_then(|map| map.get(&m.id).cloned())
        {
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
            map.insert(m.id, connector.clone());
        }
        Ok(connector)
    }
}
