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
use sea_orm::{ColumnTrait, Condition, Set};

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
                let whose = format!("which payment {} holds", holder.imp_uid);
                self.note_misdirected(&p, &tno, &whose).await?;
                self.close_attempt(
                    attempt,
                    "failed",
                    &format!("not sent: trade {tno} is payment {}'s", holder.imp_uid),
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
        match self.foreign_holder(p.id, tno).await? {
            Some(holder) => Ok(Some(
                self.foreign_trade_named(p.clone(), attempt.clone(), tno, &holder)
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
        if let Some(outcome) = self.answer_of_another_trade(&p, &attempt, tno).await? {
            return Ok(outcome);
        }
        tracing::error!(imp_uid = %p.imp_uid, %tno, "the database refused KCP's trade as another payment's: not recorded; the payment's own outcome is asked by its order number");
        self.note_misdirected(&p, tno, "which another payment was recording")
            .await?;
        self.let_go_misdirected(p, attempt, "KCP's answer named another payment's trade")
            .await
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
        tracing::error!(imp_uid = %p.imp_uid, %tno, holder = %holder.imp_uid, "KCP answered with a trade another payment holds: not cancelled; left for the operator, the payment's own outcome is asked by its order number");
        let whose = format!("which payment {} holds", holder.imp_uid);
        self.note_misdirected(&p, tno, &whose).await?;
        self.let_go_misdirected(p, attempt, "KCP's answer named another payment's trade")
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
        self.note_misdirected(&p, tno, &whose).await?;
        self.let_go_misdirected(p, attempt, "KCP's answer named another order's trade")
            .await
    }

    /// Lets go of `p`'s attempt after a misdirected answer, for the resolver to ask KCP by `p`'s
    /// own order number; or, when another holder settled it meanwhile, answers their outcome.
    async fn let_go_misdirected(
        &self,
        p: payment::Model,
        attempt: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<ApprovalOutcome> {
        match self.let_go(attempt, why).await? {
            Some(_) => Ok(ApprovalOutcome::Unknown(p)),
            None => self.approval_decided(p.id).await,
        }
    }

    /// Lists for the operator, once per trade, that KCP answered a call of payment `p` with trade
    /// `tno` (`whose`: which payment holds it, or which order it is of): a closed `conflict` of
    /// kind [`payments::MISDIRECTED_ANSWER`]. Listed (`attempt list --conflicts`), but about a
    /// trade nothing changed: it does not hold `p`'s cancels, and once `p` is settled by its own
    /// approval, its record and KCP agree.
    async fn note_misdirected(
        &self,
        p: &payment::Model,
        tno: &str,
        whose: &str,
    ) -> ServiceResult<()> {
        let kind = payments::MISDIRECTED_ANSWER;
        if payments::has_attempt_for(&self.db.write, p.id, kind, tno).await? {
            return Ok(());
        }
        let note = format!(
            "KCP answered this payment with trade {tno}, {whose}: not cancelled, reconcile by hand"
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
    async fn close_orphan(
        &self,
        p: &payment::Model,
        attempt: pg_attempt::Model,
        tno: &str,
        closing: Closing,
    ) -> ServiceResult<Option<payment::Model>> {
        let now = self.clock.unix();
        let txn = self.db.write.begin().await?;
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set(closing.state.into());
        a.result_code = Set(Some(closing.code));
        a.result_message = Set(Some(closing.message));
        a.updated_at = Set(now);
        if !payments::write_held_attempt(&txn, &attempt, a).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        if PaymentStatus::from_db(&p.status) == PaymentStatus::Failed && p.pg_tid.is_none() {
            let mut pm: payment::ActiveModel = p.clone().into();
            pm.pg_tid = Set(Some(tno.to_string()));
            pm.fail_reason = Set(Some(closing.fail_reason));
            pm.updated_at = Set(now);
            let unnamed = Condition::all()
                .add(payment::Column::Status.eq(PaymentStatus::Failed.as_db()))
                .add(payment::Column::PgTid.is_null());
            payments::update_payment_if(&txn, pm, unnamed).await?;
        }
        txn.commit().await?;
        Ok(Some(self.payment_of(p.id).await?))
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
