//! The KCP connector: configuration, the HTTP exchange, and the mapping of every possible outcome
//! onto [`PgError`] so that only a definite refusal can ever fail a payment.
//!
//! | what happened                                                              | result                |
//! |---------------------------------------------------------------------------|-----------------------|
//! | a request that could not be built (a URL reqwest cannot send to), a connection that could not be made | [`PgError::NotSent`]  |
//! | any other transport error, timeout, HTTP 5xx, unreadable body, no `res_cd` (registration: no `Code`) | [`PgError::Unknown`]  |
//! | readable body, `res_cd` ≠ `0000` (registration: `Code` ≠ `0000`)          | [`PgError::Declined`] |
//! | `res_cd` `0000` but no `tno` / amount / `pnt_amount` / `batch_key` / `rsv_pnt` (vbank, window or not: `account` / `va_date`; registration: `approvalKey` / `traceNo` / `PayUrl`) | [`PgError::Unknown`]  |
//! | approval whose amount (any it names: cards `amount`/`card_mny`, a card window's `card_mny` only above `amount`; points: `pnt_amount`; windows: `bk_mny`, `pnt_amount` too) or order number ≠ the request, or with a `tno` and an amount field present but unreadable (`"1,000"`, `"-5"`, an overflow) | [`PgError::Mismatch`] (`other_order`: the other order number, for an answer about another order's trade) |
//! | `res_cd` `0000`                                                           | `Ok`                  |
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
    BatchKeyDeleteRequest, BatchKeyIssueRequest, BatchKeyResponse, BatchPaymentRequestBody,
    CancelRequestBody, CancelResponse, CardPaymentResponse, InquiryRequest, InquiryResponse,
    KeyInPaymentRequest, NamedAmounts, PointApprovalResponse, PointBalanceRequest,
    PointBalanceResponse, PointPaymentRequestBody, PointReapprovalRequest, ResultHead, WireError,
    PAY_TYPE_CARD, PAY_TYPE_POINT,
};
use crate::pg::{
    BatchKey, BatchKeyRequest, BatchPaymentRequest, CancelConfirmation, CancelRequest,
    CardApproval, KeyInRequest, PgBilling, PgConnector, PgError, PointAccount, PointApproval,
    PointPaymentRequest, TradeRef, TradeState, Won,
};

/// The origin of KCP's REST calls in its test environment (spec/kcp.md §1).
const TEST_REST_ORIGIN: &str = "https://stg-spl.kcp.co.kr";
/// The origin of KCP's REST calls in production (spec/kcp.md §1).
const PRODUCTION_REST_ORIGIN: &str = "https://spl.kcp.co.kr";

/// KCP endpoints (spec/kcp.md §1). `mobile_trade_register` (the older registration without
/// `kcp_cert_info`) is not called by this connector; it is here so every KCP URL is configured in
/// one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpUrls {
    /// `gw/hub/v1/payment`: key-in, billing-key issuance / payment / delete, Benepia points.
    pub hub: String,
    /// `gw/mod/v1/cancel`: cancels, and point re-approval (`STRA`).
    pub cancel: String,
    /// `std/inquery` (KCP's spelling).
    pub inquiry: String,
    /// `gw/enc/v1/payment`: approval with window data.
    pub enc_payment: String,
    /// `std/tradeReg/register` (newer, with `kcp_cert_info`).
    pub trade_register: String,
    /// `trade/register.do` (mobile, older).
    pub mobile_trade_register: String,
    /// KCP's PC window script (`plugin/kcp_spay_hub.js`, spec/kcp.md §1.1): the page of a PC
    /// checkout loads it from the buyer's browser. The mobile window's `PayUrl` comes with each
    /// trade registration instead.
    pub pc_script: String,
}

impl KcpUrls {
    /// KCP's test environment (`stg-spl`, `testsmpay`, `testspay`).
    pub fn test() -> Self {
        Self::from_origins(
            TEST_REST_ORIGIN,
            "https://testsmpay.kcp.co.kr",
            "https://testspay.kcp.co.kr",
        )
    }

    /// KCP's production environment (`spl`, `smpay`, `spay`).
    pub fn production() -> Self {
        Self::from_origins(
            PRODUCTION_REST_ORIGIN,
            "https://smpay.kcp.co.kr",
            "https://spay.kcp.co.kr",
        )
    }

    /// The seed's single-merchant settings name two of KCP's URLs whole (`KCP_PAYMENT_URL`, the
    /// window approval; `KCP_REGISTER_URL`, a trade registration, the mobile `trade/register.do` or
    /// the newer `std/tradeReg/register`): they replace those of the environment chosen.
    pub fn with_named(mut self, payment: Option<&str>, register: Option<&str>) -> Self {
        if let Some(url) = payment {
            self.enc_payment = url.to_string();
        }
        if let Some(url) = register {
            if url.trim_end_matches('/').ends_with("/trade/register.do") {
                self.mobile_trade_register = url.to_string();
            } else {
                self.trade_register = url.to_string();
            }
        }
        self
    }

    /// The URLs of the KCP at `base`, an origin serving KCP's REST paths. KCP's own REST hosts are
    /// their environment, [`Self::test`] for `https://stg-spl.kcp.co.kr` and [`Self::production`]
    /// for `https://spl.kcp.co.kr`: KCP serves the window side from other hosts (spec/kcp.md §1:
    /// the PC script from `testspay` / `spay`, the older mobile registration from `testsmpay` /
    /// `smpay`), and a PC checkout's page would otherwise have the buyer's browser load KCP's
    /// script from a host KCP does not list for it. Any other origin (the local KCP sandbox at
    /// `http://127.0.0.1:PORT`, a proxy) serves every path itself.
    pub fn with_base(base: &str) -> Self {
        let origin = url::Url::parse(base.trim()).map(|u| u.origin().ascii_serialization());
        match origin.as_deref() {
            Ok(TEST_REST_ORIGIN) => return Self::test(),
            Ok(PRODUCTION_REST_ORIGIN) => return Self::production(),
            _ => {}
        }
        let base = base.trim_end_matches('/');
        Self::from_origins(base, base, base)
    }

    fn from_origins(spl: &str, smpay: &str, spay: &str) -> Self {
        Self {
            hub: format!("{spl}/gw/hub/v1/payment"),
            cancel: format!("{spl}/gw/mod/v1/cancel"),
            inquiry: format!("{spl}/std/inquery"),
            enc_payment: format!("{spl}/gw/enc/v1/payment"),
            trade_register: format!("{spl}/std/tradeReg/register"),
            mobile_trade_register: format!("{smpay}/trade/register.do"),
            pc_script: format!("{spay}/plugin/kcp_spay_hub.js"),
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
        for url in [
            &config.urls.hub,
            &config.urls.cancel,
            &config.urls.inquiry,
            &config.urls.enc_payment,
            &config.urls.trade_register,
        ] {
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
        let (status, text) = self.post(url, body).await?;
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
                // Stored as the fail_reason and answered: never with a card number in it.
                message: crate::domain::card::mask_card_numbers_in(
                    &head.res_msg.unwrap_or_default(),
                ),
            });
        }
        let parsed = serde_json::from_str(&text).map_err(|e| unreadable(status, &e))?;
        Ok(Answer::Success(parsed))
    }

    /// POSTs `body` as JSON and returns the answer's text when there is one to read: transport
    /// failures, timeouts and HTTP 5xx are [`PgError::Unknown`], except a request that could not
    /// be built or a connection that could not be made ([`PgError::NotSent`]).
    async fn post<Req: Serialize>(
        &self,
        url: &str,
        body: &Req,
    ) -> Result<(reqwest::StatusCode, String), PgError> {
        let started = std::time::Instant::now();
        let response = self.http.post(url).timeout(self.timeout).json(body).send().await.map_err(|e| {
            tracing::warn!(error = %e, timeout = e.is_timeout(), elapsed_ms = started.elapsed().as_millis() as u64, "KCP call failed");
            // A request that could not be built (a URL reqwest cannot send to) or a connection
            // that could not be made carried nothing to KCP: the payment can fail at once rather
            // than wait for an inquiry. Any later failure may have reached KCP.
            if e.is_builder() || (e.is_connect() && !e.is_timeout()) {
                PgError::NotSent(transport_message(&e))
            } else {
                PgError::Unknown(transport_message(&e))
            }
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
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// A reqwest error's description (it names the URL and the cause, never the body).
fn transport_message(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "KCP did not answer in time".to_owned()
    } else if e.is_connect() {
        format!("could not connect to KCP: {e}")
    } else if e.is_builder() {
        format!("could not make the KCP request: {e}")
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
/// must be net-cancelled, and neither it nor an answer naming another order is ever recorded as
/// this payment. An answer naming another order is about that order's trade, not this call's
/// (`other_order`): what became of this call is unknown, and the trade is not its to cancel. `named` is every
/// amount the answer names that reads as one ([`CardPaymentResponse::amounts_named`]): an answer
/// whose `amount` is the order's but whose `card_mny` is not approved another card amount all the
/// same. One naming an amount that cannot be read was refused before ([`refuse_unreadable_amounts`]).
fn check_approval_matches(
    mut approval: CardApproval,
    named: &[Won],
    amount: Won,
    order_no: &str,
) -> Result<CardApproval, PgError> {
    let mut problems = Vec::new();
    if approval.amount != amount {
        problems.push(format!("amount {} (requested {amount})", approval.amount));
    }
    for other in named
        .iter()
        .filter(|a| **a != amount && **a != approval.amount)
    {
        problems.push(format!("an amount named {other} (requested {amount})"));
    }
    let mut other_order = None;
    if approval.order_no.is_empty() {
        tracing::warn!("KCP approval without order_no; assuming the requested one");
        approval.order_no = order_no.to_owned();
    } else if approval.order_no != order_no {
        problems.push(format!(
            "order_no {} (requested {order_no})",
            approval.order_no
        ));
        other_order = Some(approval.order_no.clone());
    }
    if problems.is_empty() {
        return Ok(approval);
    }
    let detail = problems.join(", ");
    if other_order.is_some() {
        // Not this call's answer: the trade it names is another order's, never cancelled on this
        // call's behalf (`PgError::Mismatch::other_order`).
        tracing::error!(tno = %approval.tno, problems = %detail, "KCP answered with another order's trade; this call's outcome is unknown");
    } else {
        tracing::error!(tno = %approval.tno, problems = %detail, "KCP approved something else; net-cancel required");
    }
    Err(PgError::Mismatch {
        tno: approval.tno,
        detail,
        other_order,
    })
}

/// The cross-check of spec/kcp.md §5 for an answer naming an amount openport cannot read
/// ([`NamedAmounts::unreadable`]: present, not blank, not an amount), made before the approval is
/// read from the answer (which fails, as [`unusable`], when the unreadable one is the approval's
/// own field). KCP approved something under `tno` that its answer does not confirm to be the
/// order's amount: a mismatch like another amount, so the approval is net-cancelled and never
/// recorded paid. As in [`check_approval_matches`], an answer naming another order is that order's
/// trade (`other_order`), not this call's to cancel. Without a `tno` nothing can be cancelled:
/// the answer is left to the reading, which reports it unusable (the outcome is unknown).
pub(super) fn refuse_unreadable_amounts(
    tno: Option<&str>,
    answered_order: Option<&str>,
    named: &NamedAmounts,
    amount: Won,
    order_no: &str,
) -> Result<(), PgError> {
    let tno = tno.map(str::trim).unwrap_or_default();
    if named.unreadable.is_empty() || tno.is_empty() {
        return Ok(());
    }
    let mut problems: Vec<String> = named.unreadable_problems().collect();
    for other in named.read.iter().filter(|a| **a != amount) {
        problems.push(format!("an amount named {other} (requested {amount})"));
    }
    let other_order = answered_order
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != order_no)
        .map(str::to_owned);
    if let Some(other) = &other_order {
        problems.push(format!("order_no {other} (requested {order_no})"));
    }
    let detail = problems.join(", ");
    if other_order.is_some() {
        tracing::error!(%tno, problems = %detail, "KCP answered with another order's trade; this call's outcome is unknown");
    } else {
        tracing::error!(%tno, problems = %detail, "KCP approved an amount openport cannot read; net-cancel required");
    }
    Err(PgError::Mismatch {
        tno: tno.to_owned(),
        detail,
        other_order,
    })
}

/// The same cross-check for points (spec/kcp.md §5): KCP's point answers carry no order number,
/// so only `pnt_amount` can be compared.
fn check_points_match(approval: PointApproval, amount: Won) -> Result<PointApproval, PgError> {
    if approval.amount == amount {
        return Ok(approval);
    }
    let detail = format!("pnt_amount {} (requested {amount})", approval.amount);
    tracing::error!(tno = %approval.tno, problems = %detail, "KCP approved other points; net-cancel required");
    Err(PgError::Mismatch {
        tno: approval.tno,
        detail,
        other_order: None,
    })
}

/// A success answer the connector cannot use: money may have moved, so the outcome is unknown.
fn unusable(e: WireError) -> PgError {
    tracing::error!(error = %e, "KCP reported success without usable data");
    PgError::Unknown(e.to_string())
}

impl KcpConnector {
    /// A card approval on the hub (key-in, billing-key charge): parse, record the `tno` in the
    /// span, cross-check against what was asked.
    async fn approve_card<Req: Serialize>(
        &self,
        body: &Req,
        amount: Won,
        order_no: &str,
    ) -> Result<CardApproval, PgError> {
        match self
            .exchange::<_, CardPaymentResponse>(&self.urls.hub, body)
            .await?
        {
            Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
            Answer::Success(resp) => {
                if let Some(tno) = resp.tno.as_deref() {
                    tracing::Span::current().record("tno", tno.trim());
                }
                let named = resp.amounts_named();
                refuse_unreadable_amounts(
                    resp.tno.as_deref(),
                    resp.order_no.as_deref(),
                    &named,
                    amount,
                    order_no,
                )?;
                let approval = CardApproval::try_from(resp).map_err(unusable)?;
                check_approval_matches(approval, &named.read, amount, order_no)
            }
        }
    }

    /// A point approval (payment on the hub, re-approval on the cancel URL).
    async fn approve_points<Req: Serialize>(
        &self,
        url: &str,
        body: &Req,
        amount: Won,
        order_no: &str,
    ) -> Result<PointApproval, PgError> {
        match self.exchange::<_, PointApprovalResponse>(url, body).await? {
            Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
            Answer::Success(resp) => {
                if let Some(tno) = resp.tno.as_deref() {
                    tracing::Span::current().record("tno", tno.trim());
                }
                // No order number in a point answer: only its amount can be unreadable.
                refuse_unreadable_amounts(
                    resp.tno.as_deref(),
                    None,
                    &resp.amounts_named(),
                    amount,
                    order_no,
                )?;
                let approval = resp.into_approval(order_no).map_err(unusable)?;
                check_points_match(approval, amount)
            }
        }
    }
}

#[async_trait]
impl PgConnector for KcpConnector {
    async fn approve_key_in(&self, req: &KeyInRequest) -> Result<CardApproval, PgError> {
        let span = tracing::info_span!("kcp.approve_key_in", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let body = KeyInPaymentRequest::new(&self.site_cd, &self.signer, req)?;
            self.approve_card(&body, req.amount, &req.order_no).await
        }
        .instrument(span)
        .await
    }

    /// `gw/mod/v1/cancel` once, as `req` says: an escrow cancel (`STE2`/`STE4`/`STE5`) that KCP
    /// refuses is that refusal. Sending it again as the plain `STSC` (KCP holds a trade asked for
    /// as escrow as a plain one when the merchant has no escrow contract, docs/kcp.md §9.5) is a
    /// second KCP call with an effect, which the attempt's holder renews its lease for first
    /// (service/attempts.rs): the service decides it (`Gateway::cancel_at_kcp`,
    /// service/cancel.rs), never one connector call.
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
        self.inquire_as(trade, PAY_TYPE_CARD, TradeState::try_from)
            .await
    }
}

impl KcpConnector {
    /// `std/inquery` for `pay_type` (spec §2.10): `8201` is [`TradeState::NotFound`], an answer
    /// about another trade than the one asked for is `Unknown`.
    async fn inquire_as(
        &self,
        trade: &TradeRef,
        pay_type: &'static str,
        parse: impl FnOnce(InquiryResponse) -> Result<TradeState, WireError> + Send,
    ) -> Result<TradeState, PgError> {
        let (span, body) = match trade {
            TradeRef::Tno(tno) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, pay_type, tno = %tno),
                InquiryRequest::for_tno(&self.site_cd, &self.signer, tno, pay_type),
            ),
            TradeRef::OrderNo(order) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, pay_type, ordr_idxx = %order),
                InquiryRequest::for_order_no(&self.site_cd, &self.signer, order, pay_type),
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
                    let state = parse(resp).map_err(|e| PgError::Unknown(e.to_string()))?;
                    reconcile_inquiry(state, trade)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Billing keys (spec/kcp.md §2.5, §2.6) and Benepia points (§2.8), with the error semantics of
/// the module table above. Batch keys, card data and point credentials appear in no span, log
/// line or error.
#[async_trait]
impl PgBilling for KcpConnector {
    /// Hub call with `pay_method CARD`, `card_tx_type 12100000`: a documented assumption
    /// (docs/kcp.md §8.1), the real window-less REST form was not found.
    async fn issue_batch_key(&self, req: &BatchKeyRequest) -> Result<BatchKey, PgError> {
        let span = tracing::info_span!("kcp.issue_batch_key", site_cd = %self.site_cd, ordr_idxx = %req.order_no);
        async {
            let body = BatchKeyIssueRequest::new(&self.site_cd, &self.signer, req)?;
            match self
                .exchange::<_, BatchKeyResponse>(&self.urls.hub, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    let key = resp.into_batch_key(&req.card).map_err(unusable)?;
                    tracing::info!(issuer = %key.issuer_code, "KCP issued a billing key");
                    Ok(key)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn pay_with_batch_key(&self, req: &BatchPaymentRequest) -> Result<CardApproval, PgError> {
        let span = tracing::info_span!("kcp.pay_with_batch_key", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let body = BatchPaymentRequestBody::new(&self.site_cd, &self.signer, req)?;
            self.approve_card(&body, req.amount, &req.order_no).await
        }
        .instrument(span)
        .await
    }

    async fn delete_batch_key(&self, batch_key: &str, group_id: &str) -> Result<(), PgError> {
        let span = tracing::info_span!("kcp.delete_batch_key", site_cd = %self.site_cd, group_id = %group_id);
        async {
            let body =
                BatchKeyDeleteRequest::new(&self.site_cd, &self.signer, batch_key, group_id)?;
            match self
                .exchange::<_, ResultHead>(&self.urls.hub, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(_) => Ok(()),
            }
        }
        .instrument(span)
        .await
    }

    /// Sends the fixed `amount "1004"` KCP requires for a balance inquiry (seed 003, docs/kcp.md §8.3).
    async fn point_balance(&self, order_no: &str, account: &PointAccount) -> Result<Won, PgError> {
        let span = tracing::info_span!("kcp.point_balance", site_cd = %self.site_cd, ordr_idxx = %order_no);
        async {
            let body = PointBalanceRequest::new(&self.site_cd, &self.signer, order_no, account)?;
            match self
                .exchange::<_, PointBalanceResponse>(&self.urls.hub, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => resp.balance().map_err(unusable),
            }
        }
        .instrument(span)
        .await
    }

    async fn pay_with_points(&self, req: &PointPaymentRequest) -> Result<PointApproval, PgError> {
        let span = tracing::info_span!("kcp.pay_with_points", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let body = PointPaymentRequestBody::new(&self.site_cd, &self.signer, req)?;
            self.approve_points(&self.urls.hub, &body, req.amount, &req.order_no)
                .await
        }
        .instrument(span)
        .await
    }

    /// `std/inquery` with `pay_type PAPT` (documented assumption, docs/kcp.md §8.4): the answer's
    /// `stat_pt_cd` replaces `stat_ca_cd`; `8201` is `NotFound`.
    async fn inquire_points(&self, trade: &TradeRef) -> Result<TradeState, PgError> {
        self.inquire_as(trade, PAY_TYPE_POINT, InquiryResponse::into_point_state)
            .await
    }

    /// `gw/mod/v1/cancel` `STRA`; the answer's `tno` (recorded as `tno` in the span, next to the
    /// original `orig_tno`) is the new transaction's, and a `Mismatch` names that new `tno`.
    async fn reapprove_points(
        &self,
        tno: &str,
        amount: Won,
        order_no: &str,
        good_name: &str,
    ) -> Result<PointApproval, PgError> {
        let span = tracing::info_span!("kcp.reapprove_points", site_cd = %self.site_cd, orig_tno = %tno, ordr_idxx = %order_no, tno = tracing::field::Empty);
        async {
            let body = PointReapprovalRequest::new(
                &self.site_cd,
                &self.signer,
                tno,
                amount,
                order_no,
                good_name,
            )?;
            self.approve_points(&self.urls.cancel, &body, amount, order_no)
                .await
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
pub(crate) mod tests;
mod vbank;
mod window;
