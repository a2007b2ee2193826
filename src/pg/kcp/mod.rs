//! The NHN KCP connector: [`KcpConnector`] implements [`super::PgConnector`] over KCP's REST API
//! (spec/kcp.md §2.7 key-in, §2.9 cancel, §2.10 inquiry) and [`super::PgBilling`] (§2.5–§2.6
//! billing keys, §2.8 Benepia points), [`super::PgCheckout`] (§1–§2.5 the payment window, §2.11
//! escrow shipping) and [`super::PgVirtualAccounts`] (virtual accounts without the window, a
//! documented assumption). Mapping notes live in docs/kcp.md.
//!
//! - `client.rs`: configuration, HTTP calls and the error semantics that keep money safe
//!   (`client/window.rs`: the window calls; `client/vbank.rs`: virtual accounts without it).
//! - `wire.rs`: serde structs, exactly KCP's field names and string formats (`wire/window.rs`: the
//!   window's; `wire/vbank.rs`: virtual accounts without the window).
//! - `codes.rs`: KCP `res_cd` → [`super::DeclineReason`].
//! - `sign.rs`: the service certificate (`kcp_cert_info`) and the signing key (`kcp_sign_data`).

mod client;
pub mod codes;
pub mod sign;
pub mod wire;

/// KCP's test certificate and key, and its approval of [`crate::pg::KeyInRequest::sample`], for
/// unit tests that build a connector (service/connectors/tests.rs).
#[cfg(test)]
pub(crate) use client::tests::{APPROVED, CERT, KEY};
pub use client::{KcpConfig, KcpConnector, KcpUrls};
pub use sign::{KcpCertificate, KcpPrivateKey, KcpSigner, KeyError};
