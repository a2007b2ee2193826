use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub imp_code: String,
    pub name: String,
    pub imp_key: String,
    /// HMAC-SHA256 of the imp_secret under a key derived from the master key (hex).
    pub imp_secret_hash: String,
    pub site_cd: String,
    pub kcp_certificate_pem: String,
    /// The KCP private key PEM, sealed with the master key (AES-256-GCM).
    pub kcp_private_key_sealed: String,
    /// The private key's passphrase, sealed with the master key.
    pub kcp_passphrase_sealed: String,
    pub test_mode: bool,
    pub created_at: i64,
    /// Default webhook target (spec/iamport-v1.md §5); a payment's notice_url overrides it.
    pub webhook_url: Option<String>,
    /// `json` or `form`.
    pub webhook_content_type: String,
    /// Standard Webhooks signing secret, sealed with the master key; None = unsigned webhooks.
    pub webhook_secret_sealed: Option<String>,
    /// The secret `webhook_secret_sealed` replaced, sealed the same way: it signs beside the
    /// current one until `webhook_previous_secret_until`, so receivers still verifying with it
    /// keep accepting webhooks while they switch (docs/webhooks.md, rotation).
    pub webhook_previous_secret_sealed: Option<String>,
    /// Unix seconds after which the previous secret no longer signs.
    pub webhook_previous_secret_until: Option<i64>,
    /// KCP batch group id (`bt_group_id`) for billing keys, as KCP assigned it; None: refused
    /// outside test mode, the sandbox's `{site_cd}1000001` in test mode (`Gateway::group_id`).
    pub kcp_group_id: Option<String>,
    /// The origin of this merchant's KCP (e.g. KCP's staging `https://stg-spl.kcp.co.kr`); None
    /// = the instance's (the embedded sandbox in test mode, KCP's production hosts otherwise).
    pub kcp_api_base: Option<String>,
    /// The origins a mobile buyer may be redirected to when a window ends, a JSON array of
    /// `scheme://host[:port]` (domain/redirect_origins.rs); None: any, as at iamport.
    pub redirect_origins: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
impl Model {
    /// A test-mode merchant of site T0000 with no KCP credentials, for unit tests that need a row
    /// (each sets what it needs with `..Model::sample(id)`).
    pub(crate) fn sample(id: i64) -> Self {
        Model {
            id,
            imp_code: "imp00000001".into(),
            name: "shop".into(),
            imp_key: "key".into(),
            imp_secret_hash: "hash".into(),
            site_cd: "T0000".into(),
            kcp_certificate_pem: String::new(),
            kcp_private_key_sealed: String::new(),
            kcp_passphrase_sealed: String::new(),
            test_mode: true,
            created_at: 0,
            webhook_url: None,
            webhook_content_type: "json".into(),
            webhook_secret_sealed: None,
            webhook_previous_secret_sealed: None,
            webhook_previous_secret_until: None,
            kcp_group_id: None,
            kcp_api_base: None,
            redirect_origins: None,
        }
    }
}
