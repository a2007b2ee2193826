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
        let tno = attempt.tno.clone().ok_or_else(|| {
            ServiceError::Internal(format!("cancel recheck {} without tno", attempt.id))
        })?;
        // A point payment partly cancelled since holds a re-approval: its old tno was cancelled
        // whole by that cancel's STRA, which a late call on the same tno changes nothing to.
        if payment.pg_tid.as_deref() != Some(tno.as_str()) {
            self.close_attempt(
                attempt,
                "failed",
                "nothing to look for: the payment holds another trade now",
            )
            .await?;
            return Ok(());
        }
        // A cancel in flight moves KCP's balance under this look, and one of the same amount
        // would pass for the late one: looked at again once it is settled.
        let open = payments::open_attempts_of(&self.db.write, payment.id).await?;
        if open.iter().any(|a| a.kind == "cancel") {
            self.postpone(attempt, "waits for the cancel in flight")
                .await?;
            return Ok(());
        }
        let remaining = match self.remaining_of(connector, &payment, tno.clone()).await {
            Some(Ok(Some(remaining))) => remaining,
            Some(Ok(None)) => {
                tracing::error!(imp_uid = %payment.imp_uid, %tno, "second look at a cancel: KCP has no such trade; left for the operator");
                let why = "second look: KCP에 거래가 없음".to_string();
                return self
                    .conclude_recheck(payment, attempt, Finding::Closed("conflict", why))
                    .await;
            }
            Some(Err(e)) => {
                self.postpone(attempt, &format!("second look failed: {e}"))
                    .await?;
                return Ok(());
            }
            // A cancel is only concluded "not applied" from an inquiry, so this is not reached.
            None => {
                self.close_attempt(attempt, "failed", "no inquiry for this pay method")
                    .await?;
                return Ok(());
            }
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
                    let why = reapproval_landed(&payment, &tno, remaining, &found);
                    let why = format!("second look: {why}");
                    return self
                        .conclude_recheck(payment, attempt, Finding::Closed("conflict", why))
                        .await;
                }
                Err(e) => {
                    self.postpone(attempt, &format!("second look, re-approval inquiry: {e}"))
                        .await?;
                    return Ok(());
                }
            }
        }
        let balance = payment.balance();
        let finding = if remaining == balance {
            Finding::Closed("failed", "still not applied at KCP".into())
        } else if remaining == balance - attempt.amount {
            tracing::error!(imp_uid = %payment.imp_uid, %tno, amount = attempt.amount, "KCP applied a cancel after it was closed as not applied; recording it");
            Finding::Late
        } else {
            tracing::error!(imp_uid = %payment.imp_uid, %tno, remaining, balance, "second look at a cancel: KCP's balance matches neither outcome; left for the operator");
            Finding::Closed(
                "conflict",
                format!("second look: KCP 잔액 {remaining}, openport 잔액 {balance}"),
            )
        };
        self.conclude_recheck(payment, attempt, finding).await
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
    async fn conclude_recheck(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        finding: Finding,
    ) -> ServiceResult<()> {
        let txn = self.db.write.begin().await?;
        let as_read = payments::by_id_held(&txn, payment.id)
            .await?
            .is_some_and(|p| {
                p.cancel_amount == payment.cancel_amount && p.pg_tid == payment.pg_tid
            });
        let written = if as_read && !payments::has_open_cancel(&txn, payment.id).await? {
            match finding {
                Finding::Late => self
                    .record_cancellation_in(&txn, payment, attempt.clone(), self.clock.now())
                    .await?
                    .is_some(),
                Finding::Closed(state, why) => {
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
        Ok(())
    }
}

/// What a second look found at KCP, written only by [`Gateway::conclude_recheck`].
enum Finding {
    /// KCP applied the cancel late: recorded as the cancel.
    Late,
    /// The look closed as `state` (`failed`: still not applied; `conflict`), with its note.
    Closed(&'static str, String),
}
