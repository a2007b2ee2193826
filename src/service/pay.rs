//! Key-in card payments: `POST /subscribe/payments/onetime` (spec/iamport-v1.md §4.4, KCP §2.7).
//!
//! Write order (design.md §2): the payment (pending) and its attempt are committed BEFORE KCP is
//! called; the outcome is recorded in one transaction afterwards. A unique index lets only one
//! non-failed payment hold a merchant_uid, so concurrent calls charge KCP at most once.
use futures::future::{BoxFuture, FutureExt};
use sea_orm::{DbErr, Set};

use super::write_retry::{retry_write, RECORD_TRIES};
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::card::{iamport_card_code, CardAuth, CardNumber, Expiry};
use crate::domain::ids::{new_imp_uid, new_scheduled_imp_uid, order_no_for};
use crate::domain::payment::{PaymentStatus, PG_KCP, PG_KCP_BILLING};
use crate::domain::text::for_kcp;
use crate::pg::{
    quoted_refusal, BatchPaymentRequest, CancelKind, CancelRequest, CardApproval, CardSecret,
    DeclineReason, EscrowCancel, KeyInRequest, Pg, PgConnector, PgError,
};
use crate::store::billing::HeldSchedule;
use crate::store::entity::{billing_key, merchant, payment, pg_attempt, webhook_delivery};
use crate::store::payments::{Opened, OpenedCharge};
use crate::store::{is_trade_clash, is_unique_violation, payments};

/// KCP's reason text for a net-cancel (spec/kcp.md §5).
pub const NET_CANCEL_REASON: &str = "가맹점 DB 처리 실패(자동취소)";
/// The answer to a charge with a customer_uid that has no billing key (spec §4.4).
pub const UNKNOWN_CUSTOMER: &str = "등록되지 않은 구매자입니다.";
/// A call that never reached KCP (no connection could be made): nothing was charged or changed.
pub(crate) const NOT_SENT: &str = "PG사에 연결하지 못했습니다. 결제(취소)되지 않았습니다.";
/// The fail reason of a key-in charge whose card could not be stored as the billing key asked
/// for, for a reason other than KCP's refusal: nothing was charged.
const KEY_NOT_STORED: &str = "빌링키를 저장하지 못해 결제를 진행하지 않았습니다.";
/// Instalments are only allowed from this amount (spec/kcp.md §4).
pub const MIN_INSTALMENT_AMOUNT: i64 = 50_000;

/// A key-in payment request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct OnetimeCommand {
    /// With `customer_uid` set, the card is also stored as that customer's billing key.
    pub order: ChargeOrder,
    pub card_number: CardNumber,
    pub expiry: Expiry,
    pub auth: Option<CardAuth>,
    pub customer_ip: String,
}

/// The fail reasons a flow records when its PG call ends without an approval it can keep.
pub(crate) struct FailReasons {
    /// KCP approved another amount or order: it was net-cancelled.
    pub mismatch: &'static str,
    /// openport's KCP configuration is unusable: nothing was sent.
    pub config: &'static str,
}

/// The fail reasons of card and point charges.
pub(crate) const CHARGE_FAILURES: FailReasons = FailReasons {
    mismatch: "승인금액 또는 주문번호 불일치로 자동취소(망취소)되었습니다.",
    config: "PG 설정 오류로 결제하지 못했습니다.",
};

/// What happened to an approval attempt's money.
pub(crate) enum ApprovalOutcome {
    Paid(payment::Model),
    /// Refused by KCP: a definite failure.
    Declined {
        payment: payment::Model,
        reason: DeclineReason,
        message: String,
    },
    /// Approved at KCP, but openport could not honour it and cancelled it at KCP.
    NetCancelled(payment::Model),
    /// Nobody knows yet; the resolver will settle it.
    Unknown(payment::Model),
    /// KCP holds an approval (or a paid-into account) of this payment that openport could neither
    /// record nor cancel: listed for an operator as a `conflict`. Never a failure, and never
    /// "retry is safe": the merchant is told not to charge again until the operator has checked
    /// ([`conflict_message`]).
    Conflict(payment::Model),
}

/// How [`Gateway::open_approval`] refuses a charge while another request's charge of the same
/// merchant_uid is being decided (its attempt held, or the slot taken again and again): nothing
/// was sent to KCP, and the same charge may go through once that one settles. Every such refusal
/// starts with it, and is a [`ServiceError::InProgress`] (a scheduled run gives its schedule
/// back instead of failing it: service/schedules.rs).
pub(crate) const IN_PROGRESS: &str = "같은 merchant_uid로 처리 중인 결제가 있습니다.";

/// The answer about a payment whose approval (or deposit) KCP holds while openport could neither
/// record nor cancel it: an operator settles it with KCP's admin, and a charge of its merchant_uid
/// before then would charge the buyer twice.
pub(crate) fn conflict_message(imp_uid: &str) -> String {
    format!(
        "PG사에 이 결제의 승인(입금)이 남아 있으나 자동취소하지 못해 운영자 확인이 필요합니다. 확인 전에는 다시 결제하지 마세요. (imp_uid: {imp_uid})"
    )
}

/// The future of a step that settles an approval attempt (record it, net-cancel it, inquire and
/// decide). Boxed: the follow-up of a lost answer nests these steps several deep (inquiry, then
/// a window or virtual-account variant, then a record or a net-cancel), and unboxed each step's
/// future is laid out inside its caller's, which overflowed a debug build's 2 MiB thread stack.
pub(crate) type Settling<'a> = BoxFuture<'a, ServiceResult<ApprovalOutcome>>;

/// What came of [`Gateway::record_approval`].
enum Recording {
    /// Recorded paid, with its webhook.
    Paid(Box<payment::Model>),
    /// The attempt is no longer this holder's open attempt: another holder settled or took it,
    /// or a failed try's `COMMIT` landed after all. The database has the answer.
    NotHeld,
    /// The database refused the trade as another payment's (`store::is_trade_clash`), with the
    /// attempt as this holder held it: nothing was written.
    TradeTaken(Box<pg_attempt::Model>),
    /// Every try failed; `held` is the attempt as this holder last held it (its lease renewed).
    Failed {
        held: Box<pg_attempt::Model>,
        error: String,
    },
}

/// What a charge records before KCP is called: common to key-in, billing-key and scheduled charges.
#[derive(Debug, Clone, Default)]
pub struct ChargeOrder {
    pub merchant_uid: String,
    pub amount: i64,
    pub currency: String,
    pub card_quota: u8,
    pub name: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    /// Already a JSON string.
    pub custom_data: Option<String>,
    pub notice_url: Vec<String>,
    pub user_agent: Option<String>,
    pub customer_uid: Option<String>,
    /// `payment` (again) or `payment.scheduled`.
    pub customer_uid_usage: Option<&'static str>,
    /// iamport's `pay_method`; None = `card`.
    pub pay_method: Option<&'static str>,
    /// What is known of the card before approval (billing key: from the key).
    pub card_number_masked: Option<String>,
    pub card_code: Option<String>,
    pub card_name: Option<String>,
    pub card_type: Option<i32>,
    /// A scheduled charge: the schedule its run holds. The charge opens only while the run still
    /// holds it, and names the payment on it in the same write (`payments::open_charge`).
    pub schedule: Option<HeldSchedule>,
}

/// Text fields as KCP accepts them (spec/kcp.md §6), from a charge order.
pub(crate) struct KcpText {
    pub good_name: String,
    pub buyer_name: String,
    pub buyer_email: String,
    pub buyer_tel: String,
}

impl ChargeOrder {
    pub(crate) fn kcp_text(&self) -> ServiceResult<KcpText> {
        let to_kcp = |field, v: &Option<String>, max| {
            for_kcp(field, v.as_deref().unwrap_or(""), max)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))
        };
        let good_name = to_kcp("name", &self.name, 100)?;
        Ok(KcpText {
            good_name: if good_name.is_empty() {
                "openport".into()
            } else {
                good_name
            },
            buyer_name: to_kcp("buyer_name", &self.buyer_name, 30)?,
            buyer_email: to_kcp("buyer_email", &self.buyer_email, 50)?,
            buyer_tel: to_kcp("buyer_tel", &self.buyer_tel, 20)?
                .chars()
                .filter(char::is_ascii_digit)
                .collect(),
        })
    }
}

/// The KCP call that makes a charge; its `order_no` is filled in once the attempt is recorded.
pub(crate) enum ChargeCall {
    /// A key-in charge; with `keep_as`, the card is first stored as that customer's billing key.
    KeyIn {
        request: KeyInRequest,
        keep_as: Option<Box<super::billing::CustomerCommand>>,
    },
    /// A charge with the customer's active billing key, which is read (and its card fields
    /// copied into the payment) by the same write that opens the charge; the request's
    /// `batch_key` and `group_id` are filled in from it.
    Batch {
        customer_uid: String,
        request: crate::pg::BatchPaymentRequest,
    },
}

impl Gateway {
    pub async fn pay_onetime(
        &self,
        m: &merchant::Model,
        cmd: OnetimeCommand,
    ) -> ServiceResult<PaymentRecord> {
        let mut order = cmd.order.clone();
        order.card_number_masked = Some(cmd.card_number.masked());
        let text = order.kcp_text()?;
        if order.customer_uid.is_some() {
            // The key would be issued under the merchant's KCP group: refused before the
            // charge opens when a live merchant has none (`Gateway::group_id`).
            self.group_id(m)?;
        }
        // With a customer_uid the card is also kept as that customer's billing key: issued once
        // the charge is open (its rules passed), before KCP is asked to approve it; the
        // customer's once the charge is paid (service/kept_cards.rs).
        let keep_as =
            order
                .customer_uid
                .clone()
                .map(|customer_uid| super::billing::CustomerCommand {
                    customer_uid,
                    card_number: cmd.card_number.clone(),
                    expiry: cmd.expiry,
                    auth: cmd.auth.clone(),
                    customer_id: None,
                    customer_name: order.buyer_name.clone(),
                    customer_tel: order.buyer_tel.clone(),
                    customer_email: order.buyer_email.clone(),
                    customer_addr: order.buyer_addr.clone(),
                    customer_postcode: order.buyer_postcode.clone(),
                });
        let call = ChargeCall::KeyIn {
            keep_as: keep_as.map(Box::new),
            request: KeyInRequest {
                order_no: String::new(),
                amount: order.amount,
                good_name: text.good_name,
                buyer_name: text.buyer_name,
                buyer_email: text.buyer_email,
                buyer_tel: text.buyer_tel,
                card: card_secret(&cmd.card_number, cmd.expiry, cmd.auth.as_ref()),
                quota: order.card_quota,
                customer_ip: cmd.customer_ip.clone(),
            },
        };
        match self.charge(m, &order, call).await? {
            ApprovalOutcome::Declined {
                payment,
                reason: DeclineReason::CardRejected,
                message,
            } => {
                tracing::info!(imp_uid = %payment.imp_uid, "card data rejected by KCP");
                Err(ServiceError::CardRejected(format!(
                    "카드정보 인증에 실패하였습니다. {message}"
                )))
            }
            other => Self::answer(other),
        }
    }

    /// How an outcome is answered: paid and declined are payments (code 0, spec §8.3), an unknown
    /// outcome is a refusal the merchant may retry with the same merchant_uid, a conflict one it
    /// must not charge again ([`conflict_message`]).
    pub(crate) fn answer(outcome: ApprovalOutcome) -> ServiceResult<PaymentRecord> {
        match outcome {
            ApprovalOutcome::Paid(p)
            | ApprovalOutcome::Declined { payment: p, .. }
            | ApprovalOutcome::NetCancelled(p) => Ok(PaymentRecord { payment: p, cancellations: vec![] }),
            ApprovalOutcome::Unknown(p) => Err(ServiceError::Refused(format!(
                "PG사 응답을 확인하지 못했습니다. 결제 결과는 자동으로 확인되며(imp_uid: {}), 같은 merchant_uid로 다시 요청해도 이중결제되지 않습니다.",
                p.imp_uid
            ))),
            ApprovalOutcome::Conflict(p) => Err(ServiceError::Refused(conflict_message(&p.imp_uid))),
        }
    }

    /// The charge flow shared by key-in, billing-key and scheduled payments: rules, the pending
    /// payment and attempt committed, the KCP call, the outcome recorded (or resolved).
    pub(crate) async fn charge(
        &self,
        m: &merchant::Model,
        order: &ChargeOrder,
        call: ChargeCall,
    ) -> ServiceResult<ApprovalOutcome> {
        instalment_allowed(order)?;
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let customer_uid = match &call {
            ChargeCall::KeyIn { .. } => None,
            ChargeCall::Batch { customer_uid, .. } => Some(customer_uid.as_str()),
        };
        let opened = self.open_approval(m, order, customer_uid).await?;
        let pending = opened.payment.clone();
        let decided = self
            .charge_opened(m, connector.as_ref(), opened, call)
            .await;
        Self::charge_unknown_after_db_error(pending, decided)
    }

    /// [`Gateway::unknown_after_db_error`] for a charge whose payment and attempt are recorded
    /// (`pending`): a database failure is answered [`ApprovalOutcome::Unknown`], a retry with the
    /// same merchant_uid being safe. Card, points and virtual account alike.
    pub(crate) fn charge_unknown_after_db_error(
        pending: payment::Model,
        decided: ServiceResult<ApprovalOutcome>,
    ) -> ServiceResult<ApprovalOutcome> {
        let imp_uid = pending.imp_uid.clone();
        Self::unknown_after_db_error(decided, Some(&imp_uid), |_| {
            Ok(ApprovalOutcome::Unknown(pending))
        })
    }

    /// A database failure once a KCP call's attempt is recorded (`written`: the payment's
    /// imp_uid from then on, None before), possibly after KCP acted (say a connection lost while
    /// the outcome was written): the outcome is unknown to this request, not an internal error.
    /// The attempt stays open and the resolver settles it, so the answer is `unknown`'s, the one
    /// for a lost KCP answer (code 1: a charge may be retried with the same merchant_uid, a cancel
    /// or revocation is confirmed automatically), never an HTTP 500 a merchant may read as
    /// "nothing happened" and act on (charge again under another merchant_uid, refund by other
    /// means). Charges and cancels alike (docs/api.md).
    pub(crate) fn unknown_after_db_error<T>(
        answered: ServiceResult<T>,
        written: Option<&str>,
        unknown: impl FnOnce(&str) -> ServiceResult<T>,
    ) -> ServiceResult<T> {
        match (answered, written) {
            (Err(ServiceError::Db(e)), Some(imp_uid)) => {
                tracing::error!(%imp_uid, "recording a KCP call's outcome failed after its attempt was written; the resolver settles it: {e}");
                unknown(imp_uid)
            }
            (answered, _) => answered,
        }
    }

    /// [`Gateway::charge`] once its payment and attempt are recorded: the KCP call and its outcome.
    async fn charge_opened(
        &self,
        m: &merchant::Model,
        connector: &dyn Pg,
        opened: Opened,
        call: ChargeCall,
    ) -> ServiceResult<ApprovalOutcome> {
        let Opened {
            payment,
            attempt,
            billing_key,
        } = opened;
        // The key issued for a key-in charge's card, pending until the charge is paid
        // (service/kept_cards.rs).
        let mut kept_card = None;
        let (attempt, result) = match call {
            ChargeCall::KeyIn {
                mut request,
                keep_as,
            } => {
                let attempt = match keep_as {
                    None => attempt,
                    Some(customer) => {
                        let (attempt, key_id) =
                            self.keep_card(m, *customer, &payment, attempt).await?;
                        kept_card = Some(key_id);
                        match attempt {
                            Some(attempt) => attempt,
                            None => {
                                self.delete_replaced_key(m, key_id).await;
                                return self.approval_decided(payment.id).await;
                            }
                        }
                    }
                };
                request.order_no = payment.order_no.clone();
                (attempt, connector.approve_key_in(&request).await)
            }
            ChargeCall::Batch { mut request, .. } => {
                request.order_no = payment.order_no.clone();
                let request = match billing_key.map(|key| self.batch_key_of(key, request)) {
                    Some(Ok(request)) => Ok(request),
                    Some(Err(e)) => Err(e),
                    None => Err(PgError::Config(
                        "billing key missing from the opened charge".into(),
                    )),
                };
                // A scheduled run's attempt says "never sent" until this write, made only while
                // this run still holds it: a run that stopped before (or lost the attempt to the
                // resolver, which closed it as never sent) makes no call.
                let attempt = match (&request, attempt.unsent) {
                    (Ok(_), true) => match self.mark_sending(attempt).await? {
                        Some(sending) => sending,
                        None => return self.approval_decided(payment.id).await,
                    },
                    _ => attempt,
                };
                let result = match request {
                    Ok(request) => connector.pay_with_batch_key(&request).await,
                    Err(e) => Err(e),
                };
                (attempt, result)
            }
        };
        let outcome = match result {
            Ok(approval) => {
                self.settle_approval(connector, payment, attempt, approval, true)
                    .await?
            }
            Err(err) => {
                self.conclude_pg_error(connector, payment, attempt, err, &CHARGE_FAILURES)
                    .await?
            }
        };
        // Paid: the card was made the customer's with the paid record (`record_paid`). Failed:
        // its key goes now, not at the resolver's next pass. Unknown: both wait for the outcome.
        if let (Some(key_id), ApprovalOutcome::Declined { .. } | ApprovalOutcome::NetCancelled(_)) =
            (kept_card, &outcome)
        {
            self.delete_replaced_key(m, key_id).await;
        }
        Ok(outcome)
    }

    /// Issues the billing key of an opened key-in charge's card (spec §4.4), pending until the
    /// charge is paid (service/kept_cards.rs: a declined charge leaves the customer's card as it
    /// was, seed 004). Only once the charge is open: a charge its rules refuse (the merchant_uid
    /// paid or in progress, another prepared amount, instalments under 50,000 KRW) issues nothing.
    /// A key KCP does not issue fails the charge, which was not sent, and the refusal is the
    /// answer. The attempt with its lease renewed for the approval (the issuance used part of
    /// it), None when another holder settled the attempt meanwhile; and the pending key's id.
    async fn keep_card(
        &self,
        m: &merchant::Model,
        customer: super::billing::CustomerCommand,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<(Option<pg_attempt::Model>, i64)> {
        let refusal = match self.issue_kept_card(m, &customer, payment).await {
            Ok(key) => return Ok((self.renew(attempt).await?, key.id)),
            Err(refusal) => refusal,
        };
        let reason = match &refusal {
            ServiceError::CardRejected(why) | ServiceError::Refused(why) => why.clone(),
            _ => KEY_NOT_STORED.to_string(),
        };
        self.record_failure(payment.clone(), attempt, None, &reason)
            .await?;
        Err(refusal)
    }

    /// Closes an attempt whose PG call returned an error, the same way for every charge (card,
    /// billing key, points, virtual account): a refusal fails the payment with `[code] message`;
    /// an approval of another amount is net-cancelled (spec/kcp.md §5), an answer about another
    /// order's trade is no answer to this call (`Gateway::misdirected_answer`); a configuration error
    /// fails it; an unknown outcome is settled by inquiry now, while the merchant is still
    /// waiting, so an approval found is honoured.
    pub(crate) async fn conclude_pg_error(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        err: PgError,
        reasons: &FailReasons,
    ) -> ServiceResult<ApprovalOutcome> {
        Ok(match err {
            PgError::Declined {
                code,
                message,
                reason,
            } => {
                let message = quoted_refusal(&code, &message);
                let payment_id = payment.id;
                let written = self
                    .record_failure(payment, attempt, Some(code), &message)
                    .await?;
                self.written_or_decided(payment_id, written, |payment| ApprovalOutcome::Declined {
                    payment,
                    reason,
                    message,
                })
                .await?
            }
            // An answer about another order's trade is not this charge's (service/orphans.rs).
            PgError::Mismatch {
                tno,
                other_order: Some(order_no),
                ..
            } => {
                self.misdirected_answer(payment, attempt, &tno, &order_no)
                    .await?
            }
            PgError::Mismatch { tno, detail, .. } => {
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP approved something else than asked ({detail}); net-cancelling");
                self.net_cancel(connector, payment, attempt, &tno, reasons.mismatch)
                    .await?
            }
            PgError::Config(msg) => {
                tracing::error!(
                    merchant_id = payment.merchant_id,
                    "KCP configuration error: {msg}"
                );
                let payment_id = payment.id;
                let written = self
                    .record_failure(payment, attempt, None, reasons.config)
                    .await?;
                self.written_or_decided(payment_id, written, |payment| ApprovalOutcome::Declined {
                    payment,
                    reason: DeclineReason::Other,
                    message: "PG 설정 오류".into(),
                })
                .await?
            }
            PgError::NotSent(msg) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "KCP unreachable, nothing sent: {msg}");
                let payment_id = payment.id;
                let written = self
                    .record_failure(payment, attempt, None, NOT_SENT)
                    .await?;
                self.written_or_decided(payment_id, written, |payment| ApprovalOutcome::Declined {
                    payment,
                    reason: DeclineReason::Other,
                    message: NOT_SENT.into(),
                })
                .await?
            }
            err => {
                tracing::warn!(imp_uid = %payment.imp_uid, order_no = %payment.order_no, "outcome unknown: {err}");
                // Still this request's attempt (it holds the lease from the insert), so its own
                // inquiry settles it: nobody else can claim it meanwhile.
                match self.mark_unknown(attempt, &err.to_string()).await? {
                    Some(attempt) => {
                        self.resolve_approval(connector, payment, attempt, true)
                            .await?
                    }
                    None => self.approval_decided(payment.id).await?,
                }
            }
        })
    }

    /// spec/iamport-v1.md §4.3: a prepared merchant_uid only accepts its prepared amount. Charges
    /// that go through [`Self::open_approval`] are checked there, inside the write; this is for
    /// flows that must refuse before anything is written (the checkout window).
    pub(crate) async fn check_prepared(
        &self,
        merchant_id: i64,
        merchant_uid: &str,
        amount: i64,
        currency: &str,
    ) -> ServiceResult<()> {
        if let Some(p) = payments::prepare_by_uid(&self.db.read, merchant_id, merchant_uid).await? {
            if payments::prepared_refuses(&p, amount, currency) {
                return Err(prepared_mismatch(p.amount, amount));
            }
        }
        Ok(())
    }

    /// The batch key of an opened billing-key charge, unsealed into its KCP request. A key that
    /// cannot be unsealed (the master key it was sealed with is gone) is a configuration error:
    /// the charge fails without calling KCP.
    fn batch_key_of(
        &self,
        key: billing_key::Model,
        mut request: BatchPaymentRequest,
    ) -> Result<BatchPaymentRequest, PgError> {
        request.batch_key = self
            .secrets
            .open_string(&key.batch_key_sealed)
            .map_err(|e| PgError::Config(format!("billing key: {e}")))?;
        request.group_id = key.group_id;
        Ok(request)
    }

    /// Commits the pending payment and its attempt. The unique index refuses a second live payment
    /// for the merchant_uid; a previous attempt whose outcome is still open is resolved first.
    /// A charge naming `customer_uid` is opened only while that customer has an active billing
    /// key (a card a paid `onetime` kept for it adopted first: service/kept_cards.rs), which comes
    /// back with it.
    pub(crate) async fn open_approval(
        &self,
        m: &merchant::Model,
        cmd: &ChargeOrder,
        customer_uid: Option<&str>,
    ) -> ServiceResult<Opened> {
        self.refuse_while_skewed()?;
        let mut adopted = false;
        let mut tries = 0;
        while tries < 3 {
            tries += 1;
            match self.insert_pending(m, cmd, customer_uid).await {
                Ok(OpenedCharge::Opened(opened)) => return Ok(*opened),
                Ok(OpenedCharge::PreparedDiffers(prepared)) => {
                    return Err(prepared_mismatch(prepared.amount, cmd.amount))
                }
                // The customer's card may be one a paid `onetime` kept whose adoption is still to
                // be written (service/kept_cards.rs): the merchant was told it is the customer's,
                // so it is adopted now and the charge opened with it, once.
                Ok(OpenedCharge::NoBillingKey) => {
                    if let Some(uid) = customer_uid.filter(|_| !adopted) {
                        adopted = true;
                        self.adopt_paid_kept_cards(m.id, &[uid.to_string()]).await?;
                        tries -= 1; // not a try of the charge's own write
                        continue;
                    }
                    return Err(ServiceError::Refused(UNKNOWN_CUSTOMER.into()));
                }
                Ok(OpenedCharge::ScheduleNotHeld) => return Err(ServiceError::ScheduleNotHeld),
                Err(e) if is_unique_violation(&e) => {
                    let Some(live) =
                        payments::live_by_merchant_uid(&self.db.write, m.id, &cmd.merchant_uid)
                            .await?
                    else {
                        continue; // the holder failed meanwhile; the slot is free again
                    };
                    match PaymentStatus::from_db(&live.status) {
                        // KCP holds its approval and an operator has yet to settle it: the retry
                        // is told so, never "in progress" (retried again it would not be let
                        // through either, but the merchant must stop charging this buyer).
                        PaymentStatus::Pending if self.held_by_conflict(&live).await? => {
                            return Err(ServiceError::Refused(conflict_message(&live.imp_uid)));
                        }
                        PaymentStatus::Pending => {
                            if !self.try_resolve_payment(&live, true).await? {
                                return Err(ServiceError::InProgress(format!(
                                    "{IN_PROGRESS} 결과 확인 후 다시 시도해 주세요. (imp_uid: {})",
                                    live.imp_uid
                                )));
                            }
                        }
                        // A payment window opened and left (no approval asked of KCP, no
                        // account issued): abandoned attempts may share a merchant_uid
                        // (spec/iamport-v1.md §8.9), so it is retired as a new request_pay retires it. A window
                        // whose result is being approved is `pending` by then, so the conditional
                        // write leaves it alone, and a window retired here is never approved.
                        PaymentStatus::Ready
                            if live.pg_tid.is_none() && live.vbank_num.is_none() =>
                        {
                            self.fail_ready(&live, "새 결제 요청으로 대체되었습니다.")
                                .await?;
                        }
                        _ => {
                            return Err(ServiceError::Refused(taken_message(
                                &live,
                                self.clock.unix(),
                            )))
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::InProgress(IN_PROGRESS.into()))
    }

    async fn insert_pending(
        &self,
        m: &merchant::Model,
        cmd: &ChargeOrder,
        customer_uid: Option<&str>,
    ) -> Result<OpenedCharge, DbErr> {
        let now = self.clock.unix();
        let imp_uid = if cmd.customer_uid_usage == Some(super::schedules::SCHEDULED_USAGE) {
            new_scheduled_imp_uid()
        } else {
            new_imp_uid()
        };
        let order_no = order_no_for(&imp_uid);
        payments::open_charge(
            &self.db.write,
            payment::ActiveModel {
                imp_uid: Set(imp_uid),
                merchant_id: Set(m.id),
                merchant_uid: Set(cmd.merchant_uid.clone()),
                order_no: Set(order_no.clone()),
                status: Set(PaymentStatus::Pending.as_db().into()),
                pay_method: Set(cmd.pay_method.unwrap_or("card").into()),
                channel: Set("api".into()),
                // A charge with a billing key, or one storing its card as one (`onetime` with
                // `customer_uid`), is on iamport's KCP billing channel (docs/api.md).
                pg_provider: Set(if customer_uid.is_some() || cmd.customer_uid.is_some() {
                    PG_KCP_BILLING
                } else {
                    PG_KCP
                }
                .into()),
                pg_id: Set(m.site_cd.clone()),
                pg_tid: Set(None),
                amount: Set(cmd.amount),
                cancel_amount: Set(0),
                currency: Set(cmd.currency.clone()),
                name: Set(cmd.name.clone()),
                buyer_name: Set(cmd.buyer_name.clone()),
                buyer_email: Set(cmd.buyer_email.clone()),
                buyer_tel: Set(cmd.buyer_tel.clone()),
                buyer_addr: Set(cmd.buyer_addr.clone()),
                buyer_postcode: Set(cmd.buyer_postcode.clone()),
                custom_data: Set(cmd.custom_data.clone()),
                notice_url: Set((!cmd.notice_url.is_empty())
                    .then(|| serde_json::to_string(&cmd.notice_url).unwrap_or_default())),
                user_agent: Set(cmd.user_agent.clone()),
                card_code: Set(cmd.card_code.clone()),
                card_name: Set(cmd.card_name.clone()),
                card_number: Set(cmd.card_number_masked.clone()),
                card_type: Set(cmd.card_type),
                card_quota: Set(i32::from(cmd.card_quota)),
                apply_num: Set(None),
                fail_reason: Set(None),
                cancel_reason: Set(None),
                // The instance's mode decides which KCP approves (the sandbox in test mode), not the
                // merchant's flag (`Connectors::for_merchant` keeps the two in line).
                sandbox: Set(self.settings.test_mode),
                customer_uid: Set(cmd.customer_uid.clone()),
                customer_uid_usage: Set(cmd.customer_uid_usage.map(str::to_string)),
                started_at: Set(now),
                paid_at: Set(None),
                failed_at: Set(None),
                cancelled_at: Set(None),
                updated_at: Set(now),
                ..Default::default()
            },
            pg_attempt::ActiveModel {
                next_check_at: Set(now + self.settings.settle_secs),
                // This request holds it until it records the outcome or lets go
                // (service/attempts.rs).
                lease_until: Set(self.lease_from(now)),
                // A scheduled run's charge is marked sent just before its call
                // (`Gateway::mark_sending`): one whose instance stopped in between is run again,
                // never failed (service/schedules.rs `Gateway::settle_unsent_charge`). Others
                // keep the call right after the insert, and are settled by inquiry.
                unsent: Set(cmd.schedule.is_some()),
                ..super::attempts::new_attempt("approve", order_no, cmd.amount, now)
            },
            customer_uid,
            cmd.schedule,
        )
        .await
    }

    /// Records an approval KCP reported, or cancels it at KCP when it must not stand: the amount or
    /// order differs from ours (spec/kcp.md §5), `honour` is false (the merchant was already told
    /// the payment did not go through), or the result cannot be recorded ([`RECORD_TRIES`] writes
    /// failed). When the record finds the attempt settled by another holder, their outcome is the
    /// answer.
    pub(crate) fn settle_approval<'a>(
        &'a self,
        connector: &'a dyn PgConnector,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        approval: CardApproval,
        honour: bool,
    ) -> Settling<'a> {
        async move {
            let matches =
                approval.amount == payment.amount && approval.order_no == payment.order_no;
            if !matches {
                tracing::error!(imp_uid = %payment.imp_uid, tno = %approval.tno, "KCP approved a different amount or order; net-cancelling");
            }
            let mut attempt = attempt;
            if matches && honour {
                // An answer naming a trade another payment holds is not this payment's, however
                // well its order and amount match (service/orphans.rs). Not looked up before the
                // record, as the windows do: the database refuses the record of a trade another
                // payment holds (migration 000039) and `TradeTaken` settles it the same way, so a
                // charge, the hot path, pays no read for an answer KCP should never give.
                match self.record_approval(&payment, attempt, &approval).await {
                    Recording::Paid(p) => return Ok(ApprovalOutcome::Paid(*p)),
                    Recording::TradeTaken(held) => {
                        return self
                            .trade_taken_meanwhile(payment, *held, &approval.tno)
                            .await
                    }
                    // Another holder settled the attempt (or a failed try's `COMMIT` landed after
                    // all): the approval in hand stands only if the payment holds it
                    // (service/orphans.rs).
                    Recording::NotHeld => {
                        return self
                            .approval_orphaned(connector, payment.id, &approval.tno, false)
                            .await
                    }
                    // The last error may have come after the commit landed (a connection lost on
                    // the way back): `net_cancel` renews the lease first, which fails on an
                    // attempt that the record closed, and then answers from the database instead.
                    Recording::Failed { held, error } => {
                        tracing::error!(imp_uid = %payment.imp_uid, tries = RECORD_TRIES, "cannot record approval, net-cancelling unless it was recorded after all: {error}");
                        attempt = *held;
                    }
                }
            }
            let reason = if matches {
                "결제 결과를 확정하지 못해 자동취소(망취소)되었습니다."
            } else {
                "승인금액 또는 주문번호 불일치로 자동취소(망취소)되었습니다."
            };
            self.net_cancel(connector, payment, attempt, &approval.tno, reason)
                .await
        }
        .boxed()
    }

    /// [`Self::record_paid`], tried up to [`RECORD_TRIES`] times, [`RECORD_RETRY_PAUSE`](super::write_retry::RECORD_RETRY_PAUSE) apart.
    /// Each further try first renews this holder's lease on the attempt: the renewal is the check
    /// that the attempt is still this holder's and still open (a failed try whose `COMMIT` landed
    /// closed it; the resolver may have taken it over while a write waited out the pool's
    /// timeout), and keeps it so while the record is tried again. Trying again is safe whatever
    /// the failed try did: the record is written only onto the attempt still held with the
    /// renewed lease, and the payment still pending.
    async fn record_approval(
        &self,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
        approval: &CardApproval,
    ) -> Recording {
        let (held, recorded) = retry_write(
            attempt,
            |mut held: pg_attempt::Model, try_no| async move {
                if try_no > 1 {
                    match self.extend_lease(held.clone()).await {
                        Ok(Some(renewed)) => held = renewed,
                        Ok(None) => return (held, Ok(Recording::NotHeld)),
                        Err(e) => return (held, Err(e.to_string())),
                    }
                }
                let recorded = match self.record_paid(payment, &held, approval).await {
                    Ok(Some(p)) => Ok(Recording::Paid(Box::new(p))),
                    Ok(None) => Ok(Recording::NotHeld),
                    // Refused for good: tried again, it is refused again.
                    Err(e) if is_trade_clash(&e) => Ok(Recording::TradeTaken(Box::new(held.clone()))),
                    Err(e) => Err(e.to_string()),
                };
                (held, recorded)
            },
            |try_no, error| {
                tracing::warn!(imp_uid = %payment.imp_uid, try_no, "cannot record approval, trying again: {error}")
            },
        )
        .await;
        recorded.unwrap_or_else(|error| Recording::Failed {
            held: Box::new(held),
            error,
        })
    }

    /// STSC (an escrow payment's STE2 / STE5: [`net_cancel_kind`]) with KCP's net-cancel reason;
    /// the attempt stays open (and the payment pending) if the cancel's own outcome is unknown, so
    /// the resolver finishes it. Only while this holder still
    /// holds the attempt open (its lease renewed first, `tno` named on it in the same write, and
    /// the attempt not due again before a settle delay after this STSC, so that no other holder
    /// sends another while KCP may still apply this one: `Gateway::renew_naming`): an attempt
    /// someone else settled, or that an approval record closed after all, is cancelled only if the
    /// payment does not hold the approval (service/orphans.rs).
    pub(crate) fn net_cancel<'a>(
        &'a self,
        connector: &'a dyn PgConnector,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        tno: &'a str,
        fail_reason: &'a str,
    ) -> Settling<'a> {
        async move {
            // Checked before the tno is named on the attempt: a resolver would cancel it then.
            if let Some(holder) = self.foreign_holder(payment.id, tno).await? {
                return self
                    .foreign_trade_named(payment, attempt, tno, &holder)
                    .await;
            }
            let Some(attempt) = self.renew_naming(attempt, tno).await? else {
                return self
                    .approval_orphaned(connector, payment.id, tno, false)
                    .await;
            };
            let sent = self
                .net_cancel_at_kcp(connector, attempt, tno, net_cancel_kind(&payment))
                .await?;
            let Some((attempt, done)) = sent else {
                return self
                    .approval_orphaned(connector, payment.id, tno, false)
                    .await;
            };
            match done {
                Ok(()) => {
                    let payment_id = payment.id;
                    // The database refuses `tno` on this payment when another payment's record of
                    // it committed since the look above: the STSC went out all the same, which
                    // the listing says (`Gateway::net_cancelled_trade_taken`).
                    match self
                        .record_net_cancelled(payment.clone(), attempt.clone(), tno, fail_reason)
                        .await
                    {
                        Ok(Some(p)) => return Ok(ApprovalOutcome::NetCancelled(p)),
                        Err(e) if e.is_trade_clash() => {
                            return self
                                .net_cancelled_trade_taken(payment, attempt, tno)
                                .await
                        }
                        written => written.map(drop)?,
                    }
                    // The lease was renewed just before the cancel, so only a holder stalled past
                    // its lease gets here. Another holder still deciding the attempt can only be
                    // inquiring, and its "approved" may predate the cancel (a scheduled charge
                    // would be recorded paid while KCP holds it cancelled): the cancel KCP
                    // confirmed is recorded over it (service/attempts.rs `take_over_confirmed`).
                    if let Some(taken) = self.take_over_confirmed(&attempt).await? {
                        match self
                            .record_net_cancelled(payment.clone(), taken.clone(), tno, fail_reason)
                            .await
                        {
                            Ok(Some(p)) => return Ok(ApprovalOutcome::NetCancelled(p)),
                            Err(e) if e.is_trade_clash() => {
                                return self.net_cancelled_trade_taken(payment, taken, tno).await
                            }
                            written => written.map(drop)?,
                        }
                    }
                    // Decided already: KCP has the cancel, the database another outcome, a
                    // conflict if it holds the approval.
                    self.approval_orphaned(connector, payment_id, tno, true)
                        .await
                }
                // A refusal is KCP's definite word that the approval stands, not a lost answer:
                // sent again every few minutes it is refused again for ever, with nothing listed
                // for an operator. As for an approval no payment holds (service/orphans.rs), the
                // attempt is a `conflict`: the payment is held pending naming KCP's approval, for
                // an operator to settle with KCP's admin (`Gateway::hold_as_conflict`).
                Err(PgError::Declined { code, message, .. }) => {
                    let refusal = quoted_refusal(&code, &message);
                    tracing::error!(imp_uid = %payment.imp_uid, %tno, %code, "KCP refused to net-cancel an approval openport cannot honour: closed as a conflict for an operator");
                    let reason = format!(
                        "PG사 승인을 확정하지 못했으나 망취소가 거절되었습니다 {refusal}. 운영자 확인이 필요합니다."
                    );
                    self.hold_as_conflict(connector, payment, attempt, tno, Some(code), &reason)
                        .await
                }
                Err(e) => {
                    tracing::error!(imp_uid = %payment.imp_uid, %tno, "net-cancel did not complete: {e}");
                    // Let go: the resolver finishes the cancel (`resolve_approval` never honours
                    // an attempt naming a tno), no sooner than a settle delay after this STSC:
                    // KCP may still be applying it, and a second one sent meanwhile could be
                    // refused with another code than "already cancelled", which reads as "the
                    // approval stands". Then backing off (a KCP that keeps failing is not asked
                    // every tick).
                    let now = self.clock.unix();
                    let tries = attempt.tries + 1;
                    let next = now
                        + self
                            .settings
                            .settle_secs
                            .max(super::resolve::retry_backoff(tries));
                    let mut a: pg_attempt::ActiveModel = attempt.clone().into();
                    a.state = Set("unknown".into());
                    a.tno = Set(Some(tno.to_string()));
                    a.result_message = Set(Some(format!("net-cancel pending: {e}")));
                    a.tries = Set(tries);
                    a.next_check_at = Set(next);
                    a.lease_until = Set(0);
                    a.updated_at = Set(now);
                    match self.write_held(&attempt, a).await? {
                        Some(_) => Ok(ApprovalOutcome::Unknown(payment)),
                        None => {
                            self.approval_orphaned(connector, payment.id, tno, false)
                                .await
                        }
                    }
                }
            }
        }
        .boxed()
    }

    /// An approval (or account) KCP holds under `tno` that openport can neither honour nor cancel
    /// (KCP refused the net-cancel; a virtual account the buyer paid into that cannot be recorded):
    /// its attempt closes as a `conflict` for the operator, and the payment stays pending (`ready`)
    /// naming `tno` and `reason`, in one write. Never failed: `failed` tells the merchant that
    /// nothing was charged and frees the merchant_uid (spec §8.9), and a retry would charge the
    /// buyer again while KCP holds the first approval. Held pending, the payment keeps its
    /// merchant_uid (a retry is answered [`conflict_message`], a cancel is refused for the
    /// operator) and announces nothing until an operator has said what KCP's admin shows
    /// (`Gateway::mark_reconciled`). When another holder decided the attempt first, the approval
    /// in hand is settled as one the payment may not hold (service/orphans.rs).
    ///
    /// A trade another payment holds is that payment's, never named on this one: the answer that
    /// named it is listed as misdirected and this payment's own outcome asked again by its order
    /// number (`Gateway::open_trade_of_another`), also when the other's record commits between
    /// that look and this write (the database refuses it: `store::is_trade_clash`).
    pub(crate) async fn hold_as_conflict(
        &self,
        connector: &dyn PgConnector,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        code: Option<String>,
        reason: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        if let Some(outcome) = self.open_trade_of_another(&payment, &attempt, tno).await? {
            return Ok(outcome);
        }
        let payment_id = payment.id;
        let now = self.clock.unix();
        let mut p: payment::ActiveModel = payment.clone().into();
        p.pg_tid = Set(Some(tno.to_string()));
        p.fail_reason = Set(Some(reason.to_string()));
        p.updated_at = Set(now);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("conflict".into());
        a.tno = Set(Some(tno.to_string()));
        a.result_code = Set(code);
        a.result_message = Set(Some(reason.to_string()));
        a.updated_at = Set(now);
        let pending = PaymentStatus::Pending.as_db();
        let held = payments::conclude_charge(&self.db.write, &attempt, pending, p, a, Vec::new());
        let held = match held.await {
            Err(e) if is_trade_clash(&e) => {
                return self.open_trade_taken_meanwhile(payment, attempt, tno).await;
            }
            held => held?,
        };
        match held {
            Some(p) => Ok(ApprovalOutcome::Conflict(p)),
            None => {
                self.approval_orphaned(connector, payment_id, tno, false)
                    .await
            }
        }
    }

    /// The payment `paid`, its attempt `succeeded` and the `paid` webhook (spec §5), in one atomic
    /// write (`payments::conclude_charge`); None when another holder settled the attempt. A
    /// key-in charge that keeps its card makes it the customer's key then
    /// (`Gateway::adopt_kept_card`), whichever holder records it paid: the request, or the
    /// resolver after a lost answer.
    pub(crate) async fn record_paid(
        &self,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
        ap: &CardApproval,
    ) -> Result<Option<payment::Model>, sea_orm::DbErr> {
        let now = self.clock.unix();
        let webhooks = self.webhooks_announcing(payment, "paid").await?;
        let mut p: payment::ActiveModel = payment.clone().into();
        p.status = Set(PaymentStatus::Paid.as_db().into());
        p.pg_tid = Set(Some(ap.tno.clone()));
        // An approval found by inquiry may lack the card fields (spec/kcp.md §2.10 lists no
        // `card_cd`; a proxy may drop more): what KCP leaves out is null, never "", and what the
        // payment already knows (the masked key-in number, the billing key's card) stays.
        p.apply_num = Set(non_empty(&ap.app_no));
        p.card_code = Set(iamport_card_code(&ap.issuer_code)
            .map(str::to_string)
            .or_else(|| payment.card_code.clone()));
        p.card_name = Set(non_empty(&ap.issuer_name).or_else(|| payment.card_name.clone()));
        p.card_number =
            Set(non_empty(&ap.masked_card_number).or_else(|| payment.card_number.clone()));
        p.card_type = Set(ap.is_check_card.map(i32::from).or(payment.card_type));
        p.card_quota = Set(i32::from(ap.quota));
        p.partial_cancel_allowed =
            Set(ap.partial_cancel_allowed.or(payment.partial_cancel_allowed));
        p.paid_at = Set(Some(ap.approved_at.timestamp()));
        p.updated_at = Set(now);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("succeeded".into());
        a.tno = Set(Some(ap.tno.clone()));
        a.result_code = Set(Some("0000".into()));
        a.updated_at = Set(now);
        let paid = payments::conclude_charge(
            &self.db.write,
            attempt,
            PaymentStatus::Pending.as_db(),
            p,
            a,
            webhooks,
        )
        .await?;
        if let Some(paid) = &paid {
            self.adopt_kept_card(paid).await;
        }
        Ok(paid)
    }

    /// The payment failed with `reason`; None when another holder settled the attempt.
    pub(crate) async fn record_failure(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        code: Option<String>,
        reason: &str,
    ) -> ServiceResult<Option<payment::Model>> {
        self.close_failed(payment, attempt, "failed", None, code, reason)
            .await
    }

    /// KCP's inquiry answered payment `payment`'s attempt with its approval `tno` cancelled (an
    /// approval, or a virtual account closed): the payment failed naming it
    /// ([`Self::record_net_cancelled`]), or what another holder decided. A trade another payment
    /// holds is never named on this one: the answer is listed as misdirected and the payment's own
    /// outcome asked again by its order number (`Gateway::answer_of_another_trade`), also when the
    /// other's record commits between that look and this write (the database refuses it:
    /// `Gateway::trade_taken_meanwhile`). Written as it was, the refusal was a database error on
    /// every pass of the resolver (an HTTP 500 for a merchant's retry), and nothing was listed.
    pub(crate) async fn record_found_cancelled(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        reason: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        if let Some(outcome) = self
            .answer_of_another_trade(&payment, &attempt, tno)
            .await?
        {
            return Ok(outcome);
        }
        let payment_id = payment.id;
        let written = match self
            .record_net_cancelled(payment.clone(), attempt.clone(), tno, reason)
            .await
        {
            Err(e) if e.is_trade_clash() => {
                return self.trade_taken_meanwhile(payment, attempt, tno).await
            }
            written => written?,
        };
        self.written_or_decided(payment_id, written, ApprovalOutcome::NetCancelled)
            .await
    }

    /// The payment failed, its approval `tno` cancelled at KCP; None when another holder settled
    /// the attempt.
    pub(crate) async fn record_net_cancelled(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        reason: &str,
    ) -> ServiceResult<Option<payment::Model>> {
        self.close_failed(payment, attempt, "net_cancelled", Some(tno), None, reason)
            .await
    }

    /// Marks the payment failed (freeing its merchant_uid) and closes the attempt, in one atomic
    /// write (`payments::conclude_charge`), if this holder still holds the attempt open.
    async fn close_failed(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        attempt_state: &str,
        tno: Option<&str>,
        code: Option<String>,
        reason: &str,
    ) -> ServiceResult<Option<payment::Model>> {
        let now = self.clock.unix();
        let webhooks = self.failure_webhooks(&payment).await?;
        let mut p: payment::ActiveModel = payment.into();
        p.status = Set(PaymentStatus::Failed.as_db().into());
        p.fail_reason = Set(Some(reason.to_string()));
        p.failed_at = Set(Some(now));
        if let Some(t) = tno {
            p.pg_tid = Set(Some(t.to_string()));
        }
        p.updated_at = Set(now);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set(attempt_state.into());
        if let Some(t) = tno {
            a.tno = Set(Some(t.to_string()));
        }
        a.result_code = Set(code);
        a.result_message = Set(Some(reason.to_string()));
        a.updated_at = Set(now);
        Ok(payments::conclude_charge(
            &self.db.write,
            &attempt,
            PaymentStatus::Pending.as_db(),
            p,
            a,
            webhooks,
        )
        .await?)
    }

    /// Whether `p` is held pending by a conflict: KCP holds its approval (or deposit) and an
    /// operator has yet to settle it (`Gateway::hold_as_conflict`).
    pub(crate) async fn held_by_conflict(&self, p: &payment::Model) -> ServiceResult<bool> {
        Ok(PaymentStatus::from_db(&p.status) == PaymentStatus::Pending
            && payments::unreconciled_conflict(&self.db.write, p.id)
                .await?
                .is_some())
    }

    /// The webhooks announcing that `payment` failed: none for an ordinary failure, `failed` for a
    /// scheduled charge's (spec §5).
    pub(crate) async fn failure_webhooks(
        &self,
        payment: &payment::Model,
    ) -> Result<Vec<webhook_delivery::ActiveModel>, DbErr> {
        if payment.customer_uid_usage.as_deref() == Some(super::schedules::SCHEDULED_USAGE) {
            self.webhooks_announcing(payment, "failed").await
        } else {
            Ok(Vec::new())
        }
    }

    /// The attempt's answer was lost; its holder keeps it (and its lease) for the follow-up.
    /// None when another holder settled it meanwhile.
    pub(crate) async fn mark_unknown(
        &self,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("unknown".into());
        a.result_message = Set(Some(why.chars().take(200).collect()));
        a.updated_at = Set(self.clock.unix());
        self.write_held(&attempt, a).await
    }
}

/// Instalments (`card_quota` ≥ 2) only from 50,000 KRW (iamport's rule; KCP answers 8106).
/// A business refusal (`code 1`), the same on `onetime`, `again` and schedules: it is about the
/// order, not the card. `code -1` (`카드정보 인증에 실패하였습니다.`, spec/iamport-v1.md §2) tells a
/// client to have the buyer enter the card again, which `again` and schedules carry none of and
/// which would not help.
pub(crate) fn instalment_allowed(order: &ChargeOrder) -> ServiceResult<()> {
    if order.card_quota >= 2 && order.amount < MIN_INSTALMENT_AMOUNT {
        return Err(ServiceError::Refused(format!(
            "할부결제는 {MIN_INSTALMENT_AMOUNT}원 이상 결제에만 가능합니다. (card_quota: {})",
            order.card_quota
        )));
    }
    Ok(())
}

/// Why a merchant_uid's live payment refuses a new charge or request_pay, as it stands at `now`
/// (Unix seconds): a buyer told "already paid" of an account still waiting for its deposit, or of
/// an approval still being decided, would be told something false. Without the payment's imp_uid:
/// the browser checkout answers anyone who has the page's public imp_code, and a merchant_uid must
/// not lead them to a payment's id ([`taken_message`] adds it for the merchant's own server).
pub(crate) fn taken_reason(live: &payment::Model, now: i64) -> &'static str {
    let vbank = live.pay_method == super::vbanks::VBANK;
    match PaymentStatus::from_db(&live.status) {
        // Past its deadline the bank takes no deposit: "waiting for its deposit" would keep the
        // buyer waiting for nothing. The buyer may read it too (the browser checkout answers with
        // it), so it names no REST call; revoking the account (`DELETE /vbanks/{imp_uid}`) closes
        // it, and the merchant_uid stays used either way (one live payment per merchant_uid,
        // docs/api.md `/vbanks`).
        PaymentStatus::Ready
            if live.vbank_num.is_some() && live.vbank_date.is_some_and(|due| due < now) =>
        {
            "이 merchant_uid로 발급된 가상계좌는 입금기한이 지났습니다. 새 merchant_uid로 결제해 주세요."
        }
        PaymentStatus::Ready if live.vbank_num.is_some() => {
            "이 merchant_uid로 이미 가상계좌가 발급되어 입금을 기다리고 있습니다."
        }
        PaymentStatus::Ready | PaymentStatus::Pending => {
            "이 merchant_uid로 진행 중인 결제가 있습니다. 잠시 후 결제내역을 조회해 주세요."
        }
        // A virtual account revoked (or closed at KCP) before any deposit: nothing was ever paid,
        // and "paid, then cancelled" would send the merchant looking for a refund.
        PaymentStatus::Cancelled if vbank && live.paid_at.is_none_or(|t| t <= 0) => {
            "이 merchant_uid로 발급된 가상계좌는 발급취소되었습니다. 새 merchant_uid로 결제해 주세요."
        }
        // Paid, then cancelled in full: the merchant_uid stays used (spec §8.9), and "paid" would
        // send the merchant looking for money it already refunded.
        PaymentStatus::Cancelled => {
            "이미 결제 후 취소된 merchant_uid입니다. 새 merchant_uid로 결제해 주세요."
        }
        _ => "이미 결제가 완료된 merchant_uid입니다.",
    }
}

/// [`taken_reason`] with the live payment's imp_uid, for an authenticated merchant's call.
pub(crate) fn taken_message(live: &payment::Model, now: i64) -> String {
    format!("{} (imp_uid: {})", taken_reason(live, now), live.imp_uid)
}

/// How an approval of `payment` is net-cancelled: `STSC`, or for an escrow payment the escrow
/// status change KCP's own sample net-cancels with (spec/kcp.md §2.11, documented assumption in
/// docs/kcp.md §9.5): `STE5` for a virtual account (issued, never paid out to the merchant), else
/// `STE2` (an approval being net-cancelled was never shipped).
pub(crate) fn net_cancel_kind(payment: &payment::Model) -> CancelKind {
    if !payment.escrow {
        CancelKind::Full
    } else if payment.pay_method == super::vbanks::VBANK {
        CancelKind::Escrow(EscrowCancel::CloseVbank)
    } else {
        CancelKind::Escrow(EscrowCancel::BeforeShipping)
    }
}

impl Gateway {
    /// Cancels approval `tno` whole at KCP (`kind`: [`net_cancel_kind`]) with KCP's net-cancel
    /// reason (spec/kcp.md §5), under `attempt`, which its holder renewed just before
    /// ([`Gateway::renew_naming`], [`Gateway::renew_before_settling_call`]). "Already cancelled" is
    /// the cancel done (an earlier try of this net-cancel got through). An escrow status change KCP
    /// refuses is followed by the plain `STSC`, the attempt renewed again before it
    /// ([`Gateway::cancel_at_kcp`]); the attempt as held after the call is returned with the
    /// outcome. None: that renewal found the attempt no longer this holder's, and nothing was
    /// applied at KCP.
    pub(crate) async fn net_cancel_at_kcp(
        &self,
        connector: &dyn PgConnector,
        attempt: pg_attempt::Model,
        tno: &str,
        kind: CancelKind,
    ) -> ServiceResult<Option<(pg_attempt::Model, Result<(), PgError>)>> {
        let escrow = matches!(kind, CancelKind::Escrow(_));
        let req = CancelRequest {
            tno: tno.to_string(),
            kind,
            reason: NET_CANCEL_REASON.into(),
        };
        let plain = CancelRequest {
            kind: CancelKind::Full,
            ..req.clone()
        };
        let sent = self
            .cancel_at_kcp(attempt, escrow, |call| match call {
                super::cancel::CancelCall::Planned => connector.cancel(&req),
                super::cancel::CancelCall::Plain => connector.cancel(&plain),
            })
            .await?;
        Ok(sent.map(|sent| {
            let done = match sent.answer {
                Ok(_)
                | Err(PgError::Declined {
                    reason: DeclineReason::AlreadyCancelled,
                    ..
                }) => Ok(()),
                Err(e) => Err(e),
            };
            (sent.attempt, done)
        }))
    }
}

/// The card as KCP's key-in and batch-key calls take it: the only place its digits leave the
/// domain types that keep them masked.
pub(crate) fn card_secret(
    number: &CardNumber,
    expiry: Expiry,
    auth: Option<&CardAuth>,
) -> CardSecret {
    CardSecret {
        number: number.expose_digits().to_string(),
        expiry_yymm: expiry.yymm(),
        birth: auth.map(|a| a.expose_birth().to_string()),
        pwd_2digit: auth.and_then(|a| a.expose_pwd().map(str::to_string)),
    }
}

/// A text field of KCP's answer; None when KCP left it empty or out.
fn non_empty(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The answer when a prepared merchant_uid is charged with another amount (spec §4.3).
pub(crate) fn prepared_mismatch(prepared: i64, requested: i64) -> ServiceError {
    ServiceError::Refused(format!(
        "사전등록된 결제정보와 일치하지 않습니다. (사전등록 금액: {prepared}, 요청 금액: {requested})"
    ))
}
