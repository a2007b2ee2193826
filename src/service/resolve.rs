//! Settling attempts whose outcome is unknown (timeout, 5xx, dropped or lost response, crash):
//! by `std/inquery`, never by guessing (spec/kcp.md §5). An approval that openport can no longer
//! honour is net-cancelled; "KCP has no such approval" (or a trade still as it was, for a cancel)
//! is believed only `settle_secs` after the last call made under the attempt (`sent_at`: an
//! attempt can carry more than one, sent at different times), so a slow request cannot be applied
//! after we concluded it was not.
//!
//! The resolver, and a merchant's retry, settle only attempts they claimed: never one that the
//! request which made the call still holds (service/attempts.rs).
use futures::future::FutureExt;
use sea_orm::Set;

use super::benepia::LateReapproval;
use super::inquiry::TradeInquiry;
use super::merchants::runs_in_mode;
use super::pay::{ApprovalOutcome, Settling};
use super::vbanks::VBANK;
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::checkout::window_plan;
use crate::domain::payment::PaymentStatus;
use crate::pg::{
    quoted_refusal, CancelConfirmation, CardApproval, DeclineReason, Pg, PgError, TradeRef,
    TradeState, VbankState, WindowApproval, WindowMethod,
};
use crate::store::entity::{payment, pg_attempt};
use crate::store::payments;

/// `customer_uid_usage` of the billing-key window's 0-won payment (service/checkout.rs).
pub(crate) const ISSUE_USAGE: &str = "issue";

/// `pg_attempts.kind` of the second look at KCP after a payment was failed on an inquiry by order
/// number that found nothing ([`Gateway::schedule_absence_recheck`]).
pub const ABSENCE_RECHECK: &str = "absence_recheck";

/// How many settle delays after such a failure the second look is taken (one hour with the
/// default 120 s); also after a cancel closed as not applied (service/cancel_recheck.rs).
pub(crate) const RECHECK_SETTLES: i64 = 30;

/// What a second look at KCP found of a payment failed for finding nothing there.
enum LateTrade {
    Nothing,
    /// An approval, or a virtual account awaiting its deposit, under this tno: to net-cancel.
    Standing(String),
    /// A virtual account under this tno that the buyer has paid into.
    PaidInto(String),
    Cancelled(String),
}

/// What became of a cancel attempt.
pub(crate) enum CancelOutcome {
    Applied(Box<payment::Model>),
    /// KCP did not apply it, or holds something else; why, for the merchant's answer.
    NotApplied(String),
    /// Not known to this holder: the attempt is open for the resolver, or closed as a conflict
    /// for an operator when KCP's inquiry contradicted the record.
    Unknown,
    /// KCP confirmed the cancel to its holder after another holder had closed it as not applied:
    /// attempt N is a `conflict` for an operator (`Gateway::confirmed_cancel_decided`).
    Conflict(i64),
    /// Attempt N is a `conflict` for an operator, and whether KCP applied this cancel is not known
    /// to whoever answers: closed so by another holder (whose inquiry found KCP's balance
    /// disagreeing, or no such trade) while this one waited, or by this one after a lost answer.
    /// Answered neither "not cancelled" (a merchant refunding by other means would refund twice
    /// if KCP did) nor "cancelled at KCP", which nobody knows.
    Disputed(i64),
    /// Attempt N was such a conflict and an operator has reconciled it since
    /// (`Gateway::mark_reconciled`): KCP's admin and the payment's record agree, but which of the
    /// payment's cancels this request's is, if any, only the operator knows. The payment is the
    /// answer, so the merchant is pointed at it (service/cancel.rs `reconciled_refusal`).
    Reconciled(i64),
}

impl Gateway {
    pub(crate) fn resolve_approval<'a>(
        &'a self,
        connector: &'a dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        honour: bool,
    ) -> Settling<'a> {
        async move {
            // An open attempt names a tno only once a holder chose to net-cancel that approval
            // (`Gateway::renew_naming`, before the STSC is sent), and the STSC may still be at KCP
            // when the inquiry is answered: only the net-cancel can finish the attempt (sent
            // again, KCP's "already cancelled" counts as done). Honoured, a scheduled charge would
            // be recorded paid, with its `paid` webhook, on an "approved" that KCP's pending
            // cancel is about to undo, and nobody would ever hear KCP confirm that cancel.
            let honour = honour && attempt.tno.is_none();
            // A billing-key issuance whose answer was lost: KCP has no inquiry for one (spec/kcp.md
            // §2.5: the key is only in the answer), so neither "issued" nor "not issued" can be
            // learnt, and no key can be deleted without being named. Left open for an operator,
            // who looks in KCP's admin (`openport attempt fail --none-at-kcp`).
            if payment.customer_uid_usage.as_deref() == Some(ISSUE_USAGE) {
                tracing::error!(imp_uid = %payment.imp_uid, "billing-key issuance outcome unknown: KCP has no inquiry for it, reconcile by hand");
                return self
                    .leave_open(
                        payment,
                        attempt,
                        "no inquiry for a billing-key issuance: reconcile by hand",
                    )
                    .await;
            }
            // Virtual accounts (window or `POST /vbanks`) are inquired with PAVC
            // (service/vbanks.rs).
            if payment.pay_method == VBANK {
                return self
                    .resolve_vbank_issue(connector, payment, attempt, honour)
                    .await;
            }
            // Cards and easy-pay are inquired with PACA, points with PAPT, bank transfers, phone
            // and gift certificates of the window with their own pay_type (service/inquiry.rs).
            let Some(inquiry) = TradeInquiry::of(&payment.pay_method) else {
                tracing::error!(imp_uid = %payment.imp_uid, pay_method = %payment.pay_method, "unknown outcome needs manual reconciliation: no inquiry for this method");
                return self
                    .leave_open(
                        payment,
                        attempt,
                        "no inquiry for this pay method: reconcile by hand",
                    )
                    .await;
            };
            let trade = match &attempt.tno {
                Some(t) => TradeRef::Tno(t.clone()),
                None => TradeRef::OrderNo(attempt.order_no.clone()),
            };
            let is_point = inquiry == TradeInquiry::Point;
            let window = inquiry.window_method();
            let state = inquiry.ask(connector, &trade).await;
            match state {
                Ok(TradeState::Approved { approval, .. }) if is_point => {
                    self.settle_point_approval(connector, payment, attempt, approval.into(), honour)
                        .await
                }
                Ok(TradeState::Approved { approval, .. }) if window.is_some() => {
                    let van_code = window_plan(&payment.pay_method, false)
                        .and_then(|plan| plan.van_code)
                        .unwrap_or_default();
                    let approval = window_approval_from_inquiry(window, approval, van_code);
                    if honour {
                        self.settle_window(connector, payment, attempt, approval)
                            .await
                    } else {
                        let tno = approval.tno_and_amount().0.to_string();
                        self.net_cancel(
                            connector,
                            payment,
                            attempt,
                            &tno,
                            "결제 결과를 확정하지 못해 자동취소(망취소)되었습니다.",
                        )
                        .await
                    }
                }
                Ok(TradeState::Approved { approval, .. }) => {
                    self.settle_approval(connector, payment, attempt, approval, honour)
                        .await
                }
                Ok(TradeState::Cancelled { approval, .. }) => {
                    self.record_found_cancelled(
                        payment,
                        attempt,
                        &approval.tno,
                        "결제 결과를 확정하지 못해 자동취소(망취소)되었습니다.",
                    )
                    .await
                }
                Ok(TradeState::NotFound) if self.absence_is_final(&attempt, &trade) => {
                    // By tno only on an operator's word, against KCP's own approval under it:
                    // looked at again as much as a failure by order number.
                    self.schedule_absence_recheck(&payment, attempt.tno.as_deref())
                        .await?;
                    self.fail_unrecorded(
                        payment,
                        attempt,
                        "PG사 승인 내역이 없어 결제 실패로 처리되었습니다.",
                        "PG사 승인 내역 없음",
                    )
                    .await
                }
                Ok(TradeState::NotFound) => {
                    self.absent_left_open(payment, attempt, &trade).await
                }
                Err(e) => {
                    tracing::warn!(imp_uid = %payment.imp_uid, "inquiry failed: {e}");
                    self.leave_open(payment, attempt, &e.to_string()).await
                }
            }
        }
        .boxed()
    }

    pub(crate) async fn resolve_cancel(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<CancelOutcome> {
        // A request names the payment's current tno on its cancel attempt before it calls KCP
        // (service/cancel.rs), so an attempt naming another tno never reached KCP: it was opened
        // from a read taken before a partial point cancel moved `pg_tid` to its re-approval, and
        // its holder stopped before renaming it. Inquired, the old tno would show that other
        // cancel's STRA as this one's, and the wrong remainder would be recorded.
        if attempt.tno.is_some() && attempt.tno != payment.pg_tid {
            return self
                .closed_or_decided(
                    attempt,
                    "failed",
                    "not sent: named a tno the payment no longer holds",
                    CancelOutcome::NotApplied("PG사에 요청되지 않음".into()),
                )
                .await;
        }
        // A partial cancel of points is a re-approval of the rest (STRA), settled in
        // service/benepia.rs.
        if Self::is_partial_point_cancel(&payment, &attempt) {
            return Ok(self
                .resolve_partial_point_cancel(connector, payment, attempt)
                .await?
                .into_cancel_outcome());
        }
        let Some(remaining) = self.remaining_at_kcp(connector, &payment, &attempt).await? else {
            // Not concluded from a guess either way: the payment keeps its open cancel (no other
            // cancel starts meanwhile) until an operator reconciles it.
            tracing::error!(imp_uid = %payment.imp_uid, pay_method = %payment.pay_method, "cancel outcome needs manual reconciliation: no inquiry for this method");
            return self
                .postponed_or_decided(
                    attempt,
                    "no inquiry for this pay method: reconcile by hand",
                    CancelOutcome::Unknown,
                )
                .await;
        };
        let remaining = match remaining {
            Ok(Some(remaining)) => remaining,
            // "No such trade" for a tno KCP approved contradicts KCP itself, and says nothing of
            // whether this cancel landed: closed as a conflict for the operator, and still
            // unknown to the request that made it, which is never told the cancel failed (a
            // merchant refunding by other means would refund twice). Its answer names the
            // conflict (`CancelOutcome::Disputed`).
            Ok(None) => {
                return self
                    .absent_at_kcp(&payment, attempt, "KCP에 거래가 없음")
                    .await;
            }
            Err(e) => {
                return self
                    .postponed_or_decided(attempt, &e.to_string(), CancelOutcome::Unknown)
                    .await;
            }
        };
        let balance_before = payment.balance();
        if remaining == balance_before - attempt.amount {
            self.recorded_unless_reapproval_landed(connector, payment, attempt, "")
                .await
        } else if remaining == balance_before {
            if self.settled(&attempt) {
                // KCP may still apply it later than the settle delay: looked at again.
                self.schedule_cancel_recheck(&attempt).await?;
                self.closed_or_decided(
                    attempt,
                    "failed",
                    "KCP에 반영되지 않음",
                    CancelOutcome::NotApplied("PG사에서 취소되지 않음".into()),
                )
                .await
            } else {
                self.postponed_or_decided(attempt, "not applied yet", CancelOutcome::Unknown)
                    .await
            }
        } else {
            // KCP changed the trade, by this cancel or otherwise: never answered "not applied"
            // (`CancelOutcome::Disputed`).
            tracing::error!(
                imp_uid = %payment.imp_uid, remaining, balance_before,
                "KCP balance matches neither outcome of the cancel; left for the operator"
            );
            let id = attempt.id;
            self.closed_or_decided(
                attempt,
                "conflict",
                &format!("KCP 잔액 {remaining}, 기대값 불일치"),
                CancelOutcome::Disputed(id),
            )
            .await
        }
    }

    /// What is left to cancel at KCP of the payment of cancel `attempt` (`Ok(None)`: KCP has no
    /// such transaction), inquired under the payment's own pay_type: PAVC for virtual accounts
    /// (their revocation too), the others as for an approval (service/inquiry.rs). Under any other
    /// pay_type KCP answers "no such transaction", and a refund KCP made would be taken for none.
    /// None when the method has no inquiry.
    async fn remaining_at_kcp(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
    ) -> ServiceResult<Option<Result<Option<i64>, PgError>>> {
        let Some(tno) = attempt.tno.clone().or_else(|| payment.pg_tid.clone()) else {
            return Err(ServiceError::Internal(format!(
                "cancel attempt {} without tno",
                attempt.id
            )));
        };
        Ok(self.remaining_of(connector, payment, tno).await)
    }

    /// [`Self::remaining_at_kcp`] of trade `tno` of `payment`.
    pub(crate) async fn remaining_of(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        tno: String,
    ) -> Option<Result<Option<i64>, PgError>> {
        let trade = TradeRef::Tno(tno);
        if payment.pay_method == VBANK {
            Some(
                connector
                    .inquire_vbank(&trade)
                    .await
                    .map(|state| match state {
                        VbankState::NotFound => None,
                        // An account still awaiting its deposit is open for its whole amount,
                        // whatever `rem_mny` says: KCP documents that field for what can be
                        // refunded, and a 0 for an account nobody paid into must not pass for a
                        // revocation (deposits would keep arriving on an account shown revoked).
                        VbankState::Open {
                            paid: false,
                            amount,
                            ..
                        } => Some(amount),
                        VbankState::Open { remaining, .. } => Some(remaining),
                        VbankState::Closed { .. } => Some(0),
                    }),
            )
        } else if let Some(inquiry) = TradeInquiry::of(&payment.pay_method) {
            Some(
                inquiry
                    .ask(connector, &trade)
                    .await
                    .map(|state| match state {
                        TradeState::NotFound => None,
                        TradeState::Approved { remaining, .. } => Some(remaining),
                        TradeState::Cancelled { .. } => Some(0),
                    }),
            )
        } else {
            None
        }
    }

    /// A cancel KCP refused (other than "already cancelled", which [`Gateway::resolve_cancel`]
    /// settles). Mostly nothing changed and both sides agree: the refusal stands. But a refusal is
    /// also how KCP says its balance is not the `rem_mny` openport sent: a cancel KCP applied
    /// after openport had concluded it had not, or a refund made in KCP's admin. Failing then, as
    /// before, left the payment `paid` with a balance KCP does not hold, every later partial
    /// cancel refused the same way, and nobody told. So KCP is asked what is left: the balance
    /// openport holds → refused with KCP's message; exactly this cancel's amount less (it landed
    /// before) → recorded, unless a late re-approval of a point payment explains it
    /// ([`Self::recorded_unless_reapproval_landed`]); anything else → a `conflict` for the
    /// operator, answered as one (`CancelOutcome::Disputed`, never "결제취소에 실패") when KCP
    /// holds less than the record. An inquiry that fails leaves the refusal standing (nothing was
    /// applied by this call).
    ///
    /// KCP having no such trade, said by the inquiry or by the refusal itself
    /// (`DeclineReason::NoSuchTrade`), is the disagreement [`Self::resolve_cancel`] meets when
    /// the inquiry after a lost answer says so: openport holds a paid payment whose trade KCP
    /// does not know. It is answered the same way, a `conflict` listed for the operator and the
    /// operator's wording for the merchant ([`Self::absent_at_kcp`]), never "결제취소에 실패" with
    /// nothing listed: the merchant would take the payment for paid at KCP and the trade for
    /// cancellable later, while KCP may have refunded it otherwise (or holds it under another
    /// site). Only KCP's inquiry showing exactly this cancel applied overrides that refusal (it is
    /// recorded); one showing the trade otherwise contradicts KCP's own refusal, also the
    /// operator's to look into; none to be had (a failed inquiry, none for the method) leaves the
    /// refusal's word standing.
    ///
    /// Cancels (`STSC`, `STPC`, escrow changes) and revocations only: a point payment's partial
    /// cancel is a re-approval, whose refusals service/benepia.rs answers.
    pub(crate) async fn refused_cancel(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        code: &str,
        message: &str,
        reason: DeclineReason,
    ) -> ServiceResult<CancelOutcome> {
        let refusal = &quoted_refusal(code, message);
        let refused = CancelOutcome::NotApplied(message.to_string());
        let absent = reason == DeclineReason::NoSuchTrade;
        let balance = payment.balance();
        let held = match self.remaining_at_kcp(connector, &payment, &attempt).await? {
            Some(Ok(Some(remaining))) => Some(remaining),
            Some(Ok(None)) => {
                return self
                    .absent_at_kcp(&payment, attempt, &format!("{refusal}; KCP에 거래가 없음"))
                    .await;
            }
            Some(Err(e)) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "KCP refused a cancel and could not be asked for its balance: {e}");
                None
            }
            None => None,
        };
        let remaining = match held {
            Some(remaining) => remaining,
            None if absent => {
                return self
                    .absent_at_kcp(
                        &payment,
                        attempt,
                        &format!("{refusal}; KCP에 거래가 없음 (잔액 조회 불가)"),
                    )
                    .await;
            }
            None => balance,
        };
        if remaining == balance && !absent {
            self.closed_or_decided(attempt, "failed", refusal, refused)
                .await
        } else if remaining == balance - attempt.amount {
            tracing::warn!(imp_uid = %payment.imp_uid, remaining, "KCP refused a cancel it already holds applied (an earlier one landed late); recorded");
            self.recorded_unless_reapproval_landed(
                connector,
                payment,
                attempt,
                &format!("{refusal}; "),
            )
            .await
        } else {
            tracing::error!(imp_uid = %payment.imp_uid, remaining, balance, %code, "KCP refused a cancel and holds another balance, or refused it as no such trade while its inquiry shows one; left for the operator");
            let id = attempt.id;
            // KCP holding less than the record: money went back by another way (KCP's admin, a
            // cancel landed late). This call moved nothing, but "결제취소에 실패" would invite the
            // merchant to refund by other means what KCP may already have refunded: answered as a
            // conflict, as `resolve_cancel` answers a balance it cannot explain; so is KCP
            // refusing the trade as unknown while its inquiry shows it. KCP holding more is a
            // plain failure of this cancel (the record says more went back than did).
            let outcome = if remaining < balance || absent {
                CancelOutcome::Disputed(id)
            } else {
                CancelOutcome::NotApplied(format!(
                    "PG사 잔액 {remaining}원이 결제 기록({balance}원)과 달라 운영자 확인이 필요합니다"
                ))
            };
            self.closed_or_decided(
                attempt,
                "conflict",
                &format!("{refusal}; KCP 잔액 {remaining}, openport 잔액 {balance}"),
                outcome,
            )
            .await
        }
    }

    /// KCP has no such trade for the payment of cancel `attempt` while openport holds it paid:
    /// the attempt is closed as a `conflict` (`why`: what KCP said, for the operator's listing),
    /// and the merchant is given the operator's wording (`CancelOutcome::Disputed`), or what
    /// another holder decided.
    async fn absent_at_kcp(
        &self,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<CancelOutcome> {
        tracing::error!(imp_uid = %payment.imp_uid, "cancel attempt: KCP has no such transaction; left for the operator");
        let id = attempt.id;
        self.closed_or_decided(attempt, "conflict", why, CancelOutcome::Disputed(id))
            .await
    }

    /// A cancel KCP answered `0000` for other amounts than were sent (`rem_mny` not the balance
    /// before less the amount, or `mod_mny` not the amount: `CancelConfirmation::as_asked`). KCP
    /// cancelled something, but recorded as planned the payment could show a balance KCP does not
    /// hold, and every later partial cancel would be planned from it. So KCP is asked what is
    /// left, as for a refusal (`refused_cancel`): exactly the planned cancel less → recorded (the
    /// answer's amounts were wrong, KCP's balance is the plan's); anything else → a `conflict`,
    /// answered as a cancel KCP made that the record disagrees with. An inquiry that fails leaves
    /// the attempt open for the resolver, which settles it from KCP's balance
    /// ([`Self::resolve_cancel`]), never from this answer.
    pub(crate) async fn cancel_answered_otherwise(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        answered: &CancelConfirmation,
    ) -> ServiceResult<CancelOutcome> {
        let balance = payment.balance();
        let (answered_remaining, answered_amount) = (answered.remaining, answered.cancelled);
        tracing::error!(imp_uid = %payment.imp_uid, answered_remaining, ?answered_amount, balance, amount = attempt.amount, "KCP confirmed a cancel for other amounts than were sent; asking KCP what it holds");
        let held = match self.remaining_at_kcp(connector, &payment, &attempt).await? {
            Some(Ok(Some(remaining))) if remaining == balance - attempt.amount => {
                return self
                    .record_confirmed_cancel(payment, attempt, answered.cancelled_at)
                    .await;
            }
            Some(Ok(Some(remaining))) => format!("KCP 잔액 {remaining}"),
            Some(Ok(None)) => "KCP에 거래가 없음".to_string(),
            Some(Err(e)) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "cancel answered for other amounts and the inquiry failed: {e}");
                return self
                    .postponed_or_decided(
                        attempt,
                        &format!("answered rem_mny {answered_remaining}; inquiry failed: {e}"),
                        CancelOutcome::Unknown,
                    )
                    .await;
            }
            None => "조회 불가".to_string(),
        };
        let id = attempt.id;
        let why = format!(
            "KCP confirmed the cancel with rem_mny {answered_remaining}, mod_mny {}; {held}, openport 잔액 {balance}, 취소 {}",
            answered_amount.map_or("-".to_string(), |a| a.to_string()),
            attempt.amount
        );
        if self.close_attempt(attempt, "conflict", &why).await? {
            Ok(CancelOutcome::Conflict(id))
        } else {
            // KCP confirmed it: never answered "not applied", whatever another holder wrote.
            self.confirmed_cancel_decided(id).await
        }
    }

    /// A cancel KCP's balance shows applied, recorded now ([`Self::recorded_or_decided`]); but on
    /// a point payment (only ever cancelled whole here: a partial cancel is a re-approval,
    /// service/benepia.rs), KCP's trade shown cancelled may be a late `STRA`'s doing rather than
    /// this cancel's, the rest kept under a re-approval ([`Gateway::late_reapproval`]). Found
    /// approved: a `conflict` naming both trades (`note_prefix` before the note), answered with
    /// the operator's wording, nothing recorded; found cancelled since: KCP holds nothing, the
    /// whole balance recorded naming it; the inquiry failed: left open for the resolver.
    async fn recorded_unless_reapproval_landed(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        note_prefix: &str,
    ) -> ServiceResult<CancelOutcome> {
        if payment.pay_method == super::benepia::POINT {
            let tno = attempt
                .tno
                .clone()
                .or_else(|| payment.pg_tid.clone())
                .unwrap_or_default();
            match self.late_reapproval(connector, &payment, &tno).await? {
                LateReapproval::None => {}
                LateReapproval::Conflict(why) => {
                    let id = attempt.id;
                    return self
                        .closed_or_decided(
                            attempt,
                            "conflict",
                            &format!("{note_prefix}{why}"),
                            CancelOutcome::Disputed(id),
                        )
                        .await;
                }
                LateReapproval::Cancelled(reapproval) => {
                    return self
                        .record_full_cancel_after_reapproval(payment, attempt, reapproval)
                        .await;
                }
                LateReapproval::Unknown(why) => {
                    return self
                        .postponed_or_decided(attempt, &why, CancelOutcome::Unknown)
                        .await;
                }
            }
        }
        self.recorded_or_decided(payment, attempt, self.clock.now())
            .await
    }

    /// The cancel (or revocation) KCP holds applied, recorded as made `at` on the payment and its
    /// attempt, or what another holder of the attempt decided.
    pub(crate) async fn recorded_or_decided(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        at: chrono::DateTime<chrono::Utc>,
    ) -> ServiceResult<CancelOutcome> {
        let id = attempt.id;
        match self.record_cancellation(payment, attempt, at).await? {
            Some(p) => Ok(CancelOutcome::Applied(Box::new(p))),
            None => self.cancel_decided(id).await,
        }
    }

    /// `outcome` once the cancel attempt is closed as `state`, or what another holder decided.
    async fn closed_or_decided(
        &self,
        attempt: pg_attempt::Model,
        state: &str,
        why: &str,
        outcome: CancelOutcome,
    ) -> ServiceResult<CancelOutcome> {
        let id = attempt.id;
        if self.close_attempt(attempt, state, why).await? {
            Ok(outcome)
        } else {
            self.cancel_decided(id).await
        }
    }

    /// `outcome` once the cancel attempt is left open for later, or what another holder decided.
    async fn postponed_or_decided(
        &self,
        attempt: pg_attempt::Model,
        why: &str,
        outcome: CancelOutcome,
    ) -> ServiceResult<CancelOutcome> {
        let id = attempt.id;
        if self.postpone(attempt, why).await? {
            Ok(outcome)
        } else {
            self.cancel_decided(id).await
        }
    }

    /// A payment holding a merchant_uid while its outcome is open: settles it now if it is due and
    /// nobody holds it (the request that made the call may still be inquiring). Returns true when
    /// the merchant_uid is free again. `waiting`: a merchant is waiting on this (a retry of the
    /// merchant_uid), so only the settle delay matters, not the resolver's backoff; the scheduler,
    /// meeting such a payment on every run of its schedule, keeps to the backoff (`next_check_at`)
    /// and leaves KCP alone in between (an outage would otherwise mean an inquiry on every run of
    /// the schedule, about once a minute each, on top of the resolver's).
    pub(crate) async fn try_resolve_payment(
        &self,
        live: &payment::Model,
        waiting: bool,
    ) -> ServiceResult<bool> {
        let now = self.clock.unix();
        for attempt in payments::open_attempts_of(&self.db.write, live.id).await? {
            // A net-cancel whose answer was lost (the attempt names its tno) is looked at again a
            // settle delay after its STSC (`Gateway::net_cancel`), however long the merchant has
            // waited: sent again sooner, it could meet the first still being applied.
            let cancel_in_flight = attempt.tno.is_some() && attempt.next_check_at > now;
            if attempt.kind != "approve"
                || !self.settled(&attempt)
                || cancel_in_flight
                || (!waiting && attempt.next_check_at > now)
            {
                continue;
            }
            let Some(attempt) = self.claim(attempt.id).await? else {
                continue;
            };
            let merchant = self.merchant(live.merchant_id).await?;
            let connector = self.connectors.for_merchant(&merchant, &self.secrets)?;
            let honour =
                live.customer_uid_usage.as_deref() == Some(super::schedules::SCHEDULED_USAGE);
            // A scheduled charge never sent is closed and its schedule handed back to run again
            // (None): its merchant_uid is free.
            let Some(outcome) = self
                .settle_approval_attempt(connector.as_ref(), live.clone(), attempt, honour)
                .await?
            else {
                return Ok(true);
            };
            return Ok(matches!(
                outcome,
                ApprovalOutcome::Declined { .. } | ApprovalOutcome::NetCancelled(_)
            ));
        }
        Ok(false)
    }

    /// The resolver job's unit of work: settles one due attempt, if this instance wins its lease
    /// (never while another holder, such as the request that made the call, holds it).
    pub async fn resolve_attempt(&self, id: i64) -> ServiceResult<()> {
        if !self.attempt_runs_here(id).await? {
            return Ok(());
        }
        let Some(attempt) = self.claim(id).await? else {
            return Ok(());
        };
        let payment = payments::by_id(&self.db.write, attempt.payment_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
        let merchant = self.merchant(payment.merchant_id).await?;
        let connector = self.connectors.for_merchant(&merchant, &self.secrets)?;
        // Nobody was told a scheduled charge failed, so an approval found for it stands (unless
        // a net-cancel of it is under way: `resolve_approval`).
        let honour =
            payment.customer_uid_usage.as_deref() == Some(super::schedules::SCHEDULED_USAGE);
        match attempt.kind.as_str() {
            "approve" => {
                let outcome = self
                    .settle_approval_attempt(connector.as_ref(), payment, attempt, honour)
                    .await?;
                if let (true, Some(outcome)) = (honour, outcome) {
                    self.finish_resolved_schedule(&outcome).await;
                }
            }
            super::orphans::KIND => {
                self.settle_orphan(connector.as_ref(), attempt).await?;
            }
            ABSENCE_RECHECK => {
                self.recheck_absence(connector.as_ref(), payment, attempt)
                    .await?;
            }
            super::cancel_recheck::KIND => {
                self.recheck_cancel(connector.as_ref(), payment, attempt)
                    .await?;
            }
            _ => {
                self.resolve_cancel(connector.as_ref(), payment, attempt)
                    .await?;
            }
        }
        Ok(())
    }

    /// Settles an approval attempt this holder claimed from another (the resolver, a retry of the
    /// merchant_uid, a scheduled run meeting its payment): a scheduled charge's attempt that
    /// provably never reached KCP (`unsent`) is closed as never sent and its schedule run again
    /// (None, [`Gateway::settle_unsent_charge`]); any other by inquiry ([`Self::resolve_approval`]).
    async fn settle_approval_attempt(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        honour: bool,
    ) -> ServiceResult<Option<ApprovalOutcome>> {
        if attempt.unsent && honour {
            return self.settle_unsent_charge(connector, payment, attempt).await;
        }
        Ok(Some(
            self.resolve_approval(connector, payment, attempt, honour)
                .await?,
        ))
    }

    /// Whether attempt `id` is this instance's to settle: its merchant's background work runs in
    /// this instance's mode ([`runs_in_mode`]). A test-mode merchant's trades are the sandbox's,
    /// and so are its certificate and key: a live instance would ask production KCP about them,
    /// be refused at every try, or be told of a trade it never saw. A live merchant's are KCP's:
    /// an instance in test mode would ask the sandbox and find nothing. The due list holds this
    /// mode's attempts only (`payments::due_attempts`); one of the other mode reaching here anyway
    /// is left exactly as it is, unclaimed, for an instance of its mode: a claim and the postpone
    /// that gave it back counted a try and pushed its next look out by the backoff. An attempt not
    /// found is left to [`Self::claim`], which finds nothing to claim either.
    async fn attempt_runs_here(&self, id: i64) -> ServiceResult<bool> {
        let Some(attempt) = payments::attempt_by_id(&self.db.read, id).await? else {
            return Ok(true);
        };
        let Some(payment) = payments::by_id(&self.db.read, attempt.payment_id).await? else {
            return Ok(true);
        };
        let merchant = self.merchant(payment.merchant_id).await?;
        Ok(runs_in_mode(self.settings.test_mode, &merchant))
    }

    /// Settles every due attempt of the merchants this instance serves once; returns how many were
    /// looked at.
    pub async fn resolve_due(&self, limit: u64) -> ServiceResult<usize> {
        // Nor while a newer openport owns the database (service/schema_check.rs).
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(0);
        }
        let ids = payments::due_attempts(
            &self.db.read,
            self.served_merchants(),
            self.clock.unix(),
            limit,
        )
        .await?;
        for id in &ids {
            if let Err(e) = self.resolve_attempt(*id).await {
                tracing::error!(attempt_id = id, "resolver: {e}");
            }
        }
        Ok(ids.len())
    }

    /// Whether a settle delay has passed since the last KCP call made under `attempt` (`sent_at`),
    /// not since its creation: a call sent later on the attempt (an escrow cancel's `STSC`
    /// fallback, a revocation's close after its look at KCP, a net-cancel sent again) may still be
    /// at KCP a settle delay after the attempt was created, and an inquiry showing the trade as
    /// it was would be believed for a call KCP then applies.
    pub(crate) fn settled(&self, attempt: &pg_attempt::Model) -> bool {
        self.clock.unix() >= last_call_at(attempt) + self.settings.settle_secs
    }

    /// Whether KCP's "no such trade" for `trade` proves that KCP did nothing for the attempt: once
    /// the attempt is settled, for an inquiry by `tno` (KCP's documented form); for one by order
    /// number only where that form is trusted (`config::KcpSettings::order_no_inquiry`) or an
    /// operator found that very order number absent from KCP's admin
    /// ([`Gateway::confirm_absent_at_kcp`]). Otherwise the attempt stays open, inquired again with
    /// backoff, for an operator: never failed on a guess, which could let the merchant charge
    /// again while KCP holds an approval.
    ///
    /// An open attempt names a `tno` only once KCP itself answered it (its approval, named before
    /// a net-cancel: [`Self::renew_naming`]), so "no such trade" under that tno contradicts KCP's
    /// own answer (an inquiry under another `pay_type`, a code meant otherwise) and proves
    /// nothing: failing the payment there would drop the pending net-cancel and leave the buyer
    /// charged by nobody's payment ([`Self::absent_left_open`]). Only an operator's word that
    /// KCP's admin holds nothing under the attempt's order number settles it.
    pub(crate) fn absence_is_final(&self, attempt: &pg_attempt::Model, trade: &TradeRef) -> bool {
        let operator_found_none =
            attempt.absent_order_no.as_deref() == Some(attempt.order_no.as_str());
        self.settled(attempt)
            && match trade {
                TradeRef::Tno(_) => operator_found_none,
                TradeRef::OrderNo(order_no) => {
                    self.settings.trust_order_no_inquiry
                        || attempt.absent_order_no.as_deref() == Some(order_no.as_str())
                }
            }
    }

    /// An approval KCP answered "no such trade" for, not believed ([`Self::absence_is_final`]):
    /// the attempt stays open, inquired again with backoff. Under the tno KCP itself issued that
    /// answer contradicts KCP and is an operator's to look into, so it is logged as an ERROR.
    pub(crate) async fn absent_left_open(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        trade: &TradeRef,
    ) -> ServiceResult<ApprovalOutcome> {
        let why = match trade {
            TradeRef::Tno(tno) => {
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP answers no such trade under the tno it approved: left open and inquired again; look in KCP's admin (openport attempt confirm-absent if it holds nothing under the order number)");
                "KCP knows no trade under the tno it approved: reconcile with KCP's admin (attempt confirm-absent)"
            }
            TradeRef::OrderNo(_) => "not found yet",
        };
        self.leave_open(payment, attempt, why).await
    }

    /// Records, before a payment is failed because an inquiry found nothing (by order number, or
    /// under KCP's own tno on an operator's word) or an operator found nothing in KCP's admin, a
    /// second look at KCP [`RECHECK_SETTLES`] settle delays later ([`ABSENCE_RECHECK`]); `tno`:
    /// the approval KCP had named to the attempt, asked for too. The failure frees the
    /// merchant_uid, and the merchant was told a retry is safe: an approval (or a virtual
    /// account) KCP applied later than the settle delay (a stalled KCP, which the settle delay
    /// only bounds by assumption), or one an operator missed in KCP's admin, would leave the buyer
    /// charged twice, once by nobody's payment. Written first, so no crash between the two leaves
    /// a failure without its second look; a look at a payment that did not fail (another holder
    /// decided it) closes itself.
    pub(crate) async fn schedule_absence_recheck(
        &self,
        payment: &payment::Model,
        tno: Option<&str>,
    ) -> ServiceResult<()> {
        let now = self.clock.unix();
        payments::insert_attempt(
            &self.db.write,
            pg_attempt::ActiveModel {
                payment_id: Set(payment.id),
                tno: Set(tno.map(str::to_string)),
                result_message: Set(Some("second look for a late approval".into())),
                next_check_at: Set(now + RECHECK_SETTLES * self.settings.settle_secs),
                ..super::attempts::new_attempt(
                    ABSENCE_RECHECK,
                    payment.order_no.clone(),
                    payment.amount,
                    now,
                )
            },
        )
        .await?;
        Ok(())
    }

    /// What KCP holds under `trade` of `payment`, for a second look: its approval or account by
    /// the payment's own inquiry (`PAVC` for a virtual account, service/inquiry.rs otherwise).
    /// None when the method has no inquiry.
    async fn look_again(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        trade: &TradeRef,
    ) -> Option<Result<LateTrade, PgError>> {
        if payment.pay_method == VBANK {
            return Some(
                connector
                    .inquire_vbank(trade)
                    .await
                    .map(|state| match state {
                        VbankState::NotFound => LateTrade::Nothing,
                        VbankState::Open {
                            tno, paid: false, ..
                        } => LateTrade::Standing(tno),
                        VbankState::Open { tno, .. } => LateTrade::PaidInto(tno),
                        VbankState::Closed { tno, .. } => LateTrade::Cancelled(tno),
                    }),
            );
        }
        let inquiry = TradeInquiry::of(&payment.pay_method)?;
        Some(
            inquiry
                .ask(connector, trade)
                .await
                .map(|state| match state {
                    TradeState::NotFound => LateTrade::Nothing,
                    TradeState::Approved { approval, .. } => LateTrade::Standing(approval.tno),
                    TradeState::Cancelled { approval, .. } => LateTrade::Cancelled(approval.tno),
                }),
        )
    }

    /// Runs an [`ABSENCE_RECHECK`] this instance claimed: KCP asked again by order number (and
    /// under the tno it had named, when the attempt names one). Still nothing → closed; an
    /// approval or an unpaid account now → net-cancelled (revoked) on an attempt of its own, as an
    /// approval no payment holds (service/orphans.rs); an account already paid into → a
    /// `conflict` (the buyer's deposit is refunded by hand, never closed away); the payment not
    /// failed without a trade (another holder decided it) → nothing to look for.
    async fn recheck_absence(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<()> {
        let failed_without_trade =
            payment.status == PaymentStatus::Failed.as_db() && payment.pg_tid.is_none();
        if !failed_without_trade {
            self.close_attempt(attempt, "failed", "nothing to look for")
                .await?;
            return Ok(());
        }
        let by_order_no = TradeRef::OrderNo(attempt.order_no.clone());
        let mut found = self.look_again(connector, &payment, &by_order_no).await;
        if let (Some(Ok(LateTrade::Nothing)), Some(tno)) = (&found, &attempt.tno) {
            found = self
                .look_again(connector, &payment, &TradeRef::Tno(tno.clone()))
                .await;
        }
        match found {
            None => {
                self.close_attempt(attempt, "failed", "nothing to look for: no inquiry")
                    .await?;
            }
            Some(Ok(LateTrade::Nothing)) => {
                self.close_attempt(attempt, "failed", "still no approval at KCP")
                    .await?;
            }
            Some(Ok(LateTrade::Standing(tno))) => {
                // The net-cancel is an attempt of its own, written before KCP is called; this
                // look is done once that attempt exists. One already there (the approval reached
                // its request late, service/orphans.rs) is left to settle, or to its operator.
                if !payments::has_attempt_for(
                    &self.db.write,
                    payment.id,
                    super::orphans::KIND,
                    &tno,
                )
                .await?
                {
                    tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP approved a payment after it was failed for finding no approval; net-cancelling it");
                    self.approval_orphaned(connector, payment.id, &tno, false)
                        .await?;
                }
                self.close_attempt(
                    attempt,
                    "net_cancelled",
                    &format!("late approval {tno}: its net-cancel attempt handles it"),
                )
                .await?;
            }
            Some(Ok(LateTrade::PaidInto(tno))) => {
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP issued a virtual account after the payment was failed for finding none, and the buyer paid into it; left for the operator");
                self.close_attempt(
                    attempt,
                    "conflict",
                    &format!("late account {tno} paid into at KCP: refund it in KCP's admin"),
                )
                .await?;
            }
            Some(Ok(LateTrade::Cancelled(tno))) => {
                self.close_attempt(
                    attempt,
                    "failed",
                    &format!("late approval {tno} found cancelled"),
                )
                .await?;
            }
            Some(Err(e)) => {
                self.postpone(attempt, &format!("second look failed: {e}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// KCP has no record of an approval attempt older than the settle delay: it never happened, so
    /// the payment fails with `fail_reason` (the merchant sees `message`).
    pub(crate) async fn fail_unrecorded(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        fail_reason: &str,
        message: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        let payment_id = payment.id;
        let written = self
            .record_failure(payment, attempt, None, fail_reason)
            .await?;
        self.written_or_decided(payment_id, written, |payment| ApprovalOutcome::Declined {
            payment,
            reason: crate::pg::DeclineReason::Other,
            message: message.into(),
        })
        .await
    }

    /// Leaves an approval's outcome open (the payment stays pending) and looks again later; or,
    /// when another holder settled it meanwhile, answers their outcome.
    pub(crate) async fn leave_open(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        if self.postpone(attempt, why).await? {
            Ok(ApprovalOutcome::Unknown(payment))
        } else {
            self.approval_decided(payment.id).await
        }
    }

    /// Leaves the attempt open, lets go of it (the resolver claims it later) and asks to look
    /// again later (exponential backoff, ≤ 5 minutes). False when this holder no longer held it.
    pub(crate) async fn postpone(
        &self,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<bool> {
        let a = self.postponement(&attempt, why);
        Ok(self.write_held(&attempt, a).await?.is_some())
    }

    /// The write of [`Self::postpone`]: `attempt` left open as `unknown`, let go, one try more and
    /// not due before its backoff.
    pub(crate) fn postponement(
        &self,
        attempt: &pg_attempt::Model,
        why: &str,
    ) -> pg_attempt::ActiveModel {
        let now = self.clock.unix();
        let tries = attempt.tries + 1;
        // Never before a settle delay after its last call ([`Self::settled`]), nor earlier than
        // already set (`renew_before_settling_call`).
        let next = (now + retry_backoff(tries))
            .max(last_call_at(attempt) + self.settings.settle_secs)
            .max(attempt.next_check_at);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("unknown".into());
        a.tries = Set(tries);
        a.next_check_at = Set(next);
        a.lease_until = Set(0);
        a.result_message = Set(Some(why.chars().take(200).collect()));
        a.updated_at = Set(now);
        a
    }

    /// Closes the attempt as `state`. False when this holder no longer held it open.
    pub(crate) async fn close_attempt(
        &self,
        attempt: pg_attempt::Model,
        state: &str,
        why: &str,
    ) -> ServiceResult<bool> {
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set(state.into());
        a.result_message = Set(Some(why.chars().take(200).collect()));
        a.updated_at = Set(self.clock.unix());
        Ok(self.write_held(&attempt, a).await?.is_some())
    }
}

/// A window approval known only from an inquiry: KCP's answer carries the common fields, not the
/// method's details (bank, carrier, phone number), which stay empty.
fn window_approval_from_inquiry(
    method: Option<WindowMethod>,
    a: CardApproval,
    van_code: &str,
) -> WindowApproval {
    match method {
        Some(WindowMethod::Bank) => WindowApproval::Bank {
            tno: a.tno,
            order_no: a.order_no,
            amount: a.amount,
            approved_at: a.approved_at,
            bank_code: String::new(),
            bank_name: String::new(),
        },
        Some(WindowMethod::Phone) => WindowApproval::Phone {
            tno: a.tno,
            order_no: a.order_no,
            amount: a.amount,
            approved_at: a.approved_at,
            carrier: String::new(),
            mobile_no: String::new(),
        },
        _ => WindowApproval::Gift {
            tno: a.tno,
            order_no: a.order_no,
            amount: a.amount,
            approved_at: a.approved_at,
            van_code: van_code.to_string(),
            app_no: a.app_no,
        },
    }
}

/// Seconds before the `tries`-th look at an open attempt: 10 s doubling to 5 minutes, so a PG that
/// keeps failing is not asked on every resolver tick.
pub(crate) fn retry_backoff(tries: i32) -> i64 {
    (5i64 << tries.clamp(0, 6)).min(300)
}

/// When the last KCP call under `attempt` was sent: `sent_at`, never before the attempt's
/// creation. The column's default (0, for a row some other writer inserted without it) must not
/// read as "settled long ago", which would believe "no such trade" for a call just sent.
fn last_call_at(attempt: &pg_attempt::Model) -> i64 {
    attempt.sent_at.max(attempt.created_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::TryIntoModel;

    fn attempt(created_at: i64, sent_at: i64) -> pg_attempt::Model {
        let mut a = super::super::attempts::new_attempt("approve", "OP1".into(), 1000, created_at);
        a.id = sea_orm::Set(1);
        a.payment_id = sea_orm::Set(1);
        a.sent_at = sea_orm::Set(sent_at);
        a.try_into_model().expect("every column set")
    }

    #[test]
    fn the_last_call_counts_from_the_latest_send_and_never_before_the_attempts_creation() {
        assert_eq!(last_call_at(&attempt(1_000, 1_500)), 1_500);
        assert_eq!(
            last_call_at(&attempt(1_000, 0)),
            1_000,
            "a row inserted without sent_at (its default 0) is not settled long ago"
        );
    }
}
