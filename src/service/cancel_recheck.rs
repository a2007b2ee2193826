//! The second look at a cancel closed as "not applied at KCP".
//!
//! A cancel attempt is closed as not applied when KCP's balance, asked after the settle delay,
//! still holds the cancel's amount (service/resolve.rs `resolve_cancel`, a point cancel's `STRA`
//! in service/benepia.rs). The settle delay only bounds by assumption how long KCP takes: a KCP
//! that applies the cancel later has refunded the buyer while the record keeps the balance, and a
//! merchant told "not cancelled" who refunds by other means refunds twice. Approvals failed on the
//! same assumption get a second look (`resolve::ABSENCE_RECHECK`); cancels get this one.
//!
//! Before the cancel is closed, an attempt of kind [`KIND`] is written (so no crash between the
//! two leaves the close without its look), due [`RECHECK_SETTLES`] settle delays later. It names
//! the cancel's tno and amount and is not a `cancel`: the payment takes API cancels meanwhile. It
//! then asks KCP what is left of that trade and compares it with the payment's balance as it
//! stands by then: the same → nothing landed, closed; exactly the cancel's amount less → KCP
//! applied it late, recorded as the cancel (with a `cancelled` webhook: the merchant was told the
//! opposite); anything else → a `conflict` for the operator. A point payment's partial cancel is
//! also looked for under the order number its `STRA` was sent under: a re-approval found there
//! landed, beside the tno cancelled or still whole, and is a `conflict` too, never "still not
//! applied" nor a cancel of the amount. Whatever it found, the look and an API cancel take turns
//! on the payment's row (`Gateway::conclude_recheck`): one sent while the look inquired is planned
//! from what the look wrote, or the look waits for it and asks again.
//!
//! An API cancel of a payment whose earlier full cancel awaits its second look takes that look
//! first, before it is planned (`Gateway::recheck_before_cancel`): a late full cancel is recorded
//! then, not an hour later under a cancel planned from a balance KCP no longer holds.
use sea_orm::Set;

use super::benepia::{reapproval_landed, reapproval_under, POINT};
use super::resolve::RECHECK_SETTLES;
use super::{Gateway, ServiceError, ServiceResult};
use crate::pg::Pg;
use crate::store::entity::{payment, pg_attempt};
use crate::store::payments;

/// `pg_attempts.kind` of the second look at a cancel closed as not applied.
pub const KIND: &str = "cancel_recheck";

impl Gateway {
    /// Writes the second look at cancel `attempt`, which its holder is about to close as not
    /// applied (module doc).
    pub(crate) async fn schedule_cancel_recheck(
        &self,
        attempt: &pg_attempt::Model,
    ) -> ServiceResult<()> {
        let now = self.clock.unix();
        payments::insert_attempt(
            &self.db.write,
            pg_attempt::ActiveModel {
                payment_id: Set(attempt.payment_id),
                tno: Set(attempt.tno.clone()),
                reason: Set(attempt.reason.clone()),
                // Recorded an hour after the merchant was told "not cancelled": announced whatever
                // the request asked, as a point cancel that took more than asked is.
                notify: Set(true),
                result_message: Set(Some(format!(
                    "second look for a late cancel (attempt {})",
                    attempt.id
                ))),
                next_check_at: Set(now + RECHECK_SETTLES * self.settings.settle_secs),
                ..super::attempts::new_attempt(KIND, attempt.order_no.clone(), attempt.amount, now)
            },
        )
        .await?;
        Ok(())
    }

    /// Runs a [`KIND`] attempt this instance claimed (module doc).
    pub(crate) async fn recheck_cancel(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<()> {
        match self.look(connector, &payment, &attempt).await? {
            Look::Found(finding) => {
                self.conclude_recheck(payment, attempt, finding).await?;
            }
            Look::Later(why) => {
                self.postpone(attempt, &why).await?;
            }
            Look::Nothing(why) => {
                self.close_attempt(attempt, "failed", why).await?;
            }
        }
        Ok(())
    }

    /// Before an API cancel of `payment` is planned: the pending second look of an earlier full
    /// cancel, of all the payment holds, is taken now, not when due (review rS, finding 2). A
    /// full cancel (`STSC`; a deposit's `STHD`, an escrow cancel) carries no balance KCP could
    /// refuse it on, so one KCP applies after it was closed as not applied takes whatever is
    /// left, and until its second look an hour later the record kept showing that money as
    /// refundable, for a cancel to be planned from. Asked now, KCP's balance tells: a cancel that
    /// landed is recorded (with its `cancelled` webhook) and the new cancel is planned from the
    /// balance it left; a balance that matches neither outcome is the look's conflict, which
    /// refuses the cancel. A look that finds the earlier cancel still not applied concludes
    /// nothing: KCP may yet apply it, and the look stays due when it was, as does one that cannot
    /// be taken now (KCP's inquiry failing, another cancel in flight). One another holder is
    /// taking (the resolver) is left to it: its write and the new cancel's planning take turns on
    /// the payment's row ([`Gateway::conclude_recheck`]).
    ///
    /// The look of a partial cancel is not taken early: its `STPC` carries the balance it was
    /// planned from, so KCP refuses it once anything else changed the trade; and one that did
    /// land late is the cancel a merchant told "not cancelled" most often sends again. Sent as
    /// before, that retry meets KCP's balance already less by its amount and is recorded as that
    /// one refund (service/resolve.rs `refused_cancel`); the late cancel recorded first, the retry
    /// would be planned from the balance it left and refund the buyer twice.
    ///
    /// None when no such look is pending; otherwise the late cancels recorded (attempt id and
    /// amount), for the answer, and the payment is to be read again.
    pub(crate) async fn recheck_before_cancel(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
    ) -> ServiceResult<Option<Vec<(i64, i64)>>> {
        let mut recorded = Vec::new();
        let mut looks: Vec<pg_attempt::Model> =
            payments::open_attempts_of(&self.db.write, payment.id)
                .await?
                .into_iter()
                // A full cancel's: for the whole balance, and no cancel recorded since.
                .filter(|a| a.kind == KIND && a.amount == payment.balance())
                .collect();
        if looks.is_empty() {
            return Ok(None);
        }
        // The earliest cancel first: each look compares KCP's balance with the record as the
        // looks before it left it.
        looks.sort_by_key(|a| a.id);
        for look in looks {
            let Some(attempt) = self.claim(look.id).await? else {
                continue;
            };
            let Some(payment) = payments::by_id(&self.db.write, payment.id).await? else {
                self.give_back(attempt).await?;
                break;
            };
            match self.look(connector, &payment, &attempt).await? {
                Look::Found(Finding::NotApplied) | Look::Later(_) => {
                    self.give_back(attempt).await?;
                }
                Look::Nothing(why) => {
                    self.close_attempt(attempt, "failed", why).await?;
                }
                Look::Found(finding) => {
                    let late = matches!(finding, Finding::Late);
                    let (id, amount) = (attempt.id, attempt.amount);
                    if self.conclude_recheck(payment, attempt, finding).await? && late {
                        recorded.push((id, amount));
                    }
                }
            }
        }
        Ok(Some(recorded))
    }

    /// Lets go of the second look `attempt`, taken before it was due and concluding nothing: left
    /// as it was, due when it was.
    async fn give_back(&self, attempt: pg_attempt::Model) -> ServiceResult<()> {
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.lease_until = Set(0);
        self.write_held(&attempt, a).await?;
        Ok(())
    }

    /// What the second look `attempt` finds of `payment` at KCP now (module doc); nothing is
    /// written.
    async fn look(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        attempt: &pg_attempt::Model,
    ) -> ServiceResult<Look> {
        let tno = attempt.tno.clone().ok_or_else(|| {
            ServiceError::Internal(format!("cancel recheck {} without tno", attempt.id))
        })?;
        // A point payment partly cancelled since holds a re-approval: its old tno was cancelled
        // whole by that cancel's STRA, which a late call on the same tno changes nothing to.
        if payment.pg_tid.as_deref() != Some(tno.as_str()) {
            return Ok(Look::Nothing(
                "nothing to look for: the payment holds another trade now",
            ));
        }
        // A cancel in flight moves KCP's balance under this look, and one of the same amount
        // would pass for the late one: looked at again once it is settled.
        let open = payments::open_attempts_of(&self.db.write, payment.id).await?;
        if open.iter().any(|a| a.kind == "cancel") {
            return Ok(Look::Later("waits for the cancel in flight".into()));
        }
        let remaining = match self.remaining_of(connector, payment, tno.clone()).await {
            Some(Ok(Some(remaining))) => remaining,
            Some(Ok(None)) => {
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "second look at a cancel: KCP has no such trade; left for the operator");
                return Ok(Look::Found(Finding::Conflict(
                    "second look: KCP에 거래가 없음".into(),
                )));
            }
            Some(Err(e)) => return Ok(Look::Later(format!("second look failed: {e}"))),
            // A cancel is only concluded "not applied" from an inquiry, so this is not reached.
            None => return Ok(Look::Nothing("no inquiry for this pay method")),
        };
        // A point payment's partial cancel sent its STRA under its own order number (copied onto
        // this look): a re-approval there means the STRA landed, whether it cancelled the tno (as
        // openport reads STRA) or left it whole (the third reading, docs/kcp.md §8.3), which the
        // tno's balance alone would take for "still not applied". The resolver's first look asks
        // the same (service/benepia.rs `reapproval_beside_live_original`).
        if payment.pay_method == POINT && attempt.order_no != payment.order_no {
            match reapproval_under(connector, &attempt.order_no).await {
                Ok(None) => {}
                // The trade itself (KCP re-approved in place, docs/kcp.md §8.3): its balance below
                // tells whether the STRA landed, exactly as for a card's cancel.
                Ok(Some(found)) if found.trade.tno == tno => {}
                Ok(Some(found)) => {
                    let why = reapproval_landed(payment, &tno, remaining, &found);
                    return Ok(Look::Found(Finding::Conflict(format!(
                        "second look: {why}"
                    ))));
                }
                Err(e) => {
                    return Ok(Look::Later(format!(
                        "second look, re-approval inquiry: {e}"
                    )))
                }
            }
        }
        let balance = payment.balance();
        Ok(Look::Found(if remaining == balance {
            Finding::NotApplied
        } else if remaining == balance - attempt.amount {
            tracing::error!(imp_uid = %payment.imp_uid, %tno, amount = attempt.amount, "KCP applied a cancel after it was closed as not applied; recording it");
            Finding::Late
        } else {
            tracing::error!(imp_uid = %payment.imp_uid, %tno, remaining, balance, "second look at a cancel: KCP's balance matches neither outcome; left for the operator");
            Finding::Conflict(format!(
                "second look: KCP 잔액 {remaining}, openport 잔액 {balance}"
            ))
        }))
    }

    /// Writes what second look `attempt` found of `payment` as read before KCP was asked, in one
    /// transaction that holds the payment's row (`payments::by_id_held`), and only while the
    /// payment is as read and none of its cancels is open; otherwise the look is postponed.
    ///
    /// Every finding is drawn from KCP's balance against the payment's, and a cancel the merchant
    /// sends while the look inquires moves both. Recorded then, the late cancel would sit under a
    /// cancel planned from the balance before it: KCP confirming that one (a full `STSC` of what
    /// KCP holds, say) would fail its own record's compare-and-set, be answered "unknown" and be
    /// frozen as a conflict by the resolver. Closed then, the look would compare KCP's balance,
    /// less that cancel, with the record before it: a `conflict` that holds every later cancel of
    /// a payment KCP and the record agree on once that cancel is recorded, or a verdict about the
    /// wrong cancel. Held so, the look and the planning of an API cancel
    /// (service/cancel.rs `Gateway::held_payment`) take turns: the cancel is planned after this
    /// write, or this look is postponed until the cancel is settled.
    ///
    /// True when the finding was written; false when the look was postponed instead.
    async fn conclude_recheck(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        finding: Finding,
    ) -> ServiceResult<bool> {
        let txn = self.db.write.begin().await?;
        let as_read = payments::by_id_held(&txn, payment.id)
            .await?
            .is_some_and(|p| {
                p.cancel_amount == payment.cancel_amount && p.pg_tid == payment.pg_tid
            });
        let written = if as_read && !payments::has_open_cancel(&txn, payment.id).await? {
            match finding.closing() {
                None => self
                    .record_cancellation_in(&txn, payment, attempt.clone(), self.clock.now())
                    .await?
                    .is_some(),
                Some((state, why)) => {
                    let mut a: pg_attempt::ActiveModel = attempt.clone().into();
                    a.state = Set(state.into());
                    a.result_message = Set(Some(why.chars().take(200).collect()));
                    a.updated_at = Set(self.clock.unix());
                    payments::write_held_attempt(&txn, &attempt, a).await?
                }
            }
        } else {
            false
        };
        if written {
            txn.commit().await?;
        } else {
            txn.rollback().await?;
            // The payment moved, or a cancel was opened, between the read and the write (or
            // another holder settled this look): the balance compared is stale, or KCP's is
            // moving, so nothing is concluded from it.
            self.postpone(attempt, "the payment moved meanwhile")
                .await?;
        }
        Ok(written)
    }
}

/// What a second look found at KCP, written only by [`Gateway::conclude_recheck`].
enum Finding {
    /// KCP applied the cancel late: recorded as the cancel.
    Late,
    /// KCP still holds the balance: the look is closed as `failed` (when due; one taken early
    /// by [`Gateway::recheck_before_cancel`] concludes nothing from it).
    NotApplied,
    /// KCP holds something else: the look is closed as a `conflict` for the operator, with its
    /// note.
    Conflict(String),
}

impl Finding {
    /// The state and note the look is closed with; None for a late cancel, which is recorded.
    fn closing(self) -> Option<(&'static str, String)> {
        match self {
            Finding::Late => None,
            Finding::NotApplied => Some(("failed", "still not applied at KCP".into())),
            Finding::Conflict(why) => Some(("conflict", why)),
        }
    }
}

/// What [`Gateway::look`] came to.
enum Look {
    /// A finding, for [`Gateway::conclude_recheck`].
    Found(Finding),
    /// Nothing can be concluded now (why): looked at again later.
    Later(String),
    /// Nothing to look for (why): closed as `failed`.
    Nothing(&'static str),
}
