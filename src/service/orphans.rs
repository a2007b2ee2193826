//! An approval KCP handed to a holder whose attempt another holder has closed meanwhile.
//!
//! A request can lose its attempt in the middle of its KCP call (its lease ran out,
//! service/attempts.rs): the new holder's inquiry may run before KCP applies the call, find
//! nothing and fail the payment, freeing its merchant_uid. KCP's approval then reaches the first
//! holder, whose record writes nothing. Answered from the database alone ("failed"), KCP would
//! keep an approval nobody cancels while the merchant may charge the merchant_uid again.
//!
//! So a holder with an approval (`tno`) in hand that finds its attempt gone asks what the database
//! holds ([`Standing`]): an unreconciled `conflict` names this `tno` → KCP refused to cancel it and
//! it waits for an operator; the payment holds this very approval → it stands; the payment failed
//! with this `tno` → another holder net-cancelled it already; otherwise the approval must not
//! stand and is net-cancelled on an attempt of its own, kind [`KIND`], recorded before KCP is
//! called like every call with an effect. A lost answer leaves that attempt open for the
//! resolver, which settles it the same way ([`Gateway::settle_orphan`]), no sooner than a settle
//! delay after the STSC whose answer it lost; while the payment is still pending (its approval
//! attempt is being decided by another holder) it waits for that decision.
use futures::future::FutureExt;
use sea_orm::{ColumnTrait, Condition, DbErr, Set};

use super::pay::{ApprovalOutcome, Settling, NET_CANCEL_REASON};
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::pg::{quoted_refusal, PgConnector, PgError};
use crate::store::entity::{payment, pg_attempt};
use crate::store::payments;

/// `pg_attempts.kind` of a net-cancel of an approval whose own attempt another holder closed.
pub const KIND: &str = "net_cancel";

/// The payment's fail reason once an approval it did not hold was net-cancelled for it.
const CANCELLED_FOR_IT: &str = "결제 결과를 확정하지 못해 자동취소(망취소)되었습니다.";
/// The payment's fail reason once KCP refused to net-cancel an approval it did not hold.
const NOT_CANCELLED_FOR_IT: &str =
    "PG사 승인이 남아 있으나 자동취소가 거절되어 운영자 확인이 필요합니다";
/// Why an attempt whose answer named another payment's trade was let go (its postponement's note).
const ANOTHER_PAYMENTS: &str = "KCP's answer named another payment's trade";

/// What the database holds of payment `p` and KCP's approval `tno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// An unreconciled `conflict` of the payment names it: KCP refused to cancel it (or it is a
    /// paid-into account nobody could record), and an operator settles it. Whatever the payment's
    /// status, the failed one of a refused net-cancel included, it is neither cancelled nor to be
    /// cancelled again.
    Conflict,
    /// Still pending: its approval attempt is being decided by another holder.
    Pending,
    /// Paid (or issued, or cancelled since) with this very approval: it stands.
    Holds,
    /// Failed with this `tno`: it was net-cancelled already.
    Cancelled,
    /// Failed without it, or settled under another trade: this approval must not stand.
    Stray,
}

/// `listed`: an unreconciled conflict of the payment names `tno` (`payments::conflict_names`).
fn standing_of(status: PaymentStatus, pg_tid: Option<&str>, tno: &str, listed: bool) -> Standing {
    let named = pg_tid == Some(tno);
    match status {
        _ if listed => Standing::Conflict,
        PaymentStatus::Pending => Standing::Pending,
        PaymentStatus::Failed if named => Standing::Cancelled,
        PaymentStatus::Paid | PaymentStatus::Cancelled | PaymentStatus::Ready if named => {
            Standing::Holds
        }
        _ => Standing::Stray,
    }
}

/// How [`Gateway::close_orphan`] closes a [`KIND`] attempt: its state, KCP's result code and
/// message, and the fail reason of a failed payment that named no trade yet.
struct Closing {
    state: &'static str,
    code: String,
    message: String,
    fail_reason: String,
}

/// What a payment's own calls did to a trade KCP named in an answer that is not the payment's
/// (another payment's, another order's), for the operator's note ([`Gateway::note_misdirected`]):
/// a note saying "not cancelled" of a trade the payment's net-cancel reached would send the
/// operator looking for an approval KCP no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtKcp {
    /// Nothing was sent to cancel it, or KCP refused to.
    Untouched,
    /// A net-cancel of it was sent (or about to be) under the attempt, its answer not known here:
    /// the attempt names it (`Gateway::renew_naming`).
    MaybeCancelled,
    /// Net-cancelled at KCP by the attempt.
    Cancelled,
}

impl AtKcp {
    /// [`Self::MaybeCancelled`] when `attempt` names `tno`, else [`Self::Untouched`].
    fn as_named(attempt: &pg_attempt::Model, tno: &str) -> Self {
        if attempt.tno.as_deref() == Some(tno) {
            Self::MaybeCancelled
        } else {
            Self::Untouched
        }
    }

    /// The note's words, for attempt `attempt_id` of the payment.
    fn note(self, attempt_id: i64) -> String {
        match self {
            Self::Untouched => "not cancelled".into(),
            Self::MaybeCancelled => format!(
                "a net-cancel of it was sent under attempt {attempt_id} (it may have reached KCP)"
            ),
            Self::Cancelled => format!("net-cancelled at KCP by attempt {attempt_id}"),
        }
    }
}

impl Gateway {
    /// The [`Standing`] of payment `p` and KCP's approval `tno`.
    async fn standing(&self, p: &payment::Model, tno: &str) -> ServiceResult<Standing> {
        let listed = payments::conflict_names(&self.db.write, p.id, tno).await?;
        Ok(standing_of(
            PaymentStatus::from_db(&p.status),
            p.pg_tid.as_deref(),
            tno,
            listed,
        ))
    }

    /// A holder with KCP's approval `tno` in hand found the attempt of payment `payment_id`
    /// settled or taken over by another holder (module doc). `cancelled_at_kcp`: this holder has
    /// net-cancelled `tno` already and its record of that found the attempt gone.
    pub(crate) fn approval_orphaned<'a>(
        &'a self,
        connector: &'a dyn PgConnector,
        payment_id: i64,
        tno: &'a str,
        cancelled_at_kcp: bool,
    ) -> Settling<'a> {
        async move {
            let p = self.payment_of(payment_id).await?;
            match self.standing(&p, tno).await? {
                // Refused by KCP already and listed for an operator: never "failed" (nothing
                // charged), never "retry is safe".
                Standing::Conflict => return Ok(ApprovalOutcome::Conflict(p)),
                Standing::Holds if cancelled_at_kcp => {
                    // Only a holder stalled past the lease it renewed before the cancel gets here.
                    tracing::error!(imp_uid = %p.imp_uid, %tno, "net-cancelled at KCP while another holder recorded the approval: closed as a conflict for an operator");
                    self.open_orphan(
                        &p,
                        tno,
                        "conflict",
                        "net-cancelled at KCP while the payment holds it: reconcile by hand",
                    )
                    .await?;
                    return Ok(ApprovalOutcome::Unknown(p));
                }
                Standing::Holds => return Ok(ApprovalOutcome::Paid(p)),
                Standing::Cancelled => return Ok(ApprovalOutcome::NetCancelled(p)),
                Standing::Pending | Standing::Stray => {}
            }
            tracing::warn!(imp_uid = %p.imp_uid, %tno, "approval in hand for an attempt another holder settled; net-cancelling it on an attempt of its own");
            let attempt = self
                .open_orphan(&p, tno, "pending", "net-cancel of an approval in hand")
                .await?;
            self.settle_orphan(connector, attempt).await
        }
        .boxed()
    }

    /// Settles a [`KIND`] attempt this holder holds: by the request that opened it, or by the
    /// resolver after a lost answer. The approval is cancelled (`STSC`, an escrow payment's
    /// `STE2`/`STE5`: `pay::net_cancel_kind`; KCP's net-cancel reason)
    /// only once the payment's own approval attempt is decided and does not hold it.
    pub(crate) fn settle_orphan<'a>(
        &'a self,
        connector: &'a dyn PgConnector,
        attempt: pg_attempt::Model,
    ) -> Settling<'a> {
        async move {
            let tno = attempt.tno.clone().ok_or_else(|| {
                ServiceError::Internal(format!("net-cancel attempt {} without tno", attempt.id))
            })?;
            let p = self.payment_of(attempt.payment_id).await?;
            match self.standing(&p, &tno).await? {
                // KCP refused to cancel it once: not sent again, and never recorded as
                // cancelled, which KCP never did.
                Standing::Conflict => {
                    self.close_attempt(attempt, "failed", "not sent: the approval is listed as a conflict")
                        .await?;
                    return Ok(ApprovalOutcome::Conflict(p));
                }
                Standing::Pending => {
                    self.postpone(attempt, "waits for the approval attempt's outcome")
                        .await?;
                    return Ok(ApprovalOutcome::Unknown(p));
                }
                Standing::Holds => {
                    self.close_attempt(attempt, "failed", "not sent: the payment holds this approval")
                        .await?;
                    return Ok(ApprovalOutcome::Paid(p));
                }
                Standing::Cancelled => {
                    self.close_attempt(attempt, "net_cancelled", "net-cancelled by the approval's own attempt")
                        .await?;
                    return Ok(ApprovalOutcome::NetCancelled(p));
                }
                Standing::Stray => {}
            }
            if let Some(holder) = self.foreign_holder(p.id, &tno).await? {
                tracing::error!(imp_uid = %p.imp_uid, %tno, holder = %holder.imp_uid, "a net-cancel names a trade another payment holds: not sent; left for the operator");
                // A try before this one whose answer was lost (postponed: `tries`) may have
                // reached KCP: neither the note nor the attempt says "not cancelled" of it.
                let (at_kcp, not_sent) = if attempt.tries > 0 {
                    (AtKcp::MaybeCancelled, "not sent again (an earlier try's answer was lost)")
                } else {
                    (AtKcp::Untouched, "not sent")
                };
                let whose = format!("which payment {} holds", holder.imp_uid);
                self.note_misdirected(&p, &tno, &whose, at_kcp, attempt.id)
                    .await?;
                self.close_attempt(
                    attempt,
                    "failed",
                    &format!("{not_sent}: trade {tno} is payment {}'s", holder.imp_uid),
                )
                .await?;
                return Ok(ApprovalOutcome::Unknown(p));
            }
            // Not looked at again before a settle delay after this STSC, however often it was
            // sent before (`renew_before_settling_call`; `postpone` never brings it forward): KCP
            // may still be applying it when its answer is lost or its holder dies, and a second
            // one sent meanwhile could be refused with another code than "already cancelled",
            // which reads as "the approval stands" (a conflict over a trade KCP cancels). Counted
            // from the attempt's creation, as before, only the first STSC was covered: a resolver
            // retry's lost answer was looked at again after the backoff (10 s, 20 s, ...).
            let Some(attempt) = self.renew_before_settling_call(attempt).await? else {
                return Ok(ApprovalOutcome::Unknown(p));
            };
            let kind = super::pay::net_cancel_kind(&p);
            let sent = self.net_cancel_at_kcp(connector, attempt, &tno, kind).await?;
            let Some((attempt, done)) = sent else {
                return Ok(ApprovalOutcome::Unknown(p));
            };
            match done {
                Ok(()) => {
                    let closed = Closing {
                        state: "net_cancelled",
                        code: "0000".into(),
                        message: NET_CANCEL_REASON.into(),
                        fail_reason: CANCELLED_FOR_IT.into(),
                    };
                    match self.close_orphan(&p, attempt, &tno, closed).await? {
                        None => Ok(ApprovalOutcome::Unknown(p)),
                        Some(p) if PaymentStatus::from_db(&p.status) == PaymentStatus::Failed => {
                            tracing::warn!(imp_uid = %p.imp_uid, %tno, "approval the payment does not hold net-cancelled");
                            Ok(ApprovalOutcome::NetCancelled(p))
                        }
                        Some(p) => self.approval_decided(p.id).await,
                    }
                }
                Err(PgError::Declined { code, message, .. }) => {
                    tracing::error!(imp_uid = %p.imp_uid, %tno, %code, "KCP refused to net-cancel an approval the payment does not hold: closed as a conflict for an operator");
                    let refusal = quoted_refusal(&code, &message);
                    let closed = Closing {
                        state: "conflict",
                        fail_reason: format!("{NOT_CANCELLED_FOR_IT} {refusal}"),
                        message: refusal,
                        code,
                    };
                    Ok(match self.close_orphan(&p, attempt, &tno, closed).await? {
                        Some(p) => ApprovalOutcome::Conflict(p),
                        None => ApprovalOutcome::Unknown(p),
                    })
                }
                Err(e) => {
                    tracing::error!(imp_uid = %p.imp_uid, %tno, "net-cancel did not complete: {e}");
                    self.postpone(attempt, &format!("net-cancel pending: {e}"))
                        .await?;
                    Ok(ApprovalOutcome::Unknown(p))
                }
            }
        }
        .boxed()
    }

    /// Another of our payments holding KCP's trade `tno` (its `pg_tid`, now or before:
    /// `payments::trade_holder`), for a holder about to record or net-cancel `tno` for payment
    /// `payment_id`. A tno comes from KCP's answer, and an answer can name a trade of ours, for
    /// another order (`PgError::Mismatch`) or for this very order (review r4: a cross-wired
    /// answer): cancelled, that payment would be refunded at KCP while showing paid; recorded,
    /// this payment would show paid with a trade whose refunds go to another buyer, and its own
    /// approval would be left standing at KCP with nothing recording it.
    pub(crate) async fn foreign_holder(
        &self,
        payment_id: i64,
        tno: &str,
    ) -> ServiceResult<Option<payment::Model>> {
        Ok(payments::trade_holder(&self.db.write, tno, payment_id).await?)
    }

    /// An approval KCP answered payment `p`'s call with, about to be recorded: when another
    /// payment holds its trade `tno` ([`Self::foreign_holder`]), the answer is not `p`'s
    /// ([`Self::foreign_trade_named`]) and is its outcome; None when `p` may record it. Asked
    /// before windows, virtual accounts and points record an approval; cards and billing keys
    /// (`Recording::TradeTaken`) are not asked, on the hot path: the database refuses their
    /// record, as it refuses any record when another payment's claim commits in between
    /// (migration 000039, [`Self::trade_taken_meanwhile`]).
    pub(crate) async fn answer_of_another_trade(
        &self,
        p: &payment::Model,
        attempt: &pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<Option<ApprovalOutcome>> {
        let at_kcp = AtKcp::as_named(attempt, tno);
        self.held_by_another(p, attempt, tno, at_kcp).await
    }

    /// [`Self::answer_of_another_trade`], `at_kcp` saying what `p`'s own calls did to `tno`.
    async fn held_by_another(
        &self,
        p: &payment::Model,
        attempt: &pg_attempt::Model,
        tno: &str,
        at_kcp: AtKcp,
    ) -> ServiceResult<Option<ApprovalOutcome>> {
        match self.foreign_holder(p.id, tno).await? {
            Some(holder) => Ok(Some(
                self.another_payments_trade(p.clone(), attempt.clone(), tno, &holder, at_kcp)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// The database refused to record trade `tno` on payment `p` (`store::is_trade_clash`):
    /// another payment's record of it committed after [`Self::answer_of_another_trade`] looked.
    /// Settled as that answer would have been; should the holder not be found (its write rolled
    /// back after all), the answer is still not recorded, and `p`'s own outcome is asked of KCP by
    /// its order number.
    pub(crate) async fn trade_taken_meanwhile(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        let at_kcp = AtKcp::as_named(&attempt, tno);
        self.trade_refused(p, attempt, tno, at_kcp).await
    }

    /// [`Self::trade_taken_meanwhile`], `at_kcp` saying what this payment's own calls did to
    /// `tno`.
    async fn trade_refused(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        at_kcp: AtKcp,
    ) -> ServiceResult<ApprovalOutcome> {
        if let Some(holder) = self.foreign_holder(p.id, tno).await? {
            return self
                .another_payments_trade(p, attempt, tno, &holder, at_kcp)
                .await;
        }
        tracing::error!(imp_uid = %p.imp_uid, %tno, "the database refused KCP's trade as another payment's: not recorded; the payment's own outcome is asked by its order number");
        let whose = "which another payment was recording";
        self.set_aside_misdirected(p, attempt, tno, whose, at_kcp, ANOTHER_PAYMENTS)
            .await
    }

    /// This holder's net-cancel of trade `tno` went through at KCP for payment `p`, and the
    /// database then refused to record `tno` on `p` (`store::is_trade_clash`): another payment's
    /// record of it committed after `net_cancel` looked ([`Self::foreign_holder`]). Neither
    /// payment's record can be trusted now (the other shows a trade KCP holds cancelled, or `p`'s
    /// own answer named the other's trade and its own approval is still to be found), so the
    /// trade is listed as a misdirected answer saying it was cancelled, never "not cancelled", and
    /// `p`'s attempt is let go, no longer naming `tno`, for the resolver to ask KCP by `p`'s own
    /// order number, as after any answer naming another payment's trade
    /// ([`Self::foreign_trade_named`]).
    pub(crate) async fn net_cancelled_trade_taken(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        tracing::error!(imp_uid = %p.imp_uid, %tno, "net-cancelled at KCP a trade another payment recorded meanwhile: not recorded on this payment; left for the operator");
        self.trade_refused(p, attempt, tno, AtKcp::Cancelled).await
    }

    /// Trade `tno`, which KCP holds open (it refused this holder's net-cancel of it, or it is an
    /// account paid into), is about to be named on payment `p` held as a conflict
    /// (`Gateway::hold_as_conflict`): when another payment holds it ([`Self::foreign_holder`]),
    /// it is that payment's, and `p`'s outcome is asked again by its own order number
    /// ([`Self::foreign_trade_named`]) instead. None when `p` may name it.
    pub(crate) async fn open_trade_of_another(
        &self,
        p: &payment::Model,
        attempt: &pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<Option<ApprovalOutcome>> {
        self.held_by_another(p, attempt, tno, AtKcp::Untouched)
            .await
    }

    /// [`Self::trade_taken_meanwhile`] of a trade KCP holds open (`Gateway::hold_as_conflict`).
    pub(crate) async fn open_trade_taken_meanwhile(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        self.trade_refused(p, attempt, tno, AtKcp::Untouched).await
    }

    /// KCP answered payment `p`'s call with trade `tno`, which payment `holder` holds
    /// ([`Self::foreign_holder`]): never cancelled. An answer for another trade says nothing of
    /// `p`'s own call either, so its attempt is let go (not naming `tno`) for the resolver, which
    /// asks KCP by `p`'s own order number and settles it from that; the misdirected answer is
    /// listed for the operator ([`Self::note_misdirected`]).
    pub(crate) async fn foreign_trade_named(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        holder: &payment::Model,
    ) -> ServiceResult<ApprovalOutcome> {
        let at_kcp = AtKcp::as_named(&attempt, tno);
        self.another_payments_trade(p, attempt, tno, holder, at_kcp)
            .await
    }

    /// [`Self::foreign_trade_named`], `at_kcp` saying what this payment's own calls did to `tno`.
    async fn another_payments_trade(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        holder: &payment::Model,
        at_kcp: AtKcp,
    ) -> ServiceResult<ApprovalOutcome> {
        tracing::error!(imp_uid = %p.imp_uid, %tno, holder = %holder.imp_uid, "KCP answered with a trade another payment holds: not recorded; left for the operator, the payment's own outcome is asked by its order number");
        let whose = format!("which payment {} holds", holder.imp_uid);
        self.set_aside_misdirected(p, attempt, tno, &whose, at_kcp, ANOTHER_PAYMENTS)
            .await
    }

    /// KCP answered payment `p`'s call with trade `tno` of another order, `order_no`
    /// (`PgError::Mismatch::other_order`): not `p`'s answer. spec/kcp.md §5 compares the order so
    /// that such an answer is never recorded, not so that the trade it names is cancelled on
    /// `p`'s behalf: it may be another payment's whose own answer is still on its way or was lost
    /// (no `pg_tid` names it yet, so [`Self::foreign_holder`] cannot tell), whose buyer would be
    /// refunded while that payment is recorded paid, or a sale made outside openport on the same
    /// site. Nor does it say anything of `p`'s own call, which KCP may have approved under
    /// another tno that nothing would then look for. So the trade is never cancelled here; it is
    /// listed for the operator ([`Self::note_misdirected`]), and `p`'s attempt is let go, naming
    /// no tno, for the resolver, which asks KCP by `p`'s own order number and settles it from
    /// that, as after a lost answer.
    pub(crate) async fn misdirected_answer(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        order_no: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        if let Some(holder) = self.foreign_holder(p.id, tno).await? {
            return self.foreign_trade_named(p, attempt, tno, &holder).await;
        }
        // KCP's text, kept as short as an order number is (spec/kcp.md §6: 40).
        let order_no: String = order_no.chars().take(40).collect();
        tracing::error!(imp_uid = %p.imp_uid, %tno, %order_no, "KCP answered with another order's trade: not cancelled; left for the operator, the payment's own outcome is asked by its order number");
        let whose = format!("of order {order_no}, not this payment's");
        let at_kcp = AtKcp::as_named(&attempt, tno);
        let why = "KCP's answer named another order's trade";
        self.set_aside_misdirected(p, attempt, tno, &whose, at_kcp, why)
            .await
    }

    /// A misdirected answer naming trade `tno` is listed for the operator
    /// ([`Self::note_misdirected`]), then `p`'s attempt is let go ([`Self::let_go_misdirected`]).
    async fn set_aside_misdirected(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        whose: &str,
        at_kcp: AtKcp,
        why: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        self.note_misdirected(&p, tno, whose, at_kcp, attempt.id)
            .await?;
        self.let_go_misdirected(p, attempt, tno, why).await
    }

    /// Lets go of `p`'s attempt after a misdirected answer naming trade `tno`, for the resolver to
    /// ask KCP by `p`'s own order number; or, when another holder settled it meanwhile, answers
    /// their outcome.
    ///
    /// Postponed with the resolver's backoff (`Gateway::postpone`: one try more, not due before
    /// its backoff nor a settle delay after its last call), never let go as due as it was: a KCP
    /// whose answer by that order number keeps naming the same trade would otherwise be asked on
    /// every pass of the resolver, for ever, and the note is written once only.
    ///
    /// An attempt naming `tno` (named before a net-cancel of it: `Gateway::renew_naming`) stops
    /// naming it: inquired by that tno, KCP would name it again on every pass, and the payment's
    /// own approval, if another, would never be looked for. Another payment's trade is never this
    /// attempt's to cancel again, so nothing is lost by it.
    async fn let_go_misdirected(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        why: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        let mut a = self.postponement(&attempt, why);
        if attempt.tno.as_deref() == Some(tno) {
            a.tno = Set(None);
        }
        match self.write_held(&attempt, a).await? {
            Some(_) => Ok(ApprovalOutcome::Unknown(p)),
            None => self.approval_decided(p.id).await,
        }
    }

    /// Lists for the operator, once per trade, that KCP answered a call of payment `p` with trade
    /// `tno` (`whose`: which payment holds it, or which order it is of; `at_kcp`: what `p`'s own
    /// attempt `attempt_id` did to it): a closed `conflict` of kind
    /// [`payments::MISDIRECTED_ANSWER`]. Listed (`attempt list --conflicts`), but it does not hold
    /// `p`'s cancels, and once `p` is settled by its own approval, its record and KCP agree.
    async fn note_misdirected(
        &self,
        p: &payment::Model,
        tno: &str,
        whose: &str,
        at_kcp: AtKcp,
        attempt_id: i64,
    ) -> ServiceResult<()> {
        let kind = payments::MISDIRECTED_ANSWER;
        if payments::has_attempt_for(&self.db.write, p.id, kind, tno).await? {
            return Ok(());
        }
        let done = at_kcp.note(attempt_id);
        let note = format!(
            "KCP answered this payment with trade {tno}, {whose}: {done}, reconcile by hand"
        );
        let now = self.clock.unix();
        payments::insert_attempt(
            &self.db.write,
            pg_attempt::ActiveModel {
                payment_id: Set(p.id),
                state: Set("conflict".into()),
                tno: Set(Some(tno.to_string())),
                result_message: Set(Some(note)),
                ..super::attempts::new_attempt(kind, p.order_no.clone(), p.amount, now)
            },
        )
        .await?;
        Ok(())
    }

    /// Closes the [`KIND`] attempt as `closing` says and, when the payment failed without naming a
    /// trade, names `tno` on it with `closing`'s fail reason (so its record shows where KCP's
    /// approval went: cancelled, or left standing by KCP's refusal), in one transaction. The
    /// payment as it then stands; None when another holder took the attempt over when this one
    /// stalled (it cancels again, KCP answers "already cancelled" or refuses again, and records
    /// it).
    ///
    /// The STSC (or its refusal) is KCP's by then: when the database refuses `tno` on the payment
    /// as another payment's (`store::is_trade_clash`: that payment's record of it committed after
    /// [`Self::settle_orphan`] looked), the attempt is closed all the same, the payment left
    /// naming no trade, and the trade listed as a misdirected answer saying what KCP did with it
    /// ([`Self::note_misdirected`]). Rolled back instead, the attempt stayed open and the next
    /// pass closed it as "not sent" although the STSC had gone out.
    async fn close_orphan(
        &self,
        p: &payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        closing: Closing,
    ) -> ServiceResult<Option<payment::Model>> {
        let name = PaymentStatus::from_db(&p.status) == PaymentStatus::Failed && p.pg_tid.is_none();
        let closed = match self
            .write_orphan_close(p, &attempt, tno, &closing, name)
            .await
        {
            Err(e) if name && crate::store::is_trade_clash(&e) => {
                tracing::error!(imp_uid = %p.imp_uid, %tno, "a net-cancel's trade was recorded on another payment meanwhile: closed without naming it on this payment; left for the operator");
                let closed = self
                    .write_orphan_close(p, &attempt, tno, &closing, false)
                    .await?;
                if closed {
                    let whose = match self.foreign_holder(p.id, tno).await? {
                        Some(holder) => format!("which payment {} holds", holder.imp_uid),
                        None => "which another payment was recording".into(),
                    };
                    let at_kcp = if closing.state == "net_cancelled" {
                        AtKcp::Cancelled
                    } else {
                        AtKcp::Untouched
                    };
                    self.note_misdirected(p, tno, &whose, at_kcp, attempt.id)
                        .await?;
                }
                closed
            }
            closed => closed?,
        };
        if !closed {
            return Ok(None);
        }
        Ok(Some(self.payment_of(p.id).await?))
    }

    /// The write of [`Self::close_orphan`], naming `tno` on the failed payment when `name`. False
    /// (nothing written) when this holder no longer holds the attempt open.
    async fn write_orphan_close(
        &self,
        p: &payment::Model,
        attempt: &pg_attempt::Model,
        tno: &str,
        closing: &Closing,
        name: bool,
    ) -> Result<bool, DbErr> {
        let now = self.clock.unix();
        let txn = self.db.write.begin().await?;
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set(closing.state.into());
        a.result_code = Set(Some(closing.code.clone()));
        a.result_message = Set(Some(closing.message.clone()));
        a.updated_at = Set(now);
        if !payments::write_held_attempt(&txn, attempt, a).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        if name {
            let mut pm: payment::ActiveModel = p.clone().into();
            pm.pg_tid = Set(Some(tno.to_string()));
            pm.fail_reason = Set(Some(closing.fail_reason.clone()));
            pm.updated_at = Set(now);
            let unnamed = Condition::all()
                .add(payment::Column::Status.eq(PaymentStatus::Failed.as_db()))
                .add(payment::Column::PgTid.is_null());
            payments::update_payment_if(&txn, pm, unnamed).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Inserts a [`KIND`] attempt for `tno` of payment `p` in `state`: `pending` is held by this
    /// holder (its lease written with it) and due for the resolver as soon as that runs out.
    async fn open_orphan(
        &self,
        p: &payment::Model,
        tno: &str,
        state: &str,
        note: &str,
    ) -> ServiceResult<pg_attempt::Model> {
        let now = self.clock.unix();
        let open = payments::OPEN_STATES.contains(&state);
        Ok(payments::insert_attempt(
            &self.db.write,
            pg_attempt::ActiveModel {
                payment_id: Set(p.id),
                state: Set(state.into()),
                tno: Set(Some(tno.to_string())),
                reason: Set(Some(NET_CANCEL_REASON.into())),
                result_message: Set(Some(note.into())),
                lease_until: Set(if open { self.lease_from(now) } else { 0 }),
                // KCP's approval may be for another amount (a mismatch); STSC cancels it whole.
                ..super::attempts::new_attempt(KIND, p.order_no.clone(), p.amount, now)
            },
        )
        .await?)
    }

    async fn payment_of(&self, id: i64) -> ServiceResult<payment::Model> {
        payments::by_id(&self.db.write, id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_stands_only_where_the_payment_holds_it_and_is_cancelled_wherever_it_does_not() {
        use PaymentStatus::*;
        let t = "20261203000001";
        assert_eq!(standing_of(Pending, None, t, false), Standing::Pending);
        assert_eq!(standing_of(Paid, Some(t), t, false), Standing::Holds);
        assert_eq!(standing_of(Cancelled, Some(t), t, false), Standing::Holds);
        assert_eq!(standing_of(Ready, Some(t), t, false), Standing::Holds);
        assert_eq!(standing_of(Failed, Some(t), t, false), Standing::Cancelled);
        assert_eq!(standing_of(Failed, None, t, false), Standing::Stray);
        assert_eq!(standing_of(Ready, None, t, false), Standing::Stray);
        assert_eq!(
            standing_of(Paid, Some("20261203000002"), t, false),
            Standing::Stray
        );
    }

    #[test]
    fn an_approval_kcp_refused_to_cancel_is_a_conflict_never_read_as_cancelled() {
        use PaymentStatus::*;
        let t = "20261203000001";
        // Held pending by its refused net-cancel, or failed naming it (an approval the payment
        // did not hold, whose net-cancel KCP refused): the same shape as a cancelled one.
        assert_eq!(standing_of(Pending, Some(t), t, true), Standing::Conflict);
        assert_eq!(standing_of(Failed, Some(t), t, true), Standing::Conflict);
        assert_eq!(standing_of(Failed, None, t, true), Standing::Conflict);
    }
}
