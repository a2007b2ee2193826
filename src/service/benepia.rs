//! Benepia welfare-point payments: `POST /benepia/point` and `POST /benepia/payment` (iamport
//! OpenAPI `/benepia/*`, KCP spec/kcp.md §2.8, seed 003), and the partial cancel of a point
//! payment, which KCP does as one re-approval of the rest on the live trade (a documented
//! assumption, docs/kcp.md §8.3, checked after each re-approval: the original trade must then be
//! cancelled at KCP, or, re-approved in place under its own tno, hold exactly the rest; else the
//! cancel is a conflict for the operator).
//!
//! A point payment follows the charge flow of `pay.rs` step for step: the pending payment and its
//! attempt are committed before KCP is called, the outcome is recorded in one transaction, a KCP
//! refusal is a `failed` payment (code 0), an unknown outcome is settled by inquiry
//! ([`crate::pg::PgBilling::inquire_points`], `pay_type PAPT`) and an approval that cannot be
//! honoured is net-cancelled. Benepia credentials live only in the request: they are never stored,
//! and [`PointAccount`]'s `Debug` hides them.
use chrono::{DateTime, Utc};
use futures::future::FutureExt;
use sea_orm::{ColumnTrait, Condition, Set};

use super::pay::{ApprovalOutcome, ChargeOrder, Settling, CHARGE_FAILURES};
use super::resolve::CancelOutcome;
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::ids::random_hex;
use crate::domain::payment::PaymentStatus;
use crate::pg::{
    quoted_refusal, CardApproval, DeclineReason, Pg, PgError, PointAccount, PointApproval,
    PointPaymentRequest, TradeRef, TradeState, Won,
};
use crate::store::entity::{cancellation, merchant, payment, pg_attempt};
use crate::store::payments::{self, Opened};

/// `payments.pay_method` of a Benepia point payment (iamport's `point`).
pub const POINT: &str = "point";

/// `payments.channel` of a payment made over REST (`service/pay.rs`), as every Benepia hub point
/// payment (`POST /benepia/payment`) is; a window's payment is `pc` or `mobile`.
const REST_CHANNEL: &str = "api";

/// The refusal of a partial cancel of a point payment made in KCP's window
/// ([`is_window_point_payment`]).
pub(crate) const WINDOW_PARTIAL_CANCEL_REFUSED: &str =
    "결제창에서 포인트로 결제된 건은 부분취소할 수 없습니다. 전액취소만 가능합니다.";

/// A point payment made in KCP's window (`request_pay` `pay_method` point: `TPNT`, `van_code`
/// SCWB), told from a Benepia hub payment by its channel: both are `pay_method` point. Seed 003
/// documents a point trade's partial cancel (`STRA`) for the hub's trades only, so the window's
/// are cancelled whole or not at all.
pub(crate) fn is_window_point_payment(p: &payment::Model) -> bool {
    p.pay_method == POINT && p.channel != REST_CHANNEL
}

/// Marks, in an older version's open cancel attempt, a partial point cancel whose full cancel
/// (`STSC`) went through and whose re-approval (`STRA` on the cancelled tno) is still owed. This
/// version sends no `STSC` for a partial cancel ([`Gateway::cancel_points_partially`]); such an
/// attempt, open at the upgrade, is finished by the resolver the older way
/// ([`Gateway::resolve_partial_point_cancel`]).
pub const REAPPROVE_PENDING: &str = "reapprove_pending";

/// `pg_attempts.kind` of the record of a re-approval a partial point cancel moved the payment to
/// (closed from the start, `succeeded`, for the re-approved amount under the re-approval's order
/// number). No call is made for it: the `STRA` is the cancel attempt's, which names the old tno,
/// while KCP's notices of the re-approval name the new one. This row is what
/// `payments::by_tno` finds the payment by (through `pg_attempts_by_tno`, since `payments.pg_tid`
/// has no index): a cancel made in KCP's admin is recorded from KCP's notice
/// (service/notifications.rs `verify_cancel_notice`), and an answer naming this tno for another
/// order is never taken for a trade no payment holds (service/orphans.rs `foreign_holder`).
pub const REAPPROVAL: &str = "reapproval";

/// A point payment request, parsed at the edge.
#[derive(Debug, Clone)]
pub struct PointPaymentCommand {
    /// The order (`pay_method` is set to `point` by the service).
    pub order: ChargeOrder,
    /// Benepia id, password and member company code (`pt_memcorp_cd`): never stored or logged.
    pub account: PointAccount,
}

/// The part of a point approval the flows need, from a payment or re-approval answer
/// ([`PointApproval`]) or from an inquiry ([`CardApproval`] with empty card fields).
#[derive(Debug, Clone)]
pub(crate) struct PointTrade {
    pub tno: String,
    pub order_no: String,
    pub amount: Won,
    pub app_no: String,
    pub approved_at: DateTime<Utc>,
}

impl From<PointApproval> for PointTrade {
    fn from(a: PointApproval) -> Self {
        Self {
            tno: a.tno,
            order_no: a.order_no,
            amount: a.amount,
            app_no: a.app_no,
            approved_at: a.approved_at,
        }
    }
}

impl From<CardApproval> for PointTrade {
    fn from(a: CardApproval) -> Self {
        Self {
            tno: a.tno,
            order_no: a.order_no,
            amount: a.amount,
            app_no: a.app_no,
            approved_at: a.approved_at,
        }
    }
}

impl Gateway {
    /// The account's point balance (`pt_txtype 97000000`). Nothing is recorded: no money moves.
    /// A KCP refusal (unknown account 8401, wrong password 8402) is a code-1 refusal.
    pub async fn point_balance(
        &self,
        m: &merchant::Model,
        account: &PointAccount,
    ) -> ServiceResult<Won> {
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let order_no = format!("PB{}", random_hex(10));
        match connector.point_balance(&order_no, account).await {
            Ok(balance) => Ok(balance),
            Err(PgError::Declined { code, message, .. }) => Err(ServiceError::Refused(format!(
                "포인트 조회에 실패하였습니다. {}",
                quoted_refusal(&code, &message)
            ))),
            Err(PgError::Config(msg)) => {
                tracing::error!(merchant_id = m.id, "KCP configuration error: {msg}");
                Err(ServiceError::Refused(
                    "PG 설정 오류로 포인트를 조회하지 못했습니다.".into(),
                ))
            }
            Err(e) => {
                tracing::warn!(merchant_id = m.id, "point balance outcome unknown: {e}");
                Err(ServiceError::Refused(
                    "PG사 응답을 확인하지 못했습니다. 잠시 후 다시 조회해 주세요.".into(),
                ))
            }
        }
    }

    /// A Benepia point payment, with `charge()`'s write order and outcome rules (module doc).
    pub async fn pay_with_points(
        &self,
        m: &merchant::Model,
        cmd: PointPaymentCommand,
    ) -> ServiceResult<PaymentRecord> {
        let order = ChargeOrder {
            pay_method: Some(POINT),
            currency: "KRW".into(),
            ..cmd.order
        };
        let text = order.kcp_text()?;
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let Opened {
            payment, attempt, ..
        } = self.open_approval(m, &order, None).await?;
        let pending = payment.clone();
        let req = PointPaymentRequest {
            order_no: payment.order_no.clone(),
            amount: order.amount,
            good_name: text.good_name,
            buyer_name: text.buyer_name,
            buyer_email: text.buyer_email,
            buyer_tel: text.buyer_tel,
            account: cmd.account,
        };
        let decided = match connector.pay_with_points(&req).await {
            Ok(approval) => {
                self.settle_point_approval(
                    connector.as_ref(),
                    payment,
                    attempt,
                    approval.into(),
                    true,
                )
                .await
            }
            Err(err) => {
                self.conclude_pg_error(connector.as_ref(), payment, attempt, err, &CHARGE_FAILURES)
                    .await
            }
        };
        // The points may be spent: a database failure from here on is an unknown outcome.
        Self::answer(Self::charge_unknown_after_db_error(pending, decided)?)
    }

    /// `settle_approval` for points: the approval is recorded without card fields, or
    /// net-cancelled when it differs from the payment, `honour` is false, or it cannot be recorded.
    pub(crate) fn settle_point_approval<'a>(
        &'a self,
        connector: &'a dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        trade: PointTrade,
        honour: bool,
    ) -> Settling<'a> {
        async move {
            let matches = trade.amount == payment.amount && trade.order_no == payment.order_no;
            if !matches {
                tracing::error!(imp_uid = %payment.imp_uid, tno = %trade.tno, "KCP approved other points or another order; net-cancelling");
            }
            if matches && honour {
                // Another payment's trade is not this payment's to record (service/orphans.rs).
                if let Some(outcome) = self
                    .answer_of_another_trade(&payment, &attempt, &trade.tno)
                    .await?
                {
                    return Ok(outcome);
                }
                match self.record_points_paid(&payment, &attempt, &trade).await {
                    Ok(Some(p)) => return Ok(ApprovalOutcome::Paid(p)),
                    // Another payment's record of the trade committed after the check above.
                    Err(e) if crate::store::is_trade_clash(&e) => {
                        return self
                            .trade_taken_meanwhile(payment, attempt, &trade.tno)
                            .await
                    }
                    // Another holder settled the attempt: the approval in hand stands only if the
                    // payment holds it (service/orphans.rs).
                    Ok(None) => {
                        return self
                            .approval_orphaned(connector, payment.id, &trade.tno, false)
                            .await
                    }
                    // `net_cancel` renews the lease first: an attempt the record closed after
                    // all is answered from the database, not cancelled.
                    Err(e) => {
                        tracing::error!(imp_uid = %payment.imp_uid, "cannot record point approval, net-cancelling unless it was recorded after all: {e}")
                    }
                }
            }
            let reason = if matches {
                "결제 결과를 확정하지 못해 자동취소(망취소)되었습니다."
            } else {
                "승인금액 또는 주문번호 불일치로 자동취소(망취소)되었습니다."
            };
            self.net_cancel(connector, payment, attempt, &trade.tno, reason)
                .await
        }
        .boxed()
    }

    /// `record_paid` for points: `pg_tid` = tno, `apply_num` = `pnt_app_no`, no card fields; the
    /// `paid` webhook commits with the state change. None (nothing written) when another holder
    /// settled the attempt.
    async fn record_points_paid(
        &self,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
        trade: &PointTrade,
    ) -> Result<Option<payment::Model>, sea_orm::DbErr> {
        let now = self.clock.unix();
        let txn = self.db.write.begin().await?;
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("succeeded".into());
        a.tno = Set(Some(trade.tno.clone()));
        a.result_code = Set(Some("0000".into()));
        a.updated_at = Set(now);
        if !payments::write_held_attempt(&txn, attempt, a).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let mut p: payment::ActiveModel = payment.clone().into();
        p.status = Set(PaymentStatus::Paid.as_db().into());
        p.pay_method = Set(POINT.into());
        p.pg_tid = Set(Some(trade.tno.clone()));
        p.apply_num = Set(Some(trade.app_no.clone()));
        p.card_code = Set(None);
        p.card_name = Set(None);
        p.card_number = Set(None);
        p.card_type = Set(None);
        p.card_quota = Set(0);
        p.paid_at = Set(Some(trade.approved_at.timestamp()));
        p.updated_at = Set(now);
        let pending =
            Condition::all().add(payment::Column::Status.eq(PaymentStatus::Pending.as_db()));
        let Some(p) = payments::update_payment_if(&txn, p, pending).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        self.enqueue_webhook(&txn, &p, "paid", None).await?;
        txn.commit().await?;
        Ok(Some(p))
    }

    /// A partial cancel of a Benepia hub point payment. KCP has no `STPC` for points; a point
    /// trade's partial cancel is one `STRA` on the live tno with `mod_mny` = what is left, which
    /// cancels that tno and approves the rest under a NEW tno, the payment's `pg_tid` from then on
    /// (seed 003 §2.4, read as docs/kcp.md §8.3 explains: a documented assumption, chosen because
    /// it fails safe). iamport's view is that of a partial cancel: cumulative `cancel_amount` and
    /// one `cancel_history` entry for the amount cancelled.
    ///
    /// 1. `attempt` (kind `cancel`, amount = the cancel) is committed by the caller before any call,
    ///    and it keeps the payment's only open-cancel slot until this finishes.
    /// 2. The re-approval's order number ([`reapproval_order_no`]) is written on the attempt
    ///    (committed) BEFORE `STRA` is sent: what a lost answer is looked for by.
    /// 3. `STRA` approved → the original tno is inquired first
    ///    ([`Self::original_after_reapproval`]): cancelled → the cancellation, the new `pg_tid`
    ///    and the attempt commit together; the answer naming the original tno, which KCP shows
    ///    approved for exactly the rest (re-approved in place) → the cancellation and the attempt
    ///    commit together, `pg_tid` unchanged; still approved otherwise (KCP re-approved without
    ///    cancelling: the member paid both) or unknown to KCP → a conflict for the operator,
    ///    nothing recorded or sent, answered with the operator's wording; the inquiry failed →
    ///    left open for the resolver. Refused → nothing moved: the attempt fails (KCP's "already
    ///    cancelled" or "no such trade": a conflict for the operator, as for a card). Unknown →
    ///    [`Self::resolve_partial_point_cancel`]: KCP holding the original tno approved for exactly
    ///    the rest means re-approved in place, applied; still live otherwise and no re-approval
    ///    under its order number means not applied; the original cancelled and the
    ///    re-approval found under its order number means applied; anything else is a conflict.
    ///    Never sent again on a guess.
    pub(crate) async fn cancel_points_partially(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<PaymentRecord> {
        let attempt_id = attempt.id;
        let Some(attempt) = self.name_reapproval(&payment, attempt).await? else {
            let outcome = self.point_cancel_decided(attempt_id).await?;
            return self.answer_point_cancel(&payment, outcome).await;
        };
        let tno = attempt
            .tno
            .clone()
            .ok_or_else(|| ServiceError::Internal("point cancel attempt without tno".into()))?;
        let remaining = rest_after_cancel(&payment, &attempt);
        let outcome = match connector
            .reapprove_points(&tno, remaining, &attempt.order_no, &good_name(&payment))
            .await
        {
            Ok(approval) => {
                self.record_confirmed_reapproval(
                    connector,
                    payment.clone(),
                    attempt,
                    approval.into(),
                )
                .await?
            }
            Err(PgError::Declined {
                code,
                message,
                reason,
            }) => {
                // "Already cancelled" while openport holds a balance: the points went back by
                // another way (KCP's admin). Not a refusal to leave at that: the payment would
                // show its balance for good and a merchant refunding by other means would refund
                // twice. As for cards (service/cancel.rs), KCP's record disagrees with openport's,
                // so the attempt is closed as a conflict, which holds the payment's cancels for
                // an operator. So is "no such trade" (KCP's 8201, `DeclineReason::NoSuchTrade`):
                // openport holds the payment paid under a tno KCP approved, and KCP knowing none
                // contradicts that; answered with the operator's wording, never "결제취소에 실패"
                // (the merchant would take the points for still spent and refund them by other
                // means while KCP may have given them back), as a card cancel refused so is
                // (service/resolve.rs `refused_cancel`). Any other refusal moved nothing: STRA is
                // the whole call.
                let refusal = quoted_refusal(&code, &message);
                let (state, note, answer) = match reason {
                    DeclineReason::AlreadyCancelled => {
                        tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP says the point payment is already cancelled while openport holds a balance; left for the operator");
                        let answer = ServiceError::Refused(format!(
                            "이 결제건은 PG사에서 이미 취소되어 운영자 확인이 필요합니다. (imp_uid: {}, attempt {attempt_id})",
                            payment.imp_uid
                        ));
                        ("conflict", refusal, answer)
                    }
                    DeclineReason::NoSuchTrade => {
                        tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP refused a partial point cancel as no such trade while openport holds the payment paid; left for the operator");
                        let answer = super::cancel::conflict_refusal(&payment, attempt_id);
                        ("conflict", format!("{refusal}; KCP에 거래가 없음"), answer)
                    }
                    _ => {
                        let answer =
                            ServiceError::Refused(format!("결제취소에 실패하였습니다.({message})"));
                        ("failed", refusal, answer)
                    }
                };
                if !self.close_attempt(attempt, state, &note).await? {
                    let outcome = self.point_cancel_decided(attempt_id).await?;
                    return self.answer_point_cancel(&payment, outcome).await;
                }
                return Err(answer);
            }
            Err(PgError::Mismatch {
                tno: new_tno,
                detail,
                ..
            }) => {
                self.reapproval_mismatch(&payment, attempt, "STRA ", &new_tno, &detail)
                    .await?
            }
            Err(PgError::NotSent(msg)) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "KCP unreachable, point re-approval not sent: {msg}");
                if !self.close_attempt(attempt, "failed", "not sent").await? {
                    let outcome = self.point_cancel_decided(attempt_id).await?;
                    return self.answer_point_cancel(&payment, outcome).await;
                }
                return Err(ServiceError::Refused(super::pay::NOT_SENT.into()));
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "point re-approval (STRA) outcome unknown: {e}");
                match self.mark_unknown(attempt, &e.to_string()).await? {
                    Some(attempt) => {
                        self.resolve_partial_point_cancel(connector, payment.clone(), attempt)
                            .await?
                    }
                    None => self.point_cancel_decided(attempt_id).await?,
                }
            }
        };
        self.answer_point_cancel(&payment, outcome).await
    }

    async fn answer_point_cancel(
        &self,
        payment: &payment::Model,
        outcome: PointCancelOutcome,
    ) -> ServiceResult<PaymentRecord> {
        match outcome {
            PointCancelOutcome::Applied(p) => self.payment_record(*p).await,
            // What KCP did is the answer (an older version's cancel, finished by the resolver): a
            // code 1 would tell the merchant nothing was cancelled while the buyer has every point
            // back. The record says it (`cancel_amount` is the whole amount) and a `cancelled`
            // webhook was queued whatever `enable_webhook` said.
            PointCancelOutcome::FullyCancelled(p, message) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "partial point cancel answered as a full cancel: {message}");
                self.payment_record(*p).await
            }
            PointCancelOutcome::NotApplied(why) => Err(ServiceError::Refused(format!(
                "결제취소에 실패하였습니다.({why})"
            ))),
            PointCancelOutcome::Unknown => Err(ServiceError::Refused(format!(
                "PG사 취소 응답을 확인하지 못했습니다. 취소 결과는 자동으로 확인됩니다. (imp_uid: {})",
                payment.imp_uid
            ))),
            PointCancelOutcome::Conflict(attempt_id) => Err(ServiceError::Refused(format!(
                "PG사에서는 취소되었으나 결제 기록과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {}, attempt {attempt_id})",
                payment.imp_uid
            ))),
            PointCancelOutcome::Disputed(attempt_id) => {
                Err(super::cancel::conflict_refusal(payment, attempt_id))
            }
            PointCancelOutcome::Reconciled(attempt_id) => {
                Err(super::cancel::reconciled_refusal(payment, attempt_id))
            }
        }
    }

    /// Whether a re-approval openport sent on point trade `tno` of `payment` may have landed
    /// without being recorded: a cancel of the payment closed as not applied whose second look
    /// (`cancel_recheck`) naming `tno` is still due, or a conflict naming `tno`. KCP showing `tno`
    /// cancelled then says nothing of whether every point went back (a late `STRA` keeps the rest
    /// under a re-approval the record does not know), so a notice of that cancel is left to the
    /// second look or the operator (service/notifications.rs `verify_cancel_notice`) rather than
    /// recorded as the whole balance cancelled, and a full cancel KCP shows applied looks the
    /// re-approval up first ([`Self::late_reapproval`]).
    pub(crate) async fn reapproval_unaccounted(
        &self,
        payment: &payment::Model,
        tno: &str,
    ) -> ServiceResult<bool> {
        if payments::conflict_names(&self.db.write, payment.id, tno).await? {
            return Ok(true);
        }
        Ok(!self.rechecks_naming(payment, tno).await?.is_empty())
    }

    /// The second looks (`cancel_recheck`) still due of `payment`'s cancels, naming trade `tno`.
    async fn rechecks_naming(
        &self,
        payment: &payment::Model,
        tno: &str,
    ) -> ServiceResult<Vec<pg_attempt::Model>> {
        Ok(payments::open_attempts_of(&self.db.write, payment.id)
            .await?
            .into_iter()
            .filter(|a| a.kind == super::cancel_recheck::KIND && a.tno.as_deref() == Some(tno))
            .collect())
    }

    /// Whether KCP showing point trade `tno` of `payment` cancelled may be recorded as a full cancel
    /// of it (service/resolve.rs `resolve_cancel`, `refused_cancel`), and if not, what instead.
    /// While a re-approval openport sent on `tno` is unaccounted for
    /// ([`Self::reapproval_unaccounted`]), `tno` cancelled may be a late `STRA`'s doing, which
    /// keeps the rest under a re-approval: recorded as the whole balance cancelled, the payment
    /// would show every point back while KCP holds the rest, under a trade no payment names and
    /// no conflict lists. So the re-approval is looked up under the order number it was sent
    /// under, its second look's, as the resolver's first look does
    /// ([`Self::reapproval_beside_live_original`]).
    pub(crate) async fn late_reapproval(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        tno: &str,
    ) -> ServiceResult<LateReapproval> {
        // What `reapproval_unaccounted` reads, each read once.
        let rechecks = self.rechecks_naming(payment, tno).await?;
        let conflict = payments::conflict_names(&self.db.write, payment.id, tno).await?;
        if rechecks.is_empty() && !conflict {
            return Ok(LateReapproval::None);
        }
        // A full cancel's second look names the payment's own order number: no STRA under it.
        let sent_under = rechecks
            .iter()
            .map(|a| &a.order_no)
            .filter(|order_no| **order_no != payment.order_no);
        for order_no in sent_under {
            match reapproval_under(connector, order_no).await {
                Ok(None) => {}
                // The trade itself, found under the STRA's order number (KCP re-approved in
                // place): nothing beside it holds the rest.
                Ok(Some(found)) if found.trade.tno == tno => {}
                Ok(Some(found)) if found.live => {
                    return Ok(LateReapproval::Conflict(reapproval_landed(
                        payment, tno, 0, &found,
                    )));
                }
                Ok(Some(found)) => {
                    tracing::error!(imp_uid = %payment.imp_uid, %tno, reapproval = %found.trade.tno, "a late re-approval of a point payment was cancelled at KCP since; the whole payment is cancelled there");
                    return Ok(LateReapproval::Cancelled(found.trade));
                }
                Err(e) => {
                    return Ok(LateReapproval::Unknown(format!(
                        "{tno} cancelled at KCP; re-approval inquiry under {order_no}: {e}"
                    )));
                }
            }
        }
        if conflict {
            tracing::error!(imp_uid = %payment.imp_uid, %tno, "KCP holds a point trade cancelled that a conflict names; left for the operator");
            return Ok(LateReapproval::Conflict(format!(
                "{tno} cancelled at KCP while a conflict names it: nothing recorded"
            )));
        }
        Ok(LateReapproval::None)
    }

    /// A full cancel of point payment `payment` whose trade KCP shows cancelled and whose late
    /// re-approval `reapproval` is cancelled too ([`LateReapproval::Cancelled`]): KCP holds
    /// nothing for the payment. Its whole balance is recorded cancelled, the payment following
    /// the re-approval (what KCP's notices of it name), as a lost re-approval found cancelled is
    /// ([`Self::record_reapproval_cancelled`]); announced as the merchant asked, since this is
    /// the cancel asked for. Or what another holder decided.
    pub(crate) async fn record_full_cancel_after_reapproval(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        reapproval: PointTrade,
    ) -> ServiceResult<CancelOutcome> {
        let id = attempt.id;
        let amount = payment.balance();
        let message = format!(
            "late re-approval {} cancelled at KCP: whole balance cancelled",
            reapproval.tno
        );
        match self
            .commit_point_cancel(payment, attempt, amount, Some(&reapproval), message, false)
            .await?
        {
            PointCommit::Written(p) => Ok(CancelOutcome::Applied(p)),
            PointCommit::TradeOfAnother(id) => Ok(CancelOutcome::Conflict(id)),
            PointCommit::NotHeld => self.cancel_decided(id).await,
        }
    }

    /// True for an open cancel attempt on a point payment that cancels less than the balance: the
    /// re-approval case, which the resolver hands to [`Self::resolve_partial_point_cancel`].
    pub(crate) fn is_partial_point_cancel(
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
    ) -> bool {
        payment.pay_method == POINT && attempt.amount > 0 && attempt.amount < payment.balance()
    }

    /// True for an older version's partial point cancel that still owes its re-approval
    /// ([`REAPPROVE_PENDING`]), waiting under [`legacy_reapproval_order_no`]: the one cancel whose
    /// settling reads an operator's word that KCP holds nothing under its order number
    /// ([`Self::find_or_send_reapproval`], reached by the resolver as this tells).
    pub(crate) fn owes_legacy_reapproval(
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
    ) -> bool {
        attempt.kind == "cancel"
            && Self::is_partial_point_cancel(payment, attempt)
            && attempt.order_no == legacy_reapproval_order_no(payment, attempt)
    }

    /// Settles a partial point cancel whose outcome is open (the resolver's entry point, also used
    /// at once when the `STRA` answer is lost), by what KCP holds: the original tno, then the
    /// re-approval by its order number (step 3 of [`Self::cancel_points_partially`]), looked for
    /// also when the original is still approved once settled: KCP holding both is a conflict
    /// ([`Self::reapproval_beside_live_original`]), never "not applied". An older
    /// version's attempt that still owes its re-approval after a full cancel
    /// ([`REAPPROVE_PENDING`], under [`legacy_reapproval_order_no`]) is finished the older way.
    pub(crate) async fn resolve_partial_point_cancel(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<PointCancelOutcome> {
        if attempt.order_no == legacy_reapproval_order_no(&payment, &attempt) {
            return self
                .find_or_send_reapproval(connector, payment, attempt)
                .await;
        }
        let Some(tno) = attempt.tno.clone() else {
            return Err(ServiceError::Internal(format!(
                "cancel attempt {} without tno",
                attempt.id
            )));
        };
        let sent = attempt.order_no == reapproval_order_no(&payment, &attempt);
        let rest = rest_after_cancel(&payment, &attempt);
        match connector.inquire_points(&TradeRef::Tno(tno.clone())).await {
            // The trade approved for exactly the rest planned, less than it held: only the STRA
            // landing in place explains it (docs/kcp.md §8.3, seed 003's same-tno answer), as
            // the other readings leave it cancelled (re-approved under a new tno) or whole.
            Ok(TradeState::Approved { remaining, .. }) if sent && remaining == rest => {
                let id = attempt.id;
                let outcome = self.record_in_place(payment, attempt).await?;
                self.point_answered_or_decided(outcome, id).await
            }
            Ok(TradeState::Approved { remaining, .. }) if self.settled(&attempt) => {
                // A KCP that re-approves without cancelling the original (docs/kcp.md §8.3) holds
                // both: the STRA landed, and "not applied" would hide what the member paid twice.
                if sent {
                    if let Some(outcome) = self
                        .reapproval_beside_live_original(connector, &payment, &attempt, remaining)
                        .await?
                    {
                        return Ok(outcome);
                    }
                }
                // A STRA KCP applies later cancels this tno: looked at again.
                self.schedule_cancel_recheck(&attempt).await?;
                self.point_closed_or_decided(
                    attempt,
                    "failed",
                    "KCP에 반영되지 않음",
                    PointCancelOutcome::NotApplied("PG사에서 취소되지 않음".into()),
                )
                .await
            }
            Ok(TradeState::Approved { .. }) => {
                self.point_postponed_or_decided(attempt, "STRA not applied yet")
                    .await
            }
            Ok(TradeState::Cancelled { .. }) if sent => {
                self.find_reapproval(connector, payment, attempt).await
            }
            Ok(TradeState::Cancelled { .. }) => {
                // Nothing was sent for this attempt (the order number is written before STRA):
                // cancelled at KCP some other way, or by an older version's STSC whose outcome
                // was open when openport was upgraded. Only KCP's admin tells which.
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "point cancel attempt: KCP holds the trade cancelled though no re-approval was sent; left for the operator");
                let id = attempt.id;
                self.point_closed_or_decided(
                    attempt,
                    "conflict",
                    &format!("{tno} cancelled at KCP, no STRA sent"),
                    PointCancelOutcome::Conflict(id),
                )
                .await
            }
            // "No such trade" for the tno KCP approved contradicts KCP and says nothing of whether
            // the STRA landed: never answered "not cancelled" (`PointCancelOutcome::Disputed`),
            // as for a card (service/resolve.rs `resolve_cancel`).
            Ok(TradeState::NotFound) => {
                tracing::error!(imp_uid = %payment.imp_uid, "point cancel attempt: KCP has no such transaction");
                let id = attempt.id;
                self.point_closed_or_decided(
                    attempt,
                    "conflict",
                    "KCP에 거래가 없음",
                    PointCancelOutcome::Disputed(id),
                )
                .await
            }
            Err(e) => {
                self.point_postponed_or_decided(attempt, &e.to_string())
                    .await
            }
        }
    }

    /// The original tno is cancelled at KCP after a `STRA` whose answer was lost: its re-approval,
    /// found under its order number, is recorded. Not found once settled: KCP cancelled the
    /// payment and holds no re-approval (or one this inquiry misses), which neither outcome of
    /// the call explains: a conflict for the operator, never guessed.
    async fn find_reapproval(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<PointCancelOutcome> {
        let id = attempt.id;
        let order_no = attempt.order_no.clone();
        match connector
            .inquire_points(&TradeRef::OrderNo(order_no.clone()))
            .await
        {
            // The original was seen cancelled just before (`resolve_partial_point_cancel`).
            Ok(TradeState::Approved { approval, .. }) => {
                self.record_reapproval(
                    connector,
                    payment,
                    attempt,
                    approval.into(),
                    Original::SeenCancelled,
                )
                .await
            }
            // The STRA landed (the original is cancelled, its re-approval exists) and the
            // re-approval was cancelled since, in KCP's admin: KCP holds nothing for the payment
            // and every point is with the member. Recorded as such, as for an older version's
            // owed re-approval found cancelled (`find_or_send_reapproval`), so the payment never
            // shows a balance KCP does not hold and names the trade KCP's notices will name.
            Ok(TradeState::Cancelled { approval, .. }) => {
                tracing::error!(imp_uid = %payment.imp_uid, tno = %approval.tno, "the re-approval of a partial point cancel was cancelled at KCP; the whole payment is cancelled there");
                self.record_reapproval_cancelled(payment, attempt, approval.into(), "")
                    .await
            }
            Ok(TradeState::NotFound) if self.settled(&attempt) => {
                tracing::error!(imp_uid = %payment.imp_uid, %order_no, "point payment cancelled at KCP, its re-approval not found; left for the operator");
                self.point_closed_or_decided(
                    attempt,
                    "conflict",
                    &format!("original cancelled at KCP, no re-approval found under {order_no}"),
                    PointCancelOutcome::Conflict(id),
                )
                .await
            }
            Ok(TradeState::NotFound) => {
                self.point_postponed_or_decided(attempt, "re-approval not found yet")
                    .await
            }
            Err(e) => {
                self.point_postponed_or_decided(attempt, &format!("re-approval inquiry: {e}"))
                    .await
            }
        }
    }

    /// Step 2 of [`Self::cancel_points_partially`]: the re-approval's order number on the attempt,
    /// with the lease renewed, committed before `STRA` is sent. None when another holder settled
    /// the attempt meanwhile (then nothing is sent).
    async fn name_reapproval(
        &self,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let now = self.clock.unix();
        let reorder = reapproval_order_no(payment, &attempt);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.lease_until = Set(self.lease_from(now).max(attempt.lease_until));
        // The STRA is the attempt's call: its settle delay counts from here (`Gateway::settled`).
        a.sent_at = Set(now);
        a.result_message = Set(Some(format!("STRA sent as {reorder}")));
        a.order_no = Set(reorder);
        a.updated_at = Set(now);
        self.write_held(&attempt, a).await
    }

    /// A re-approval KCP confirmed to this holder, recorded once KCP shows the original trade
    /// cancelled ([`Self::original_after_reapproval`]); when its lease ran out during the call and
    /// another holder (the resolver, inquiring) holds the attempt open, taken over and recorded
    /// all the same, as a confirmed card cancel is (`record_confirmed_cancel`); closed by another
    /// holder as not applied: a conflict, never answered "not cancelled".
    ///
    /// KCP showing the original still approved (or not at all) closes the attempt as a conflict
    /// instead, answered with the operator's wording; an inquiry that fails leaves it open for the
    /// resolver, which asks again ([`Self::resolve_partial_point_cancel`]). Either way taken over
    /// as a recording would be ([`Self::leave_confirmed_reapproval`]).
    async fn record_confirmed_reapproval(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        trade: PointTrade,
    ) -> ServiceResult<PointCancelOutcome> {
        let attempt_id = attempt.id;
        let in_place = match self
            .original_after_reapproval(connector, &payment, &attempt, &trade)
            .await
        {
            OriginalState::Released => false,
            OriginalState::InPlace => true,
            OriginalState::Disagrees(why) => {
                return self.leave_confirmed_reapproval(attempt, true, &why).await
            }
            OriginalState::Unknown(why) => {
                return self.leave_confirmed_reapproval(attempt, false, &why).await
            }
        };
        if let Some(outcome) = self
            .try_record_reapproval(payment.clone(), attempt.clone(), &trade, in_place)
            .await?
        {
            return Ok(outcome);
        }
        if let Some(taken) = self.take_over_confirmed(&attempt).await? {
            if let Some(outcome) = self
                .try_record_reapproval(payment, taken, &trade, in_place)
                .await?
            {
                return Ok(outcome);
            }
        }
        Ok(PointCancelOutcome::from(
            self.confirmed_cancel_decided(attempt_id).await?,
        ))
    }

    /// A re-approval KCP confirmed to this holder that is not recorded: the attempt closed as a
    /// `conflict` (`conflict` true: KCP holds the original trade live or knows none) or left open
    /// for the resolver (the original's state unknown), `why` its note. Taken over, as a recording
    /// is, when this holder's lease ran out during the call; when another holder closed it
    /// meanwhile, what it decided, a closure as not applied made a conflict
    /// (`confirmed_cancel_decided`: KCP did re-approve). A conflict is answered as
    /// [`PointCancelOutcome::Disputed`] (the operator's wording), never "cancelled at KCP": here
    /// KCP may not have cancelled anything.
    async fn leave_confirmed_reapproval(
        &self,
        attempt: pg_attempt::Model,
        conflict: bool,
        why: &str,
    ) -> ServiceResult<PointCancelOutcome> {
        let id = attempt.id;
        let outcome = if conflict {
            PointCancelOutcome::Disputed(id)
        } else {
            PointCancelOutcome::Unknown
        };
        if self.leave_held(attempt.clone(), conflict, why).await? {
            return Ok(outcome);
        }
        if let Some(taken) = self.take_over_confirmed(&attempt).await? {
            if self.leave_held(taken, conflict, why).await? {
                return Ok(outcome);
            }
        }
        Ok(match self.confirmed_cancel_decided(id).await? {
            CancelOutcome::Conflict(id) => PointCancelOutcome::Disputed(id),
            other => PointCancelOutcome::from(other),
        })
    }

    /// Closes the held attempt as a `conflict`, or postpones it, with note `why`. False when this
    /// holder no longer holds it open.
    async fn leave_held(
        &self,
        attempt: pg_attempt::Model,
        conflict: bool,
        why: &str,
    ) -> ServiceResult<bool> {
        if conflict {
            self.close_attempt(attempt, "conflict", why).await
        } else {
            self.postpone(attempt, why).await
        }
    }

    /// What KCP holds of the original trade of partial point cancel `attempt` (its `tno`), asked
    /// (`PAPT`, docs/kcp.md §8.4) once re-approval `trade` of it is confirmed, before anything is
    /// recorded.
    ///
    /// openport reads `STRA` as "cancel the live trade and approve the rest under a new tno"
    /// (docs/kcp.md §8.3), an assumption KCP has not confirmed. Seed 003 leaves another reading
    /// open: KCP approves `mod_mny` as a new trade and leaves the original approved, the member
    /// having paid both. Recorded without this look, such a re-approval would show the cancel
    /// done and the rest under the new tno while KCP holds the whole original too, and nothing in
    /// openport would show the points taken twice. So the original cancelled → recorded;
    /// approved, or unknown to KCP (which contradicts its own approval) → a conflict for the
    /// operator, nothing recorded and nothing sent (a net-cancel of either trade would be a
    /// guess at which one KCP means to keep); the inquiry failed or unreadable → unknown, left
    /// open, never guessed.
    ///
    /// A fourth reading, the one seed 003's examples show (its payment and STRA answers carry the
    /// same tno): KCP re-approves in place, answering with the original's own tno and lowering
    /// what that trade holds to `mod_mny`. Then the inquiry of that tno shows it approved, which
    /// is no "both live": approved for exactly the rest planned (the balance less this cancel,
    /// the STRA's `mod_mny`), and re-approved for it, it is the partial cancel applied
    /// ([`OriginalState::InPlace`], recorded on the same tno). The same tno shown approved for
    /// anything else, or cancelled (the answer then names a trade KCP no longer holds), is a
    /// conflict.
    async fn original_after_reapproval(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
        trade: &PointTrade,
    ) -> OriginalState {
        let original = attempt.tno.clone().unwrap_or_default();
        let (new_tno, new_amount) = (&trade.tno, trade.amount);
        let same_tno = *new_tno == original;
        let rest = rest_after_cancel(payment, attempt);
        match connector
            .inquire_points(&TradeRef::Tno(original.clone()))
            .await
        {
            Ok(TradeState::Cancelled { .. }) if same_tno => {
                tracing::error!(imp_uid = %payment.imp_uid, %original, new_amount, "KCP re-approved part of a point payment under its own tno and holds that trade cancelled; left for the operator");
                OriginalState::Disagrees(format!(
                    "STRA re-approved {new_tno} (the same tno) for {new_amount} but KCP holds it cancelled: nothing recorded"
                ))
            }
            Ok(TradeState::Cancelled { .. }) => OriginalState::Released,
            Ok(TradeState::Approved { remaining, .. })
                if same_tno && remaining == rest && new_amount == rest =>
            {
                OriginalState::InPlace
            }
            Ok(TradeState::Approved { remaining, .. }) if same_tno => {
                OriginalState::Disagrees(in_place_mismatch(payment, &original, remaining, rest))
            }
            Ok(TradeState::Approved { remaining, .. }) => OriginalState::Disagrees(both_live(
                payment, &original, remaining, new_tno, new_amount, None,
            )),
            Ok(TradeState::NotFound) => {
                tracing::error!(imp_uid = %payment.imp_uid, %original, %new_tno, new_amount, "KCP re-approved part of a point payment and has no such original trade; left for the operator");
                OriginalState::Disagrees(format!(
                    "STRA re-approved {new_tno} for {new_amount} but KCP has no original {original}: nothing recorded"
                ))
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, %original, %new_tno, "point re-approval confirmed, its original trade's state unknown: {e}");
                OriginalState::Unknown(format!(
                    "STRA re-approved {new_tno} for {new_amount}; original {original} not seen cancelled yet: {e}"
                ))
            }
        }
    }

    /// The resolver's look at a partial point cancel whose STRA was sent and whose original trade
    /// KCP still holds approved (`remaining`) once settled: the re-approval looked for under its
    /// order number. None (none found) → not applied, as before. Found (approved, or cancelled
    /// since) → KCP re-approved without cancelling the original ([`Self::original_after_reapproval`]):
    /// a conflict naming both trades, answered with the operator's wording. The inquiry failed →
    /// left open.
    async fn reapproval_beside_live_original(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
        remaining: Won,
    ) -> ServiceResult<Option<PointCancelOutcome>> {
        let original = attempt.tno.clone().unwrap_or_default();
        let order_no = attempt.order_no.clone();
        let (reapproval, state) = match connector
            .inquire_points(&TradeRef::OrderNo(order_no.clone()))
            .await
        {
            Ok(TradeState::NotFound) => return Ok(None),
            Ok(TradeState::Approved { approval, .. }) => (approval, "approved"),
            Ok(TradeState::Cancelled { approval, .. }) => (approval, "cancelled"),
            Err(e) => {
                return self
                    .point_postponed_or_decided(
                        attempt.clone(),
                        &format!("original {original} live; re-approval inquiry: {e}"),
                    )
                    .await
                    .map(Some)
            }
        };
        // Found under the STRA's order number as the original itself: KCP re-approved in place
        // (the caller records that when the trade holds exactly the rest planned), here for
        // another balance.
        let why = if reapproval.tno == original {
            let rest = rest_after_cancel(payment, attempt);
            in_place_mismatch(payment, &original, remaining, rest)
        } else {
            both_live(
                payment,
                &original,
                remaining,
                &reapproval.tno,
                reapproval.amount,
                Some(state),
            )
        };
        self.point_closed_or_decided(
            attempt.clone(),
            "conflict",
            &why,
            PointCancelOutcome::Disputed(attempt.id),
        )
        .await
        .map(Some)
    }

    /// What another holder decided about a point cancel attempt, as this flow answers it.
    async fn point_cancel_decided(&self, attempt_id: i64) -> ServiceResult<PointCancelOutcome> {
        Ok(PointCancelOutcome::from(
            self.cancel_decided(attempt_id).await?,
        ))
    }

    /// `outcome`, this holder's answer; None (it no longer held attempt `attempt_id` open, so
    /// wrote nothing): what another holder decided.
    async fn point_answered_or_decided(
        &self,
        outcome: Option<PointCancelOutcome>,
        attempt_id: i64,
    ) -> ServiceResult<PointCancelOutcome> {
        match outcome {
            Some(outcome) => Ok(outcome),
            None => self.point_cancel_decided(attempt_id).await,
        }
    }

    /// `outcome` once the attempt is closed as `state`, or what another holder decided.
    async fn point_closed_or_decided(
        &self,
        attempt: pg_attempt::Model,
        state: &str,
        why: &str,
        outcome: PointCancelOutcome,
    ) -> ServiceResult<PointCancelOutcome> {
        let id = attempt.id;
        if self.close_attempt(attempt, state, why).await? {
            Ok(outcome)
        } else {
            self.point_cancel_decided(id).await
        }
    }

    /// Unknown once the attempt is left open for later, or what another holder decided.
    async fn point_postponed_or_decided(
        &self,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<PointCancelOutcome> {
        let id = attempt.id;
        if self.postpone(attempt, why).await? {
            Ok(PointCancelOutcome::Unknown)
        } else {
            self.point_cancel_decided(id).await
        }
    }

    /// An older version's partial point cancel ([`REAPPROVE_PENDING`]: its `STSC` went through,
    /// its `STRA` on the cancelled tno is owed): a re-approval already at KCP is recorded; none
    /// (once settled, and only where an inquiry by order number is trusted) → `STRA` again.
    ///
    /// A re-approval found cancelled at KCP (in its admin: openport never learnt its tno) leaves
    /// KCP holding nothing for the payment: the original went back whole with the `STSC`, the rest
    /// with the re-approval's cancel, and every point is with the member. That is recorded, as
    /// when KCP refuses the owed `STRA` and holds no re-approval ([`Self::send_owed_reapproval`]):
    /// the whole balance cancelled, announced by a `cancelled` webhook. Left a conflict, as it
    /// was, the payment showed a balance KCP did not hold (a merchant could ship or refund
    /// against it) until an operator put the record right by hand.
    async fn find_or_send_reapproval(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<PointCancelOutcome> {
        let trade = TradeRef::OrderNo(attempt.order_no.clone());
        match connector.inquire_points(&trade).await {
            Ok(TradeState::Approved { approval, .. }) => {
                self.record_reapproval(
                    connector,
                    payment,
                    attempt,
                    approval.into(),
                    Original::Unchecked,
                )
                .await
            }
            Ok(TradeState::Cancelled { approval, .. }) => {
                tracing::error!(imp_uid = %payment.imp_uid, tno = %approval.tno, "the re-approval an older version owed was cancelled at KCP; the whole payment is cancelled there");
                let prefix = format!("{REAPPROVE_PENDING}: ");
                self.record_reapproval_cancelled(payment, attempt, approval.into(), &prefix)
                    .await
            }
            Ok(TradeState::NotFound) if self.absence_is_final(&attempt, &trade) => {
                self.send_owed_reapproval(connector, payment, attempt).await
            }
            Ok(TradeState::NotFound) => {
                self.point_postponed_or_decided(
                    attempt,
                    &format!("{REAPPROVE_PENDING}: not found yet"),
                )
                .await
            }
            Err(e) => {
                self.point_postponed_or_decided(attempt, &format!("{REAPPROVE_PENDING}: {e}"))
                    .await
            }
        }
    }

    /// An older version's owed `STRA` of the balance left after its cancel, on the (cancelled) tno
    /// of the attempt; only while this holder still holds the attempt (its lease renewed first). A
    /// KCP that takes `STRA` on live trades only (docs/kcp.md §8.3) refuses it: with no
    /// re-approval under its order number, every point is back with the member, and the whole
    /// balance is recorded cancelled.
    ///
    /// A re-approval KCP approves for another amount than the rest (`PgError::Mismatch`, naming
    /// its new tno) is closed as a conflict for the operator and left at KCP, as the same answer
    /// is in [`Self::cancel_points_partially`] and such a re-approval found by inquiry is
    /// ([`Self::try_record_reapproval`], from [`Self::find_reapproval`] or
    /// [`Self::find_or_send_reapproval`]). Not net-cancelled: KCP would then hold nothing, a full
    /// refund nobody asked for that openport has no call to undo, while the operator can still
    /// cancel it in KCP's admin or put the record right. Nor recorded as the whole balance
    /// cancelled ([`Self::record_reapproval_cancelled`]): that is for a re-approval KCP shows
    /// cancelled, where what KCP holds (nothing) is certain; here it holds an amount the record
    /// cannot explain. The conflict is listed (`openport attempt list --conflicts`, its note
    /// naming the re-approval's tno and both amounts) and holds the payment's cancels; a KCP
    /// notice of the original tno's cancel is left to the operator too
    /// ([`Self::reapproval_unaccounted`]: the conflict names that tno).
    ///
    /// No merchant reads this outcome: only the resolver finishes an older version's attempt
    /// (this version's requests send `STRA` under `P`, never `R`), a cancel of the payment is
    /// refused as in flight while the attempt is open, and once it is closed every cancel is
    /// refused with the operator's wording naming it (service/cancel.rs `conflict_refusal`). It
    /// is [`PointCancelOutcome::Conflict`] all the same, what KCP did ("cancelled at KCP, the
    /// record disagrees"), as for this version's `STRA`: `NotApplied`, as it was, would have told
    /// any holder that answered it "결제취소에 실패" of a cancel KCP applied (the older `STSC`).
    async fn send_owed_reapproval(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<PointCancelOutcome> {
        let attempt_id = attempt.id;
        // No "not found" is believed before a settle delay after this very call.
        let Some(attempt) = self.renew_before_settling_call(attempt).await? else {
            return self.point_cancel_decided(attempt_id).await;
        };
        let tno = attempt.tno.clone().unwrap_or_default();
        let remaining = rest_after_cancel(&payment, &attempt);
        match connector
            .reapprove_points(&tno, remaining, &attempt.order_no, &good_name(&payment))
            .await
        {
            Ok(approval) => {
                self.record_reapproval(
                    connector,
                    payment,
                    attempt,
                    approval.into(),
                    Original::Unchecked,
                )
                .await
            }
            Err(PgError::Declined { code, message, .. }) => {
                // A refusal may be KCP saying the re-approval already exists (a repeat after a
                // lost answer): only "no re-approval under our order number" makes it final.
                match connector
                    .inquire_points(&TradeRef::OrderNo(attempt.order_no.clone()))
                    .await
                {
                    Ok(TradeState::Approved { approval, .. }) => {
                        self.record_reapproval(
                            connector,
                            payment,
                            attempt,
                            approval.into(),
                            Original::Unchecked,
                        )
                        .await
                    }
                    Ok(TradeState::NotFound) => {
                        let message = quoted_refusal(&code, &message);
                        tracing::error!(imp_uid = %payment.imp_uid, %tno, "point re-approval refused ({message}); the whole payment is cancelled at KCP");
                        let whole = format!("STRA refused {message}: whole balance cancelled");
                        let committed = self
                            .record_full_point_cancel(payment, attempt, None, whole)
                            .await?;
                        let outcome =
                            committed.answer(|p| PointCancelOutcome::FullyCancelled(p, message));
                        self.point_answered_or_decided(outcome, attempt_id).await
                    }
                    Ok(TradeState::Cancelled { .. }) | Err(_) => {
                        self.point_postponed_or_decided(
                            attempt,
                            &format!("{REAPPROVE_PENDING}: STRA refused [{code}], state unclear"),
                        )
                        .await
                    }
                }
            }
            Err(PgError::Mismatch {
                tno: new_tno,
                detail,
                ..
            }) => {
                let prefix = format!("{REAPPROVE_PENDING}: ");
                self.reapproval_mismatch(&payment, attempt, &prefix, &new_tno, &detail)
                    .await
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "point re-approval (STRA) outcome unknown: {e}");
                // Asked at once: a lost answer is usually found under its order number.
                match connector
                    .inquire_points(&TradeRef::OrderNo(attempt.order_no.clone()))
                    .await
                {
                    Ok(TradeState::Approved { approval, .. }) => {
                        self.record_reapproval(
                            connector,
                            payment,
                            attempt,
                            approval.into(),
                            Original::Unchecked,
                        )
                        .await
                    }
                    _ => {
                        self.point_postponed_or_decided(
                            attempt,
                            &format!("{REAPPROVE_PENDING}: {e}"),
                        )
                        .await
                    }
                }
            }
        }
    }

    /// A `STRA` KCP answered with a re-approval of other points (`PgError::Mismatch`, naming its
    /// new tno `new_tno`): the attempt closed as a conflict for the operator, with `note_prefix`
    /// before its note, and the re-approval left at KCP (why, [`Self::send_owed_reapproval`]);
    /// or what another holder decided.
    async fn reapproval_mismatch(
        &self,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
        note_prefix: &str,
        new_tno: &str,
        detail: &str,
    ) -> ServiceResult<PointCancelOutcome> {
        tracing::error!(imp_uid = %payment.imp_uid, %new_tno, "KCP re-approved other points ({detail}); left for the operator");
        let id = attempt.id;
        self.point_closed_or_decided(
            attempt,
            "conflict",
            &format!("{note_prefix}re-approval {new_tno} mismatch: {detail}"),
            PointCancelOutcome::Conflict(id),
        )
        .await
    }

    /// The re-approval is confirmed (KCP's answer, or found under its order number): once KCP
    /// shows the original trade cancelled ([`Self::original_after_reapproval`], unless `original`
    /// says it was just seen so), the cancellation (of the old tno), the payment's cumulative
    /// `cancel_amount` and new `pg_tid`/`apply_num`, and the attempt, in one transaction; or what
    /// another holder decided. The original still approved, or unknown to KCP: a conflict
    /// answered with the operator's wording; its state unknown: left open.
    async fn record_reapproval(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        trade: PointTrade,
        original: Original,
    ) -> ServiceResult<PointCancelOutcome> {
        let attempt_id = attempt.id;
        // A re-approval naming the original's own tno is re-checked whatever was seen before: the
        // original seen cancelled contradicts it, and only the look tells an in-place one.
        let same_tno = attempt.tno.as_deref() == Some(trade.tno.as_str());
        let mut in_place = false;
        if original == Original::Unchecked || same_tno {
            match self
                .original_after_reapproval(connector, &payment, &attempt, &trade)
                .await
            {
                OriginalState::Released => {}
                OriginalState::InPlace => in_place = true,
                OriginalState::Disagrees(why) => {
                    return self
                        .point_closed_or_decided(
                            attempt,
                            "conflict",
                            &why,
                            PointCancelOutcome::Disputed(attempt_id),
                        )
                        .await
                }
                OriginalState::Unknown(why) => {
                    return self.point_postponed_or_decided(attempt, &why).await
                }
            }
        }
        let outcome = self
            .try_record_reapproval(payment, attempt, &trade, in_place)
            .await?;
        self.point_answered_or_decided(outcome, attempt_id).await
    }

    /// [`Self::record_reapproval`], None (nothing written) when this holder no longer holds the
    /// attempt open. A re-approval of another amount than the rest is a conflict for the operator.
    /// `in_place`: KCP re-approved on the original's own tno ([`OriginalState::InPlace`]), recorded
    /// by [`Self::record_in_place`].
    async fn try_record_reapproval(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        trade: &PointTrade,
        in_place: bool,
    ) -> ServiceResult<Option<PointCancelOutcome>> {
        let (attempt_id, amount) = (attempt.id, attempt.amount);
        let expected = rest_after_cancel(&payment, &attempt);
        if trade.amount != expected {
            tracing::error!(imp_uid = %payment.imp_uid, tno = %trade.tno, amount = trade.amount, expected, "point re-approval for another amount; left for the operator");
            let why = format!(
                "re-approval {} of {} (expected {expected})",
                trade.tno, trade.amount
            );
            let closed = self.close_attempt(attempt, "conflict", &why).await?;
            return Ok(closed.then_some(PointCancelOutcome::Conflict(attempt_id)));
        }
        if in_place {
            return self.record_in_place(payment, attempt).await;
        }
        let message = format!("STRA, re-approved as {}", trade.tno);
        let committed = self
            .commit_point_cancel(payment, attempt, amount, Some(trade), message, false)
            .await?;
        Ok(committed.answer(PointCancelOutcome::Applied))
    }

    /// A partial cancel KCP applied by re-approving the rest in place ([`OriginalState::InPlace`]:
    /// the trade, under its own tno, holds exactly the rest planned): the cancellation of the
    /// attempt's amount, the cumulative `cancel_amount` and the attempt, in one transaction, as a
    /// card's partial cancel is. `pg_tid` and `apply_num` stay as they are (the trade is the
    /// same) and no `reapproval` attempt is written: no other tno exists for a notice to name.
    /// None when this holder no longer holds the attempt open.
    async fn record_in_place(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<Option<PointCancelOutcome>> {
        let amount = attempt.amount;
        let message = format!(
            "STRA, re-approved in place on {}",
            attempt.tno.as_deref().unwrap_or_default()
        );
        let committed = self
            .commit_point_cancel(payment, attempt, amount, None, message, false)
            .await?;
        Ok(committed.answer(PointCancelOutcome::Applied))
    }

    /// A partial cancel whose `reapproval` KCP shows cancelled (in its admin): KCP holds nothing
    /// for the payment, the original cancelled by the `STRA` (an older version's `STSC`), the rest
    /// by the re-approval's cancel. Recorded as the whole balance cancelled, with `note_prefix`
    /// before the attempt's note; the payment follows the re-approval, as when one is recorded:
    /// KCP's trade for it now, cancelled (and what a notice of that cancel will name). Or what
    /// another holder decided.
    async fn record_reapproval_cancelled(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        reapproval: PointTrade,
        note_prefix: &str,
    ) -> ServiceResult<PointCancelOutcome> {
        let id = attempt.id;
        let message = format!(
            "{note_prefix}re-approval {} cancelled at KCP: whole balance cancelled",
            reapproval.tno
        );
        let committed = self
            .record_full_point_cancel(payment, attempt, Some(&reapproval), message.clone())
            .await?;
        let outcome = committed.answer(|p| PointCancelOutcome::FullyCancelled(p, message));
        self.point_answered_or_decided(outcome, id).await
    }

    /// KCP holds nothing for a partial point cancel (an older version's re-approval refused, or
    /// `reapproval` cancelled at KCP): the whole balance is cancelled, `message` on the attempt
    /// ([`Self::commit_point_cancel`]).
    async fn record_full_point_cancel(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        reapproval: Option<&PointTrade>,
        message: String,
    ) -> ServiceResult<PointCommit> {
        let amount = payment.balance();
        // More was cancelled than asked: the merchant is told even without `enable_webhook`.
        self.commit_point_cancel(payment, attempt, amount, reapproval, message, true)
            .await
    }

    /// `record_cancellation` for points: also moves `pg_tid` to the re-approval's tno. Like it,
    /// only while this holder still holds the attempt open and the cancelled amount is the one
    /// read; otherwise nothing is written ([`PointCommit::NotHeld`]).
    ///
    /// A re-approval naming a trade another payment holds ([`Gateway::foreign_holder`], or the
    /// database refusing it when that payment's record commits after the look:
    /// `store::is_trade_clash`) is not this payment's to move to: KCP's answer (or the inquiry
    /// by the re-approval's order number, which checks the order only) is not to be believed,
    /// and recorded, this payment's next cancel would go to another buyer's trade. Nothing is
    /// recorded, and the attempt is closed as a conflict for the operator, as a re-approval of
    /// another amount is ([`PointCommit::TradeOfAnother`]). Left to the database's refusal, it
    /// was a database error on every pass of the resolver, with the payment's only cancel slot
    /// held by the attempt and nothing listed.
    async fn commit_point_cancel(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        amount: Won,
        reapproval: Option<&PointTrade>,
        message: String,
        always_notify: bool,
    ) -> ServiceResult<PointCommit> {
        if let Some(r) = reapproval {
            if let Some(holder) = self.foreign_holder(payment.id, &r.tno).await? {
                return self
                    .reapproval_of_another(&payment, attempt, r, Some(&holder))
                    .await;
            }
        }
        let written = self
            .write_point_cancel(
                &payment,
                &attempt,
                amount,
                reapproval,
                message,
                always_notify,
            )
            .await;
        match (written, reapproval) {
            (Ok(Some(p)), _) => Ok(PointCommit::Written(Box::new(p))),
            (Ok(None), _) => Ok(PointCommit::NotHeld),
            (Err(e), Some(r)) if crate::store::is_trade_clash(&e) => {
                let holder = self.foreign_holder(payment.id, &r.tno).await?;
                self.reapproval_of_another(&payment, attempt, r, holder.as_ref())
                    .await
            }
            (Err(e), _) => Err(e.into()),
        }
    }

    /// [`Self::commit_point_cancel`] of a re-approval `r` naming the trade of another payment
    /// (`holder`, when found): the attempt closed as a conflict.
    async fn reapproval_of_another(
        &self,
        payment: &payment::Model,
        attempt: pg_attempt::Model,
        r: &PointTrade,
        holder: Option<&payment::Model>,
    ) -> ServiceResult<PointCommit> {
        let whose = holder.map_or_else(
            || "another payment's".to_string(),
            |h| format!("payment {}'s", h.imp_uid),
        );
        tracing::error!(imp_uid = %payment.imp_uid, tno = %r.tno, "a point re-approval names a trade another payment holds: nothing recorded; left for the operator");
        let id = attempt.id;
        let why = format!(
            "re-approval {} names {whose} trade: nothing recorded, reconcile by hand",
            r.tno
        );
        Ok(if self.close_attempt(attempt, "conflict", &why).await? {
            PointCommit::TradeOfAnother(id)
        } else {
            PointCommit::NotHeld
        })
    }

    /// The transaction of [`Self::commit_point_cancel`]; None when nothing was written.
    async fn write_point_cancel(
        &self,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
        amount: Won,
        reapproval: Option<&PointTrade>,
        message: String,
        always_notify: bool,
    ) -> Result<Option<payment::Model>, sea_orm::DbErr> {
        let now = self.clock.unix();
        let txn = self.db.write.begin().await?;
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("succeeded".into());
        a.result_code = Set(Some("0000".into()));
        a.result_message = Set(Some(message));
        a.updated_at = Set(now);
        if !payments::write_held_attempt(&txn, attempt, a).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let cancellation = payments::insert_cancellation(
            &txn,
            cancellation::ActiveModel {
                payment_id: Set(payment.id),
                cancellation_id: Set(random_hex(12)),
                pg_tid: Set(attempt
                    .tno
                    .clone()
                    .or(payment.pg_tid.clone())
                    .unwrap_or_default()),
                amount: Set(amount),
                reason: Set(attempt.reason.clone()),
                cancelled_at: Set(now),
                ..Default::default()
            },
        )
        .await?;
        let read_cancel_amount = payment.cancel_amount;
        let mut p: payment::ActiveModel = payment.clone().into();
        p.cancel_amount = Set(read_cancel_amount + amount);
        p.status = Set(PaymentStatus::Cancelled.as_db().into());
        p.cancelled_at = Set(Some(now));
        p.cancel_reason = Set(attempt.reason.clone());
        if let Some(r) = reapproval {
            p.pg_tid = Set(Some(r.tno.clone()));
            p.apply_num = Set(Some(r.app_no.clone()));
        }
        p.updated_at = Set(now);
        let unchanged = Condition::all().add(payment::Column::CancelAmount.eq(read_cancel_amount));
        let Some(p) = payments::update_payment_if(&txn, p, unchanged).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        if let Some(r) = reapproval {
            payments::insert_attempt(
                &txn,
                pg_attempt::ActiveModel {
                    payment_id: Set(p.id),
                    state: Set("succeeded".into()),
                    tno: Set(Some(r.tno.clone())),
                    result_code: Set(Some("0000".into())),
                    result_message: Set(Some(format!(
                        "re-approval of the rest by cancel attempt {}",
                        attempt.id
                    ))),
                    ..super::attempts::new_attempt(REAPPROVAL, r.order_no.clone(), r.amount, now)
                },
            )
            .await?;
        }
        // API cancels notify only when asked (`enable_webhook`, spec §5).
        if attempt.notify || always_notify {
            self.enqueue_webhook(&txn, &p, "cancelled", Some(&cancellation.cancellation_id))
                .await?;
        }
        txn.commit().await?;
        Ok(Some(p))
    }
}

/// What came of [`Gateway::commit_point_cancel`].
enum PointCommit {
    /// Recorded: the payment as written.
    Written(Box<payment::Model>),
    /// Nothing written: this holder no longer holds the attempt open.
    NotHeld,
    /// Nothing recorded: the re-approval names a trade another payment holds, and attempt N is
    /// closed as a `conflict` for the operator.
    TradeOfAnother(i64),
}

impl PointCommit {
    /// A partial point cancel's answer to this commit: `written` makes it of the payment as
    /// written (the cancel applied, or the whole balance cancelled); a re-approval naming another
    /// payment's trade is that conflict. None when nothing was written because this holder no
    /// longer held the attempt: what another holder decided is the answer then
    /// ([`Gateway::point_answered_or_decided`]).
    fn answer(
        self,
        written: impl FnOnce(Box<payment::Model>) -> PointCancelOutcome,
    ) -> Option<PointCancelOutcome> {
        match self {
            Self::Written(p) => Some(written(p)),
            Self::TradeOfAnother(id) => Some(PointCancelOutcome::Conflict(id)),
            Self::NotHeld => None,
        }
    }
}

/// KCP holds a partial point cancel's original trade `original` approved for `remaining` beside
/// its re-approval `new_tno` of `new_amount` (`state`: the re-approval's, when found by inquiry):
/// the member paid both. Logged for the operator; the conflict's note.
fn both_live(
    payment: &payment::Model,
    original: &str,
    remaining: Won,
    new_tno: &str,
    new_amount: Won,
    state: Option<&str>,
) -> String {
    tracing::error!(imp_uid = %payment.imp_uid, %original, remaining, %new_tno, new_amount, "KCP re-approved part of a point payment and still holds the original trade approved: the member paid both; left for the operator");
    let state = state.map(|s| format!(" ({s})")).unwrap_or_default();
    format!(
        "STRA re-approved {new_tno} for {new_amount}{state} but KCP holds the original {original} approved for {remaining}: both live, nothing recorded"
    )
}

/// KCP answered a partial point cancel's `STRA` with the original's own tno (re-approved in
/// place, seed 003's example) but holds that trade approved for `remaining`, not the `rest`
/// planned: no partial cancel the record can follow. Logged for the operator; the conflict's note.
fn in_place_mismatch(
    payment: &payment::Model,
    original: &str,
    remaining: Won,
    rest: Won,
) -> String {
    tracing::error!(imp_uid = %payment.imp_uid, %original, remaining, rest, "KCP re-approved part of a point payment under its own tno but holds another balance than the rest planned; left for the operator");
    format!(
        "STRA re-approved {original} in place but KCP holds it approved for {remaining}, not the {rest} planned: nothing recorded"
    )
}

/// What KCP holds of a re-approval openport sent on a point trade and has not accounted for, the
/// trade shown cancelled ([`Gateway::late_reapproval`]).
pub(crate) enum LateReapproval {
    /// Nothing unaccounted for, or nothing under the order number it was sent under: the trade
    /// cancelled is what it seems.
    None,
    /// Found approved (KCP holds the rest under it), or a conflict names the trade and nothing is
    /// there to look up: the conflict's note.
    Conflict(String),
    /// Found cancelled since: KCP holds nothing for the payment.
    Cancelled(PointTrade),
    /// The inquiry failed: why, for the attempt left open.
    Unknown(String),
}

/// A re-approval found under the order number it was sent under ([`reapproval_under`]).
pub(crate) struct FoundReapproval {
    pub trade: PointTrade,
    /// Approved at KCP; false: cancelled since.
    pub live: bool,
}

/// The re-approval KCP holds under `order_no` (`PAPT` by order number, docs/kcp.md §8.4), if any.
pub(crate) async fn reapproval_under(
    connector: &dyn Pg,
    order_no: &str,
) -> Result<Option<FoundReapproval>, PgError> {
    Ok(
        match connector
            .inquire_points(&TradeRef::OrderNo(order_no.to_string()))
            .await?
        {
            TradeState::NotFound => None,
            TradeState::Approved { approval, .. } => Some(FoundReapproval {
                trade: approval.into(),
                live: true,
            }),
            TradeState::Cancelled { approval, .. } => Some(FoundReapproval {
                trade: approval.into(),
                live: false,
            }),
        },
    )
}

/// A re-approval `found` that KCP applied after its cancel was closed as not applied, beside
/// original trade `original` with `remaining` left at KCP (0: cancelled, as openport reads
/// `STRA`; more: approved, the third reading, [`both_live`]). Logged for the operator; the
/// conflict's note, naming both trades.
pub(crate) fn reapproval_landed(
    payment: &payment::Model,
    original: &str,
    remaining: Won,
    found: &FoundReapproval,
) -> String {
    let (new_tno, new_amount) = (&found.trade.tno, found.trade.amount);
    let state = if found.live { "approved" } else { "cancelled" };
    if remaining > 0 {
        return both_live(
            payment,
            original,
            remaining,
            new_tno,
            new_amount,
            Some(state),
        );
    }
    tracing::error!(imp_uid = %payment.imp_uid, %original, %new_tno, new_amount, state, "KCP applied a point re-approval openport had closed as not applied: the original trade is cancelled, the rest re-approved; left for the operator");
    format!(
        "late STRA re-approved {new_tno} for {new_amount} ({state}) under {}; the original {original} is cancelled at KCP: nothing recorded",
        found.trade.order_no
    )
}

/// Whether KCP was seen holding a re-approval's original trade cancelled just before the
/// re-approval is recorded ([`Gateway::record_reapproval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Original {
    /// The inquiry that led to the re-approval showed it cancelled.
    SeenCancelled,
    /// Not asked yet: asked before recording.
    Unchecked,
}

/// What KCP holds of a re-approval's original trade ([`Gateway::original_after_reapproval`]).
enum OriginalState {
    /// Cancelled, as openport reads `STRA` (docs/kcp.md §8.3): the re-approval is recorded.
    Released,
    /// The re-approval names the original's own tno, which KCP holds approved for exactly the rest
    /// planned: re-approved in place, the partial cancel is recorded on that tno.
    InPlace,
    /// Still approved, or unknown to KCP: the conflict's note, naming both trades.
    Disagrees(String),
    /// Not known (the inquiry failed or was unreadable): why, for the attempt left open.
    Unknown(String),
}

/// What became of a partial point cancel.
pub(crate) enum PointCancelOutcome {
    Applied(Box<payment::Model>),
    /// An older version's owed re-approval was refused, or found cancelled at KCP: the payment is
    /// cancelled in full (the message says why).
    FullyCancelled(Box<payment::Model>, String),
    NotApplied(String),
    Unknown,
    /// KCP changed the trade in a way the record does not follow (a re-approval it confirmed
    /// after another holder had closed the attempt as not applied, one of another amount, the
    /// original cancelled without a re-approval found): attempt N is a `conflict` for an operator.
    Conflict(i64),
    /// [`CancelOutcome::Disputed`]: attempt N is a conflict, and whether KCP applied this cancel
    /// is not known to whoever answers.
    Disputed(i64),
    /// [`CancelOutcome::Reconciled`]: attempt N was such a conflict, reconciled since.
    Reconciled(i64),
}

impl From<CancelOutcome> for PointCancelOutcome {
    fn from(outcome: CancelOutcome) -> Self {
        match outcome {
            CancelOutcome::Applied(p) => Self::Applied(p),
            CancelOutcome::NotApplied(why) => Self::NotApplied(why),
            CancelOutcome::Unknown => Self::Unknown,
            CancelOutcome::Conflict(id) => Self::Conflict(id),
            CancelOutcome::Disputed(id) => Self::Disputed(id),
            CancelOutcome::Reconciled(id) => Self::Reconciled(id),
        }
    }
}

impl PointCancelOutcome {
    /// The resolver's view (`resolve_cancel`).
    pub(crate) fn into_cancel_outcome(self) -> CancelOutcome {
        match self {
            Self::Applied(p) => CancelOutcome::Applied(p),
            Self::FullyCancelled(p, _) => CancelOutcome::Applied(p),
            Self::NotApplied(why) => CancelOutcome::NotApplied(why),
            Self::Unknown => CancelOutcome::Unknown,
            Self::Conflict(id) => CancelOutcome::Conflict(id),
            Self::Disputed(id) => CancelOutcome::Disputed(id),
            Self::Reconciled(id) => CancelOutcome::Reconciled(id),
        }
    }
}

/// What partial point cancel `attempt` leaves of `payment`: its balance (amount less what is
/// already cancelled, `payment` as read before this cancel is recorded) less the attempt's amount.
/// One number plays three parts, which must agree to the won: the `STRA`'s `mod_mny` (what KCP
/// is asked to re-approve), the amount a re-approval's answer is checked against before it is
/// recorded, and what the original trade must hold to be read as re-approved in place. Spelt
/// once so that what is sent and what it is checked against cannot drift apart.
fn rest_after_cancel(payment: &payment::Model, attempt: &pg_attempt::Model) -> Won {
    payment.balance() - attempt.amount
}

/// The re-approval's KCP order number (`mod_ordr_idxx`): the payment's plus `P` and the attempt
/// id, letters and digits (≤ 40), unique per cancel and stable across retries, so an inquiry by
/// order number always names the same re-approval. Other than [`legacy_reapproval_order_no`]'s
/// `R`, which tells an older version's attempt (full cancel done, re-approval owed) from one of
/// this version (re-approval sent on the live tno).
fn reapproval_order_no(payment: &payment::Model, attempt: &pg_attempt::Model) -> String {
    format!("{}P{}", payment.order_no, attempt.id)
}

/// The re-approval's order number an older openport wrote on a partial point cancel's attempt
/// once its `STSC` went through ([`REAPPROVE_PENDING`]): the payment's plus `R` and the attempt id.
fn legacy_reapproval_order_no(payment: &payment::Model, attempt: &pg_attempt::Model) -> String {
    format!("{}R{}", payment.order_no, attempt.id)
}

/// KCP's `mod_ordr_goods` of a re-approval: the payment's name (cut to KCP's 50 bytes by the
/// connector), `openport` when it has none.
fn good_name(payment: &payment::Model) -> String {
    payment
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "openport".into())
}
