//! `confirm_url` (spec/iamport-v1.md §7): just before approving a window, openport asks the
//! merchant's endpoint whether to go on.
//!
//! The URL comes from the browser's `request_pay`, that is, from whoever drives the buyer's
//! browser, so it is called like a webhook target (`outbound`): public addresses only unless the
//! operator allows private targets, no redirects, no proxy. Of the answer only what the contract
//! needs is kept: its status, and the `reason` of a refusal (read from a bounded prefix of the
//! body, shortened), which becomes the payment's fail_reason.
use std::time::Duration;

use super::{outbound, Gateway, ServiceError, ServiceResult};
use crate::store::entity::payment;

/// confirm_url's wait (spec §7); a second `Ret_URL` post waiting for the first one's outcome
/// waits for it too (service/checkout.rs `Gateway::finish_settled`), and the first one's claim
/// holds the approval attempt through it (`Gateway::window_claim_lease`).
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a refusal's body read to find its `reason`.
const BODY_LIMIT: usize = 16 * 1024;
/// The most of a `reason` kept: it is shown to the buyer and stored as the fail_reason.
const REASON_CHARS: usize = 200;
/// spec §7's reason when the merchant gave none (or could not be asked).
const NO_REASON: &str = "알 수 없음";

fn http(private_targets: bool) -> &'static reqwest::Client {
    static CLIENTS: outbound::GuardedClients = outbound::GuardedClients::new();
    CLIENTS.get(private_targets, |b| {
        b.timeout(CONFIRM_TIMEOUT)
            .user_agent(concat!("openport-confirm/", env!("CARGO_PKG_VERSION")))
    })
}

impl Gateway {
    /// Refuses, before the window opens, a `confirm_url` that could never be called: one naming
    /// a non-public address literally while private targets are off. A name is checked when the
    /// call is made.
    pub(crate) fn check_confirm_url(&self, url: &str) -> ServiceResult<()> {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none() {
            return Err(ServiceError::BadRequest(
                "confirm_url은 http(s) URL이어야 합니다.".into(),
            ));
        }
        if !self.settings.webhook_private_targets && outbound::refuse_private_literal(url).is_err()
        {
            return Err(ServiceError::BadRequest(
                "confirm_url은 공개된 주소여야 합니다.".into(),
            ));
        }
        Ok(())
    }

    /// POSTs `{imp_uid, merchant_uid, amount}`: a 200 proceeds; anything else, a refused target,
    /// or 10 s without an answer stops, with the merchant's reason when it gave one.
    pub(crate) async fn confirm(&self, url: &str, p: &payment::Model) -> Result<(), String> {
        let private_targets = self.settings.webhook_private_targets;
        if !private_targets {
            if let Err(why) = outbound::refuse_private_literal(url) {
                tracing::warn!(imp_uid = %p.imp_uid, "confirm_url not called: {why}");
                return Err(NO_REASON.into());
            }
        }
        let body = serde_json::json!({"imp_uid": p.imp_uid, "merchant_uid": p.merchant_uid, "amount": p.amount});
        match http(private_targets).post(url).json(&body).send().await {
            Ok(res) if res.status().as_u16() == 200 => Ok(()),
            Ok(res) => {
                let status = res.status().as_u16();
                let reason = reason_of(res).await;
                tracing::info!(imp_uid = %p.imp_uid, status, "confirm_url refused the payment");
                Err(reason.unwrap_or_else(|| NO_REASON.into()))
            }
            Err(e) => {
                // Without the URL, which may carry the merchant's own tokens.
                tracing::warn!(imp_uid = %p.imp_uid, "confirm_url could not be asked: {}", e.without_url());
                Err(NO_REASON.into())
            }
        }
    }
}

/// The `reason` of a refusal's JSON body, reading at most [`BODY_LIMIT`] bytes, without control
/// characters and at most [`REASON_CHARS`] long.
async fn reason_of(mut res: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < BODY_LIMIT {
        match res.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    if buf.len() > BODY_LIMIT {
        return None; // larger than any reason: not read as one
    }
    let v: serde_json::Value = serde_json::from_slice(&buf).ok()?;
    let reason: String = v
        .get("reason")?
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_CHARS)
        .collect();
    let reason = reason.trim();
    (!reason.is_empty()).then(|| reason.to_string())
}
