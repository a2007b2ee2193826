//! The KCP connector: configuration, the HTTP exchange, and the mapping of every possible outcome
//! onto [`PgError`] so that only a definite refusal can ever fail a payment.
//!
//! | what happened                                          | result                      |
//! |--------------------------------------------------------|-----------------------------|
//! | transport error, timeout, HTTP 5xx, unreadable body    | [`PgError::Unknown`]        |
//! | readable body, `res_cd` ≠ `0000`                       | [`PgError::Declined`]       |
//! | `res_cd` `0000` but no `tno` / amount                  | [`PgError::Unknown`]        |
//! | approval whose amount or order number ≠ the request    | [`PgError::Mismatch`]       |
//! | `res_cd` `0000`                                        | `Ok`                        |
//!
//! KCP's samples read the JSON body and ignore the HTTP status (spec/kcp.md §1); we do the same
//! except for 5xx, where an intermediary may be answering and a body saying "refused" cannot be
//! trusted to mean nothing happened.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{de::DeserializeOwned, Serialize};
use tracing::Instrument as _;

use super::codes::{self, NO_SUCH_TRADE, SUCCESS};
use super::sign::KcpSigner;
use super::wire::{
    CancelRequestBody, CancelResponse, CardPaymentResponse, InquiryRequest, InquiryResponse,
    KeyInPaymentRequest, ResultHead,
};
use crate::pg::{
    CancelConfirmation, CancelRequest, CardApproval, KeyInRequest, PgConnector, PgError, TradeRef,
    TradeState,
};

/// KCP endpoints (spec/kcp.md §1). Only `hub`, `cancel` and `inquiry` are used by this connector;
/// the others are here so the checkout flow configures every KCP URL in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpUrls {
    /// `gw/hub/v1/payment`: key-in, batch payment.
    pub hub: String,
    /// `gw/mod/v1/cancel`.
    pub cancel: String,
    /// `std/inquery` (KCP's spelling).
    pub inquiry: String,
    /// `gw/enc/v1/payment`: approval with window data.
    pub enc_payment: String,
    /// `std/tradeReg/register` (newer, with `kcp_cert_info`).
    pub trade_register: String,
    /// `trade/register.do` (mobile, older).
    pub mobile_trade_register: String,
}

impl KcpUrls {
    /// KCP's test environment (`stg-spl`, `testsmpay`).
    pub fn test() -> Self {
        Self::from_origins("https://stg-spl.kcp.co.kr", "https://testsmpay.kcp.co.kr")
    }

    /// KCP's production environment (`spl`, `smpay`).
    pub fn production() -> Self {
        Self::from_origins("https://spl.kcp.co.kr", "https://smpay.kcp.co.kr")
    }

    /// Every path under one origin, e.g. `http://127.0.0.1:PORT` for the local KCP sandbox.
    pub fn with_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self::from_origins(base, base)
    }

    fn from_origins(spl: &str, smpay: &str) -> Self {
        Self {
            hub: format!("{spl}/gw/hub/v1/payment"),
            cancel: format!("{spl}/gw/mod/v1/cancel"),
            inquiry: format!("{spl}/std/inquery"),
            enc_payment: format!("{spl}/gw/enc/v1/payment"),
            trade_register: format!("{spl}/std/tradeReg/register"),
            mobile_trade_register: format!("{smpay}/trade/register.do"),
        }
    }
}

/// One KCP merchant account.
pub struct KcpConfig {
    /// KCP site code (5 characters, e.g. `T0000`).
    pub site_cd: String,
    /// The service certificate PEM issued by KCP.
    pub certificate_pem: String,
    /// The private key PEM (KCP's encrypted PKCS#8, PBES2, or plain PKCS#8).
    pub private_key_pem: String,
    pub private_key_passphrase: SecretString,
    pub urls: KcpUrls,
    /// Whole-call limit (connect + send + read). After it, the outcome is unknown.
    pub timeout: Duration,
}

/// Redacts the key and passphrase.
impl std::fmt::Debug for KcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpConfig")
            .field("site_cd", &self.site_cd)
            .field(
                "certificate_pem",
                &format_args!("<{} bytes>", self.certificate_pem.len()),
            )
            .field("private_key_pem", &"<redacted>")
            .field("private_key_passphrase", &self.private_key_passphrase)
            .field("urls", &self.urls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// [`PgConnector`] over KCP's REST API. Key and certificate are loaded once, in [`Self::new`].
#[derive(Debug)]
pub struct KcpConnector {
    site_cd: String,
    signer: KcpSigner,
    urls: KcpUrls,
    timeout: Duration,
    http: reqwest::Client,
}

/// What KCP said, once the body could be read.
enum Answer<T> {
    Success(T),
    Refused { code: String, message: String },
}

impl KcpConnector {
    /// Loads the key and certificate (a wrong passphrase or a key that does not match the
    /// certificate fails here, at start-up, not on the first payment).
    pub fn new(config: KcpConfig, http: reqwest::Client) -> Result<Self, PgError> {
        let site_cd = config.site_cd.trim().to_owned();
        if site_cd.is_empty()
            || site_cd.len() > 5
            || !site_cd.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(PgError::Config(
                "KCP site_cd must be up to 5 letters and digits".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(PgError::Config("KCP timeout must be positive".into()));
        }
        for url in [&config.urls.hub, &config.urls.cancel, &config.urls.inquiry] {
            if reqwest::Url::parse(url).is_err() {
                return Err(PgError::Config(format!("invalid KCP URL `{url}`")));
            }
        }
        let signer = KcpSigner::from_pem(
            &config.certificate_pem,
            &config.private_key_pem,
            &config.private_key_passphrase,
        )
        .map_err(|e| PgError::Config(format!("KCP site {site_cd}: {e}")))?;
        Ok(Self {
            site_cd,
            signer,
            urls: config.urls,
            timeout: config.timeout,
            http,
        })
    }

    pub fn site_cd(&self) -> &str {
        &self.site_cd
    }

    /// The one-line certificate (`kcp_cert_info`) for other KCP calls (trade registration,
    /// window approvals) built outside this connector.
    pub fn cert_info(&self) -> &str {
        self.signer.cert_info()
    }

    /// POSTs `body` and reads KCP's answer. Every failure before a readable `res_cd` is
    /// [`PgError::Unknown`]: the request may have reached KCP and taken effect.
    async fn exchange<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        url: &str,
        body: &Req,
    ) -> Result<Answer<Resp>, PgError> {
        let started = std::time::Instant::now();
        let response = self.http.post(url).timeout(self.timeout).json(body).send().await.map_err(|e| {
            tracing::warn!(error = %e, timeout = e.is_timeout(), elapsed_ms = started.elapsed().as_millis() as u64, "KCP call failed");
            PgError::Unknown(transport_message(&e))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            tracing::warn!(error = %e, %status, "reading KCP answer failed");
            PgError::Unknown(transport_message(&e))
        })?;
        tracing::debug!(%status, bytes = bytes.len(), elapsed_ms = started.elapsed().as_millis() as u64, "KCP answered");
        if status.is_server_error() {
            return Err(PgError::Unknown(format!("KCP answered HTTP {status}")));
        }
        // KCP's REST answers are UTF-8; a legacy EUC-KR message must not turn a clear refusal
        // into an unknown outcome, so undecodable bytes are replaced rather than rejected.
        let text = String::from_utf8_lossy(&bytes);
        let head: ResultHead = serde_json::from_str(&text).map_err(|e| unreadable(status, &e))?;
        let code = head.res_cd.as_deref().map(str::trim).unwrap_or_default();
        if code.is_empty() {
            return Err(PgError::Unknown(format!(
                "KCP answer (HTTP {status}) has no res_cd"
            )));
        }
        tracing::info!(res_cd = code, "KCP result");
        if code != SUCCESS {
            return Ok(Answer::Refused {
                code: code.to_owned(),
                message: head.res_msg.unwrap_or_default(),
            });
        }
        let parsed = serde_json::from_str(&text).map_err(|e| unreadable(status, &e))?;
        Ok(Answer::Success(parsed))
    }
}

/// A reqwest error's description (it names the URL and the cause, never the body).
fn transport_message(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "KCP did not answer in time".to_owned()
    } else if e.is_connect() {
        format!("could not connect to KCP: {e}")
    } else {
        format!("KCP call failed: {e}")
    }
}

/// Describes a JSON error by position and category only: serde's messages can quote values,
/// and a body might (against KCP's contract) contain a card number.
fn unreadable(status: reqwest::StatusCode, e: &serde_json::Error) -> PgError {
    PgError::Unknown(format!(
        "unreadable KCP answer (HTTP {status}, {:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// The cross-check KCP's manual makes mandatory (spec/kcp.md §5): an approval for another amount
/// or another order must be net-cancelled, never recorded as this payment.
fn check_approval_matches(
    mut approval: CardApproval,
    req: &KeyInRequest,
) -> Result<CardApproval, PgError> {
    let mut problems = Vec::new();
    if approval.amount != req.amount {
        problems.push(format!(
            "amount {} (requested {})",
            approval.amount, req.amount
        ));
    }
    if approval.order_no.is_empty() {
        tracing::warn!("KCP approval without order_no; assuming the requested one");
        approval.order_no = req.order_no.clone();
    } else if approval.order_no != req.order_no {
        problems.push(format!(
            "order_no {} (requested {})",
            approval.order_no, req.order_no
        ));
    }
    if problems.is_empty() {
        Ok(approval)
    } else {
        tracing::error!(tno = %approval.tno, problems = %problems.join(", "), "KCP approved something else; net-cancel required");
        Err(PgError::Mismatch {
            tno: approval.tno,
            detail: problems.join(", "),
        })
    }
}

#[async_trait]
impl PgConnector for KcpConnector {
    async fn approve_key_in(&self, req: &KeyInRequest) -> Result<CardApproval, PgError> {
        let span = tracing::info_span!("kcp.approve_key_in", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let body = KeyInPaymentRequest::new(&self.site_cd, &self.signer, req)?;
            match self.exchange::<_, CardPaymentResponse>(&self.urls.hub, &body).await? {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    let approval = CardApproval::try_from(resp).map_err(|e| {
                        tracing::error!(error = %e, "KCP reported success without usable approval data");
                        PgError::Unknown(e.to_string())
                    })?;
                    tracing::Span::current().record("tno", approval.tno.as_str());
                    check_approval_matches(approval, req)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn cancel(&self, req: &CancelRequest) -> Result<CancelConfirmation, PgError> {
        let span = tracing::info_span!("kcp.cancel", site_cd = %self.site_cd, tno = %req.tno);
        async {
            let body = CancelRequestBody::new(&self.site_cd, &self.signer, req)?;
            match self
                .exchange::<_, CancelResponse>(&self.urls.cancel, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    if let Some(seq) = resp.partial_cancel_seq_no() {
                        tracing::info!(seq_no = seq, "KCP partial cancel sequence");
                    }
                    resp.into_confirmation(req)
                        .map_err(|e| PgError::Unknown(e.to_string()))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn inquire(&self, trade: &TradeRef) -> Result<TradeState, PgError> {
        let (span, body) = match trade {
            TradeRef::Tno(tno) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, tno = %tno),
                InquiryRequest::by_tno(&self.site_cd, &self.signer, tno),
            ),
            TradeRef::OrderNo(order) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, ordr_idxx = %order),
                InquiryRequest::by_order_no(&self.site_cd, &self.signer, order),
            ),
        };
        async {
            let body = body?;
            match self
                .exchange::<_, InquiryResponse>(&self.urls.inquiry, &body)
                .await?
            {
                Answer::Refused { code, .. } if code == NO_SUCH_TRADE => Ok(TradeState::NotFound),
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    let state =
                        TradeState::try_from(resp).map_err(|e| PgError::Unknown(e.to_string()))?;
                    reconcile_inquiry(state, trade)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// An answer about another trade than the one asked for says nothing about ours; an answer
/// that omits the identifier we asked by is taken to be about it.
fn reconcile_inquiry(mut state: TradeState, trade: &TradeRef) -> Result<TradeState, PgError> {
    let approval = match &mut state {
        TradeState::NotFound => return Ok(state),
        TradeState::Approved { approval, .. } | TradeState::Cancelled { approval, .. } => approval,
    };
    let (field, asked, got) = match trade {
        TradeRef::Tno(tno) => ("tno", tno, &mut approval.tno),
        TradeRef::OrderNo(order) => ("order_no", order, &mut approval.order_no),
    };
    if got.is_empty() {
        got.clone_from(asked);
    } else if got != asked {
        return Err(PgError::Unknown(format!(
            "KCP inquiry answered {field} {got} for {asked}"
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
