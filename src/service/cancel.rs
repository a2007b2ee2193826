//! `POST /payments/cancel`: full and partial cancels (spec/iamport-v1.md §4.2, KCP §2.9); an
//! escrow payment only whole, with `STE2` before its shipping start and `STE4` after (KCP §2.11);
//! a deposited virtual account refunded to the account the merchant names, `STHD` (all that is
//! left) or `STPD` (a part): documented assumption, docs/kcp.md §10.2; a deposited escrow one
//! whole, by its `STE2`/`STE4` carrying that account (docs/kcp.md §9.5a).
//!
//! A unique index allows one open cancel attempt per payment, so concurrent partial cancels are
//! serialised by the database: the balance each one checks is the balance KCP will see. A cancel
//! that meets another in flight waits for it (bounded) and is then planned from the balance it
//! left.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use futures::future::BoxFuture;
use sea_orm::{ColumnTrait, Condition, Set};

use super::resolve::CancelOutcome;
use super::schedules::SCHEDULED_USAGE;
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::checkout::{window_plan, WindowMethod};
use crate::domain::ids::random_hex;
use crate::domain::payment::{plan_cancel, PaymentStatus};
use crate::domain::KST;
use crate::pg::{
    quoted_refusal, CancelConfirmation, CancelKind, CancelRequest, DeclineReason, PgError,
    RefundAccount,
};
use crate::store::entity::{cancellation, merchant, payment, pg_attempt};
use crate::store::{billing, is_unique_violation, payments, WriteTransaction};

#[derive(Debug, Clone, Default)]
pub struct CancelCommand {
    pub imp_uid: Option<String>,
    pub merchant_uid: Option<String>,
    /// None or 0 = the whole remaining balance.
    pub amount: Option<i64>,
    /// The balance the caller believes remains before this cancel.
    pub checksum: Option<i64>,
    pub reason: Option<String>,
    /// The VAT part of this cancel, which KCP is not sent (docs/api.md "Mixed tax"); checked
    /// against the amount the cancel comes to, which for a full cancel only the payment knows.
    pub vat_amount: Option<i64>,
    /// Fire a `cancelled` webhook (iamport sends none for API cancels unless asked).
    pub enable_webhook: bool,
    /// Where a deposited virtual account's money goes back (iamport's `refund_holder`,
    /// `refund_bank`, `refund_account`, all three given): required for such a payment, ignored
    /// for any other. Sent to KCP only, never written (its `Debug` is masked).
    pub refund: Option<RefundAccount>,
    /// Set once the merchant's request is gone (its client gave up and closed the connection;
    /// `api::cancel` sets it when the handler is dropped). The cancel itself runs to its end once
    /// anything is written, but one still waiting for another cancel of its payment gives up:
    /// nothing is written while it waits, and made after its merchant was told nothing, the
    /// merchant's retry of it was made too, refunding the buyer twice.
    pub caller_gone: Arc<AtomicBool>,
}

const NOT_FOUND: &str = "취소할 결제건이 존재하지 않습니다.";
/// A deposited virtual account is refunded at KCP to an account the buyer names (iamport's
/// `refund_holder`, `refund_bank`, `refund_account`; KCP's `STHD`/`STPD`); the card cancel
/// (`STSC`/`STPC`) names no account, so KCP would refuse it or, worse, close the account and keep
/// nowhere to send the money while openport recorded it refunded. Without the account, refused
/// before anything is written.
const VBANK_REFUND_ACCOUNT_MISSING: &str = "입금된 가상계좌는 환불받을 계좌(refund_holder: 예금주, refund_bank: 은행코드, refund_account: 계좌번호)를 함께 보내야 환불할 수 있습니다.";

/// The refusal while another cancel of the payment is in flight: to a cancel that waited
/// [`crate::config::Config::cancel_wait`] for it in vain, or to one whose own attempt another
/// holder took over.
const IN_FLIGHT: &str = "이 결제건에 처리 중인 취소 요청이 있습니다. 잠시 후 다시 시도해 주세요.";

/// The first pause of a cancel waiting for another cancel of its payment
/// ([`Gateway::until_no_open_cancel`]), doubled after each look up to [`CANCEL_POLL_MAX`].
const CANCEL_POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const CANCEL_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// The answer to a cancel whose outcome this request could not learn.
fn cancel_unknown(imp_uid: &str) -> String {
    format!("PG사 취소 응답을 확인하지 못했습니다. 취소 결과는 자동으로 확인됩니다. (imp_uid: {imp_uid})")
}

impl Gateway {
    pub async fn cancel_payment(
        &self,
        m: &merchant::Model,
        cmd: CancelCommand,
    ) -> ServiceResult<PaymentRecord> {
        let mut attempt_written = None;
        let answered = self.cancel_with(m, cmd, &mut attempt_written).await;
        // Once the cancel's attempt is written (and perhaps sent), a database failure is answered
        // as a lost KCP answer, never an HTTP 500 a merchant may read as "not cancelled" and
        // refund by other means.
        Self::unknown_after_db_error(answered, attempt_written.as_deref(), |imp_uid| {
            Err(ServiceError::Refused(cancel_unknown(imp_uid)))
        })
    }

    /// [`Gateway::cancel_payment`]; `attempt_written` is set to the payment's imp_uid once the
    /// cancel's attempt is recorded.
    async fn cancel_with(
        &self,
        m: &merchant::Model,
        cmd: CancelCommand,
        attempt_written: &mut Option<String>,
    ) -> ServiceResult<PaymentRecord> {
        let plan = |p: &payment::Model| {
            if let Some(why) = refund_refusal(p, cmd.refund.is_some()) {
                return Err(ServiceError::Refused(why.into()));
            }
            let status = PaymentStatus::from_db(&p.status);
            plan_cancel(status, p.amount, p.cancel_amount, cmd.amount, cmd.checksum)
                .map_err(|e| {
                    let refusal = e.of_payment(status, &p.pay_method, &p.imp_uid);
                    ServiceError::Refused(refusal.to_string())
                })
                .and_then(|plan| match cmd.vat_amount {
                    Some(vat) if vat > plan.amount => Err(ServiceError::BadRequest(format!(
                        "vat_amount({vat})가 취소금액({})보다 큽니다.",
                        plan.amount
                    ))),
                    _ => Ok(plan),
                })
                .and_then(|plan| match partial_cancel_refusal(p) {
                    Some(why) if !plan.is_full => Err(ServiceError::Refused(why.into())),
                    _ => Ok(plan),
                })
                .and_then(
                    |plan| match dated_cancel_refusal(p, plan.is_full, self.clock.now()) {
                        Some(why) => Err(ServiceError::Refused(why.into())),
                        None => Ok(plan),
                    },
                )
                .and_then(|plan| {
                    // KCP escrow cancels a trade whole (STE2/STE4: spec/kcp.md §2.11); a partial cancel
                    // would also leave the payment unshippable with the rest held at KCP.
                    if !p.escrow {
                        return Ok((plan, None));
                    }
                    if !plan.is_full {
                        return Err(ServiceError::Refused(
                            super::escrow::PARTIAL_CANCEL_REFUSED.into(),
                        ));
                    }
                    Ok((plan, Some(super::escrow::cancel_of(p)?)))
                })
        };
        let reason = cmd.reason.clone().filter(|r| !r.trim().is_empty());
        // Another cancel of the payment in flight is waited for, from the first time this one
        // meets it, up to `cancel_wait`; then everything is looked at again from the start, on
        // the balance that cancel left (a merchant refunding item by item sends its partial
        // cancels at once, and iamport makes them one after the other). Nothing is written while
        // waiting.
        let mut wait_until = None;
        // The second looks at earlier full cancels, taken once the first plan passes, before
        // the cancel's attempt is opened (`Gateway::recheck_before_cancel`); the late cancels
        // they recorded.
        let mut looked = false;
        let mut late = Vec::new();
        let (payment, attempt, connector) = loop {
            let payment = self.payment_to_cancel(m, &cmd).await?;
            let (first_plan, _) = plan(&payment).map_err(|e| recorded_late(e, &late, &payment))?;
            let tno = payment
                .pg_tid
                .clone()
                .ok_or_else(|| ServiceError::Refused(NOT_FOUND.into()))?;
            // Before the attempt: an unusable KCP configuration must not leave an open cancel
            // behind (it would block every cancel of the payment until the resolver closed it).
            let connector = self.connectors.for_merchant(m, &self.secrets)?;
            // An earlier full cancel closed as not applied may have landed at KCP since (its
            // STSC takes whatever is left): asked now, before this one is planned from a balance
            // KCP may no longer hold, and the payment read again if such a look was pending.
            if !looked {
                looked = true;
                if let Some(found) = self
                    .recheck_before_cancel(connector.as_ref(), &payment)
                    .await?
                {
                    late = found;
                    continue;
                }
            }
            if let Some(attempt) = self
                .try_open_cancel_attempt(
                    &payment,
                    &tno,
                    &reason,
                    first_plan.amount,
                    cmd.enable_webhook,
                )
                .await?
            {
                break (payment, attempt, connector);
            }
            let until = *wait_until
                .get_or_insert_with(|| tokio::time::Instant::now() + self.settings.cancel_wait);
            let freed = self
                .until_no_open_cancel(payment.id, until, &cmd.caller_gone)
                .await?;
            if cmd.caller_gone.load(Ordering::SeqCst) {
                tracing::info!(
                    imp_uid = %payment.imp_uid,
                    "a cancel waiting for another of its payment was given up by its caller; not made"
                );
                return Err(ServiceError::Refused(IN_FLIGHT.into()));
            }
            if !freed {
                tracing::warn!(
                    imp_uid = %payment.imp_uid,
                    wait_ms = u64::try_from(self.settings.cancel_wait.as_millis()).unwrap_or(u64::MAX),
                    "another cancel of the payment stayed in flight while this one waited; refused"
                );
                return Err(ServiceError::Refused(IN_FLIGHT.into()));
            }
        };
        *attempt_written = Some(payment.imp_uid.clone());
        // Holding the only open cancel, re-read: another cancel may have completed meanwhile, or
        // a second look be recording a late one ([`Gateway::held_payment`]).
        let payment = self
            .held_payment(payment.id)
            .await?
            .ok_or_else(|| ServiceError::Refused(NOT_FOUND.into()))?;
        if let Some(refusal) = self.conflict_under_slot(&attempt, &payment).await? {
            return Err(refusal);
        }
        let (plan, escrow) = match plan(&payment) {
            Ok(p) => p,
            Err(e) => {
                self.close_attempt(attempt, "failed", "not sent: refused by rules")
                    .await?;
                return Err(e);
            }
        };
        // A partial cancel of points that completed meanwhile re-approved the rest under a new
        // tno (service/benepia.rs): the old one is cancelled at KCP, and "already cancelled" for
        // it would be taken as this cancel's success. Nothing was sent yet, so the attempt names
        // the payment's current tno.
        let tno = payment
            .pg_tid
            .clone()
            .ok_or_else(|| ServiceError::Refused(NOT_FOUND.into()))?;
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.amount = Set(plan.amount);
        a.tno = Set(Some(tno.clone()));
        // The last write before the cancel is sent: its settle delay counts from here.
        a.sent_at = Set(self.clock.unix());
        let Some(attempt) = self.write_held(&attempt, a).await? else {
            // Not this request's any more (it stalled past its lease): nothing was sent to KCP.
            return Err(ServiceError::Refused(IN_FLIGHT.into()));
        };

        let is_point = payment.pay_method == super::benepia::POINT;
        // Points have no STPC: a partial cancel is a re-approval of the rest (service/benepia.rs);
        // a window's point payment never gets here (`partial_cancel_refusal`).
        if is_point && !plan.is_full {
            return self
                .cancel_points_partially(connector.as_ref(), payment, attempt)
                .await;
        }
        // A full cancel of an untouched approval must be STSC (spec/kcp.md §2.9); a point
        // payment's current tno always holds exactly its balance, so its full cancel is STSC too.
        // An escrow payment is cancelled by its escrow status change, always whole. A deposited
        // virtual account is refunded to the account named (the plan refused it without one):
        // STHD for all that is left, STPD for a part; an escrow one by its escrow status change
        // carrying the account (docs/kcp.md §9.5a).
        let refund_to = cmd.refund.clone().filter(|_| holds_deposit(&payment));
        let kind = if let Some(escrow) = escrow {
            match refund_to.clone() {
                Some(to) => CancelKind::EscrowRefund(escrow, to),
                None => CancelKind::Escrow(escrow),
            }
        } else if let Some(to) = refund_to.clone() {
            if plan.is_full {
                CancelKind::Refund(to)
            } else {
                CancelKind::PartialRefund {
                    amount: plan.amount,
                    balance_before: plan.balance_before,
                    to,
                }
            }
        } else if plan.is_full && (payment.cancel_amount == 0 || is_point) {
            CancelKind::Full
        } else {
            CancelKind::Partial {
                amount: plan.amount,
                balance_before: plan.balance_before,
            }
        };
        let kcp_reason: String = reason
            .clone()
            .unwrap_or_else(|| "가맹점 요청 취소".into())
            .chars()
            .take(50)
            .collect();
        let request = CancelRequest {
            tno,
            kind,
            reason: kcp_reason,
        };
        let attempt_id = attempt.id;
        // Refused as escrow, the whole trade is cancelled as a plain one instead
        // (`Gateway::cancel_at_kcp`): STSC, or for a deposited account STHD to the same account
        // (a bare STSC names none: KCP would refuse it, or close the account with nowhere to
        // send the money).
        let plain = CancelRequest {
            kind: plain_cancel_of(&request.kind),
            ..request.clone()
        };
        let escrow = matches!(
            request.kind,
            CancelKind::Escrow(_) | CancelKind::EscrowRefund(..)
        );
        let sent = self
            .cancel_at_kcp(attempt, escrow, |call| match call {
                CancelCall::Planned => connector.cancel(&request),
                CancelCall::Plain => connector.cancel(&plain),
            })
            .await?;
        let Some(CancelSent { attempt, answer }) = sent else {
            // Taken over before the plain cancel (this request stalled past its lease): nothing
            // was applied (KCP refused the escrow cancel), and what the other holder decided is
            // the answer.
            return self
                .answer_cancel(&payment, self.cancel_decided(attempt_id).await?)
                .await;
        };
        let outcome = match answer {
            // A success for other amounts than sent: KCP is asked what it holds before anything
            // is recorded (`cancel_answered_otherwise`).
            Ok(conf) if !conf.as_asked(&request.kind) => {
                self.cancel_answered_otherwise(connector.as_ref(), payment.clone(), attempt, &conf)
                    .await?
            }
            Ok(conf) => {
                self.record_confirmed_cancel(payment.clone(), attempt, conf.cancelled_at)
                    .await?
            }
            Err(PgError::Declined {
                code,
                message,
                reason: DeclineReason::AlreadyCancelled,
            }) => {
                // KCP holds it cancelled while openport holds a balance: cancelled in KCP's admin,
                // or an earlier cancel landed after openport concluded it had not. Failing here
                // would leave it `paid` for good (every later cancel refused the same way), and a
                // merchant refunding by other means would refund twice: KCP's inquiry decides.
                tracing::warn!(imp_uid = %payment.imp_uid, %code, "KCP says already cancelled while openport holds a balance; inquiring");
                match self
                    .mark_unknown(attempt, &quoted_refusal(&code, &message))
                    .await?
                {
                    Some(attempt) => {
                        self.resolve_cancel(connector.as_ref(), payment.clone(), attempt)
                            .await?
                    }
                    None => self.cancel_decided(attempt_id).await?,
                }
            }
            Err(PgError::NotSent(msg)) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "KCP unreachable, cancel not sent: {msg}");
                if !self.close_attempt(attempt, "failed", "not sent").await? {
                    return self
                        .answer_cancel(&payment, self.cancel_decided(attempt_id).await?)
                        .await;
                }
                return Err(ServiceError::Refused(super::pay::NOT_SENT.into()));
            }
            // The refusal stands unless KCP's balance shows otherwise, or it says KCP has no such
            // trade: a conflict for the operator (`refused_cancel`).
            Err(PgError::Declined {
                code,
                message,
                reason,
            }) => {
                self.refused_cancel(
                    connector.as_ref(),
                    payment.clone(),
                    attempt,
                    &code,
                    &message,
                    reason,
                )
                .await?
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "cancel outcome unknown: {e}");
                match self.mark_unknown(attempt, &e.to_string()).await? {
                    Some(attempt) => {
                        self.resolve_cancel(connector.as_ref(), payment.clone(), attempt)
                            .await?
                    }
                    None => self.cancel_decided(attempt_id).await?,
                }
            }
        };
        self.answer_cancel(&payment, outcome).await
    }

    /// How a cancel's outcome is answered: the payment once applied, a refusal otherwise.
    async fn answer_cancel(
        &self,
        payment: &payment::Model,
        outcome: CancelOutcome,
    ) -> ServiceResult<PaymentRecord> {
        match outcome {
            CancelOutcome::Applied(p) => self.payment_record(*p).await,
            CancelOutcome::NotApplied(why) => Err(ServiceError::Refused(format!(
                "결제취소에 실패하였습니다.({why})"
            ))),
            CancelOutcome::Unknown => Err(self
                .unknown_cancel_refusal(payment, cancel_unknown(&payment.imp_uid))
                .await?),
            CancelOutcome::Conflict(attempt_id) => Err(ServiceError::Refused(format!(
                "PG사에서는 취소되었으나 결제 기록과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {}, attempt {attempt_id})",
                payment.imp_uid
            ))),
            CancelOutcome::Disputed(attempt_id) => Err(conflict_refusal(payment, attempt_id)),
            CancelOutcome::Reconciled(attempt_id) => Err(reconciled_refusal(payment, attempt_id)),
        }
    }

    /// The answer to a cancel (or revocation) whose outcome this request could not learn:
    /// `unsettled`, which says the resolver will find it out, unless the attempt was closed as a
    /// conflict meanwhile (KCP's inquiry contradicted the record: service/resolve.rs
    /// `resolve_cancel`). Only an operator settles that one, and the payment takes no cancel
    /// until then: the answer says so, as a later cancel's refusal does ([`conflict_refusal`]).
    pub(crate) async fn unknown_cancel_refusal(
        &self,
        payment: &payment::Model,
        unsettled: String,
    ) -> ServiceResult<ServiceError> {
        Ok(
            match payments::unreconciled_conflict(&self.db.write, payment.id).await? {
                Some(conflict) => conflict_refusal(payment, conflict.id),
                None => ServiceError::Refused(unsettled),
            },
        )
    }

    /// Asked again of the writer by the holder of `payment`'s one open cancel slot (a cancel or
    /// a revocation), before anything is sent: the call that held the slot before may have closed
    /// as a conflict after the first look (a read that can also lag the writer). With one, the
    /// held `attempt` is closed unsent and the refusal naming the conflict is returned.
    pub(crate) async fn conflict_under_slot(
        &self,
        attempt: &pg_attempt::Model,
        payment: &payment::Model,
    ) -> ServiceResult<Option<ServiceError>> {
        let Some(conflict) = payments::unreconciled_conflict(&self.db.write, payment.id).await?
        else {
            return Ok(None);
        };
        self.close_attempt(
            attempt.clone(),
            "failed",
            "not sent: a conflict awaits the operator",
        )
        .await?;
        Ok(Some(conflict_refusal(payment, conflict.id)))
    }

    /// Payment `id`, re-read by the holder of its one open cancel attempt, holding its row
    /// (`payments::by_id_held`). A second look at an earlier cancel records what it found in a
    /// transaction that holds the row and makes sure no cancel is open
    /// (service/cancel_recheck.rs): one that looked before this cancel's attempt was written and
    /// records after it is waited for here, so this cancel is planned from the balance that look
    /// leaves, which is the one KCP holds. Read without the row, the plan could be the balance
    /// before it: KCP's confirmation of a full cancel then failed the record's compare-and-set,
    /// was answered "unknown", and the resolver froze the payment as a conflict.
    pub(crate) async fn held_payment(&self, id: i64) -> ServiceResult<Option<payment::Model>> {
        let txn = self.db.write.begin().await?;
        let payment = payments::by_id_held(&txn, id).await?;
        txn.commit().await?;
        Ok(payment)
    }

    /// The payment `cmd` names, for a cancel: imp_uid wins over merchant_uid, and an unknown
    /// imp_uid fails even with a valid merchant_uid. Refused while KCP holds something else than
    /// its record (a cancel or a point re-approval closed as a conflict): a cancel planned from
    /// the record could act on a cancelled tno, be told "already cancelled" and record money back
    /// that KCP still holds.
    async fn payment_to_cancel(
        &self,
        m: &merchant::Model,
        cmd: &CancelCommand,
    ) -> ServiceResult<payment::Model> {
        let found = match (&cmd.imp_uid, &cmd.merchant_uid) {
            (Some(imp), _) => payments::by_imp_uid(&self.db.read, Some(m.id), imp).await?,
            (None, Some(uid)) => payments::live_by_merchant_uid(&self.db.read, m.id, uid).await?,
            (None, None) => {
                return Err(ServiceError::BadRequest(
                    "imp_uid 또는 merchant_uid 파라메터가 누락되었습니다.".into(),
                ))
            }
        };
        let payment = found.ok_or_else(|| ServiceError::Refused(NOT_FOUND.into()))?;
        if let Some(conflict) = payments::unreconciled_conflict(&self.db.read, payment.id).await? {
            return Err(conflict_refusal(&payment, conflict.id));
        }
        Ok(payment)
    }

    /// Waits until payment `payment_id` has no cancel in flight (its one open `cancel` attempt
    /// closed), or until `until`, or until `caller_gone` is set: true once none is open, false
    /// when one still is at `until` or the caller left.
    /// Polls the database, so a cancel made by another instance is waited for as one made here,
    /// every [`CANCEL_POLL_FIRST`] doubling to [`CANCEL_POLL_MAX`]: a cancel at KCP ends in well
    /// under a second, and a wait for one stuck longer (a lost answer being inquired) should not
    /// cost its database many reads. Reads only.
    async fn until_no_open_cancel(
        &self,
        payment_id: i64,
        until: tokio::time::Instant,
        caller_gone: &AtomicBool,
    ) -> ServiceResult<bool> {
        let mut pause = CANCEL_POLL_FIRST;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until || caller_gone.load(Ordering::SeqCst) {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(CANCEL_POLL_MAX);
            if !payments::has_open_cancel(&self.db.read, payment_id).await? {
                return Ok(true);
            }
        }
    }

    /// Commits the payment's cancel attempt (pending, held by this request) before KCP is called.
    /// The unique index allows one open cancel per payment: a second one is refused while the
    /// first is in flight. `notify`: the merchant asked for a `cancelled` webhook, which whoever
    /// settles the cancel then sends.
    pub(crate) async fn open_cancel_attempt(
        &self,
        p: &payment::Model,
        tno: &str,
        reason: &Option<String>,
        amount: i64,
        notify: bool,
    ) -> ServiceResult<pg_attempt::Model> {
        self.try_open_cancel_attempt(p, tno, reason, amount, notify)
            .await?
            .ok_or_else(|| ServiceError::Refused(IN_FLIGHT.into()))
    }

    /// [`Self::open_cancel_attempt`]; None while another cancel of the payment is in flight.
    async fn try_open_cancel_attempt(
        &self,
        p: &payment::Model,
        tno: &str,
        reason: &Option<String>,
        amount: i64,
        notify: bool,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        self.refuse_while_skewed()?;
        let now = self.clock.unix();
        let inserted = payments::insert_attempt(
            &self.db.write,
            pg_attempt::ActiveModel {
                payment_id: Set(p.id),
                tno: Set(Some(tno.to_string())),
                reason: Set(reason.clone()),
                next_check_at: Set(now + self.settings.settle_secs),
                lease_until: Set(self.lease_from(now)),
                notify: Set(notify),
                // The planned amount from the start: a crash before the re-check below must not
                // leave an open attempt the resolver would read as a 0-won cancel.
                ..super::attempts::new_attempt("cancel", p.order_no.clone(), amount, now)
            },
        )
        .await;
        match inserted {
            Ok(a) => Ok(Some(a)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The cancellation row, the payment's cumulative cancel_amount, the attempt and (when the
    /// merchant asked, `attempt.notify`) the `cancelled` webhook, in one transaction. Only while
    /// this holder still holds the attempt open and the payment's cancelled amount is the one read
    /// with it; otherwise nothing is written (None): another holder recorded it, once.
    pub(crate) async fn record_cancellation(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        at: DateTime<Utc>,
    ) -> ServiceResult<Option<payment::Model>> {
        let txn = self.db.write.begin().await?;
        let recorded = self
            .record_cancellation_in(&txn, payment, attempt, at)
            .await?;
        if recorded.is_some() {
            txn.commit().await?;
        } else {
            txn.rollback().await?;
        }
        Ok(recorded)
    }

    /// [`Self::record_cancellation`] in the transaction `txn`, which its caller commits when a
    /// payment is returned and rolls back otherwise.
    pub(crate) async fn record_cancellation_in(
        &self,
        txn: &WriteTransaction,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        at: DateTime<Utc>,
    ) -> ServiceResult<Option<payment::Model>> {
        let now = self.clock.unix();
        let at = at.timestamp();
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("succeeded".into());
        a.result_code = Set(Some("0000".into()));
        a.updated_at = Set(now);
        if !payments::write_held_attempt(txn, &attempt, a).await? {
            return Ok(None);
        }
        let cancellation = payments::insert_cancellation(
            txn,
            cancellation::ActiveModel {
                payment_id: Set(payment.id),
                cancellation_id: Set(random_hex(12)),
                pg_tid: Set(attempt
                    .tno
                    .clone()
                    .or(payment.pg_tid.clone())
                    .unwrap_or_default()),
                amount: Set(attempt.amount),
                reason: Set(attempt.reason.clone()),
                cancelled_at: Set(at),
                ..Default::default()
            },
        )
        .await?;
        let read_cancel_amount = payment.cancel_amount;
        let mut p: payment::ActiveModel = payment.into();
        p.cancel_amount = Set(read_cancel_amount + attempt.amount);
        p.status = Set(PaymentStatus::Cancelled.as_db().into());
        p.cancelled_at = Set(Some(at));
        p.cancel_reason = Set(attempt.reason.clone());
        p.updated_at = Set(now);
        let unchanged = Condition::all().add(payment::Column::CancelAmount.eq(read_cancel_amount));
        let Some(p) = payments::update_payment_if(txn, p, unchanged).await? else {
            return Ok(None);
        };
        // A schedule shows its payment's status (spec §4.4: paid / failed / cancelled).
        if p.customer_uid_usage.as_deref() == Some(SCHEDULED_USAGE) {
            billing::schedule_payment_cancelled(txn, p.merchant_id, &p.imp_uid, now).await?;
        }
        // API cancels notify only when asked (`enable_webhook`, spec §5).
        if attempt.notify {
            self.enqueue_webhook(txn, &p, "cancelled", Some(&cancellation.cancellation_id))
                .await?;
        }
        Ok(Some(p))
    }

    /// A cancel (or revocation) KCP confirmed to this holder, recorded. When its lease ran out
    /// during the call and another holder (the resolver) holds the attempt open, it is taken over
    /// and recorded all the same: that holder can only be inquiring, and an answer given before
    /// KCP applied the cancel would close it "not applied" over a cancel KCP made
    /// ([`Gateway::take_over_confirmed`]). Closed by another holder already: never answered "not
    /// applied" either ([`Gateway::confirmed_cancel_decided`]).
    pub(crate) async fn record_confirmed_cancel(
        &self,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        at: DateTime<Utc>,
    ) -> ServiceResult<CancelOutcome> {
        let attempt_id = attempt.id;
        if let Some(p) = self
            .record_cancellation(payment.clone(), attempt.clone(), at)
            .await?
        {
            return Ok(CancelOutcome::Applied(Box::new(p)));
        }
        if let Some(taken) = self.take_over_confirmed(&attempt).await? {
            if let Some(p) = self.record_cancellation(payment, taken, at).await? {
                return Ok(CancelOutcome::Applied(Box::new(p)));
            }
        }
        self.confirmed_cancel_decided(attempt_id).await
    }
}

/// Which cancel [`Gateway::cancel_at_kcp`] has its caller send to KCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelCall {
    /// The cancel as planned: `STSC`/`STPC`, or an escrow payment's escrow status change.
    Planned,
    /// The plain cancel of the whole trade, once KCP refused the planned escrow cancel: `STSC`,
    /// or for a deposited escrow virtual account `STHD` to the account its escrow refund named
    /// ([`plain_cancel_of`]).
    Plain,
}

/// The plain (not escrow) cancel of the whole trade sent after KCP refused the escrow cancel
/// `kind` (`Gateway::cancel_at_kcp`): a deposited account's refund `STHD` to the same account,
/// since a bare `STSC` cannot refund a deposit (KCP refuses it, or closes the account with
/// nowhere to send the money: docs/kcp.md §10.2); any other trade's `STSC`.
fn plain_cancel_of(kind: &CancelKind) -> CancelKind {
    match kind {
        CancelKind::EscrowRefund(_, to) => CancelKind::Refund(to.clone()),
        _ => CancelKind::Full,
    }
}

/// KCP's answer to the last cancel [`Gateway::cancel_at_kcp`] sent, with the attempt as its
/// holder holds it then (renewed when a second call was sent).
pub(crate) struct CancelSent {
    pub attempt: pg_attempt::Model,
    pub answer: Result<CancelConfirmation, PgError>,
}

impl Gateway {
    /// Sends the cancel held under `attempt` (`send(CancelCall::Planned)`); when it is an escrow
    /// status change (`escrow`) that KCP refused, other than as already cancelled, sends the plain
    /// cancel after it (`send(CancelCall::Plain)`: `STSC`, or a deposited account's `STHD` to the
    /// account the escrow refund named, [`plain_cancel_of`]), once. KCP approves a trade asked for
    /// as escrow as a plain one when the merchant has no escrow contract and then refuses its
    /// escrow status change; and the escrow mod_types on the REST cancel are a documented
    /// assumption (docs/kcp.md §9.5). A refusal applied nothing, so the second call risks nothing;
    /// an unknown outcome of the first is answered as such, never followed by a second. Refused
    /// both ways, the escrow refusal is the answer: the one that says why (the trade is escrow, so
    /// the plain cancel was bound to be refused).
    ///
    /// The plain cancel is a further KCP call with an effect on a lease that covers two
    /// (service/attempts.rs), after a first call that may have taken a whole KCP timeout: the
    /// attempt is renewed before it and is not due for the resolver before a settle delay after
    /// it ([`Self::renew_before_settling_call`]). Left due a settle delay after its creation, a
    /// resolver could inquire while KCP was still applying the plain cancel, find the trade as it
    /// was, and record the cancel as not made while KCP then made it; so could this request's own
    /// inquiry after a lost answer to it, were the settle delay counted from the attempt's creation
    /// rather than from the plain cancel (`sent_at`, set by the renewal). None: the renewal found
    /// the attempt no longer this holder's (it stalled past its lease), and the plain cancel was
    /// not sent; KCP applied nothing, and the caller answers what the other holder decided.
    ///
    /// Every cancel the service sends goes through here: `POST /payments/cancel`, a
    /// revocation (service/vbanks.rs) and a net-cancel (`pay::net_cancel_at_kcp`).
    pub(crate) async fn cancel_at_kcp<'c>(
        &self,
        attempt: pg_attempt::Model,
        escrow: bool,
        send: impl Fn(CancelCall) -> BoxFuture<'c, Result<CancelConfirmation, PgError>>,
    ) -> ServiceResult<Option<CancelSent>> {
        let attempt_id = attempt.id;
        let refused = match send(CancelCall::Planned).await {
            // Not when KCP says the trade is cancelled already, nor when it says the account
            // holds deposits: a plain close of an account holding the buyer's money would keep it
            // nowhere (review r1: an escrow account's revocation met a deposit whose notice had
            // not arrived, and its STE5 refusal was followed by an STSC).
            Err(refused @ PgError::Declined { .. })
                if escrow
                    && !matches!(
                        refused,
                        PgError::Declined {
                            reason: DeclineReason::AlreadyCancelled | DeclineReason::HoldsDeposits,
                            ..
                        }
                    ) =>
            {
                refused
            }
            answer => return Ok(Some(CancelSent { attempt, answer })),
        };
        tracing::warn!(attempt_id, "KCP refused the escrow cancel ({refused}); sending the plain cancel (STSC, or a deposit's STHD), as for a trade KCP holds as a plain one");
        let Some(attempt) = self.renew_before_settling_call(attempt).await? else {
            tracing::warn!(
                attempt_id,
                "the cancel attempt was taken over before its plain cancel; not sent"
            );
            return Ok(None);
        };
        let answer = match send(CancelCall::Plain).await {
            Err(PgError::Declined { .. }) => Err(refused),
            other => other,
        };
        Ok(Some(CancelSent { attempt, answer }))
    }
}

/// Whether `p` is a virtual account holding money: paid (its `paid_at` set; a `ready` one is
/// revoked, not refunded), with something left to refund. One refunded in full already (in
/// KCP's admin, recorded from KCP's TX01 notice) is answered `이미 전액취소된 주문입니다.` by the
/// plan, as iamport does (spec/iamport-v1.md §2), so a merchant's refund job retrying it reads it
/// as done instead of being asked for a refund account.
fn holds_deposit(p: &payment::Model) -> bool {
    p.pay_method == super::vbanks::VBANK
        && PaymentStatus::from_db(&p.status) != PaymentStatus::Ready
        && p.paid_at.is_some_and(|t| t > 0)
        && p.balance() > 0
}

/// Why a cancel of `p` cannot be sent as a refund, if it cannot: a virtual account holding money,
/// escrow or not, is refunded only to an account the merchant names (`refund_named`). Checked on
/// each read of the payment (a deposit may land between them).
fn refund_refusal(p: &payment::Model, refund_named: bool) -> Option<&'static str> {
    (holds_deposit(p) && !refund_named).then_some(VBANK_REFUND_ACCOUNT_MISSING)
}

/// Why KCP takes no partial cancel of `p`, if it takes none: refused before anything is sent.
/// - A card approval KCP answered `partcanc_yn N` (spec §2.4): KCP would refuse the `STPC` with
///   a code of its own, and the merchant would read a PG error instead of the reason.
/// - A point payment made in KCP's window (`TPNT`) is not a Benepia hub payment, whose partial
///   cancel is a re-approval (`STRA`, seed 003 §2.4): nothing documents that call, or `STPC`, for
///   the window's point trades.
/// - A phone payment (`PAMC`) or a gift certificate (`PATK`): carriers refund no part of a phone
///   bill's charge, and nothing in spec/kcp.md or the seeds documents a partial cancel of either
///   (KCP shops document whole cancels only; gnuboard5 offers KCP partial cancels for cards and
///   bank transfers alone).
fn partial_cancel_refusal(p: &payment::Model) -> Option<&'static str> {
    if p.partial_cancel_allowed == Some(false) {
        return Some(PARTIAL_CANCEL_NOT_ALLOWED);
    }
    if super::benepia::is_window_point_payment(p) {
        return Some(super::benepia::WINDOW_PARTIAL_CANCEL_REFUSED);
    }
    if matches!(
        window_method(p),
        Some(WindowMethod::Phone | WindowMethod::GiftCertificate)
    ) {
        return Some(PHONE_OR_GIFT_PARTIAL_CANCEL_REFUSED);
    }
    None
}

/// The window method a payment was made with, from its iamport `pay_method` (phone, the gift
/// certificates, …); None for one no window opens.
fn window_method(p: &payment::Model) -> Option<WindowMethod> {
    window_plan(&p.pay_method, false).map(|plan| plan.method)
}

/// The refusal of a partial cancel of a phone or gift-certificate payment.
const PHONE_OR_GIFT_PARTIAL_CANCEL_REFUSED: &str =
    "휴대폰/상품권 결제는 부분취소할 수 없습니다. 전액취소만 가능합니다.";

/// Why KCP takes no such cancel of `p` at `now`, by the payment's KST date, if it takes none:
/// refused before anything is sent, saying why, where KCP's refusal would read as an opaque PG
/// error.
/// - A phone payment: a carrier bills it with the month's phone bill and refunds it only within
///   the month it was paid in, so KCP refuses any cancel after it (a carrier rule, not in
///   spec/kcp.md; docs/api.md, cancel).
/// - A partial cancel of a bank transfer on its payment date: KCP's own integrations refuse it
///   until the next day (gnuboard5's KCP partial cancel: "실시간 계좌이체건의 부분취소 요청은
///   결제일 익일에 가능합니다"); docs/kcp.md §9.6.
fn dated_cancel_refusal(
    p: &payment::Model,
    is_full: bool,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    let method = window_method(p)?;
    let paid_at = DateTime::from_timestamp(p.paid_at.filter(|t| *t > 0)?, 0)?;
    let (paid_on, today) = (
        paid_at.with_timezone(&KST).date_naive(),
        now.with_timezone(&KST).date_naive(),
    );
    match method {
        WindowMethod::Phone
            if (paid_on.year(), paid_on.month()) != (today.year(), today.month()) =>
        {
            Some(PHONE_CANCEL_AFTER_ITS_MONTH)
        }
        // Sent as STPC: part of the balance, or the rest after a partial cancel (an escrow
        // payment takes none: its own refusal says so).
        WindowMethod::Bank
            if (!is_full || p.cancel_amount > 0) && !p.escrow && paid_on == today =>
        {
            Some(BANK_PARTIAL_CANCEL_SAME_DAY)
        }
        _ => None,
    }
}

/// The refusal of a partial cancel of a bank transfer on its payment date (KST).
const BANK_PARTIAL_CANCEL_SAME_DAY: &str = "실시간 계좌이체 부분취소는 결제일 익일부터 가능합니다.";

/// The refusal of a cancel of a phone payment after the month it was paid in (KST).
const PHONE_CANCEL_AFTER_ITS_MONTH: &str = "휴대폰 결제는 결제한 달에만 취소할 수 있습니다. 결제한 달이 지난 건은 통신사 정책상 PG사(KCP)에서 취소되지 않습니다.";

/// The refusal of a partial cancel of an approval KCP marked `partcanc_yn N`.
const PARTIAL_CANCEL_NOT_ALLOWED: &str =
    "PG사(KCP)에서 부분취소가 불가능한 결제건입니다. 전액취소만 가능합니다.";

/// `refusal` of a cancel of `payment`, saying first which earlier cancels closed as not applied
/// were found applied at KCP and recorded just before it was planned (`late`: attempt ids and
/// amounts; `Gateway::recheck_before_cancel`): the merchant had been told they were not, and a
/// bare "이미 전액취소된 주문입니다." would not say the money went back by one of them.
fn recorded_late(
    refusal: ServiceError,
    late: &[(i64, i64)],
    payment: &payment::Model,
) -> ServiceError {
    let ServiceError::Refused(why) = refusal else {
        return refusal;
    };
    if late.is_empty() {
        return ServiceError::Refused(why);
    }
    let amounts: Vec<String> = late
        .iter()
        .map(|(attempt, amount)| format!("{amount}원, attempt {attempt}"))
        .collect();
    ServiceError::Refused(format!(
        "{why} {LATE_CANCEL_RECORDED} (imp_uid: {}, {})",
        payment.imp_uid,
        amounts.join("; ")
    ))
}

/// What the answer to a cancel adds when a look before it found an earlier cancel applied late
/// ([`recorded_late`]).
pub const LATE_CANCEL_RECORDED: &str = "앞서 PG사에서 취소되지 않은 것으로 안내된 취소가 PG사에 늦게 반영되어 방금 결제건에 기록되었습니다. 결제건 조회(cancel_amount, cancel_history)로 확인해 주세요.";

/// The refusal of a cancel while KCP holds something else than the payment's record (attempt
/// `conflict_id`, closed as a conflict and not reconciled yet); also the answer to the cancel
/// whose attempt that is, when nobody knows whether KCP applied it (`CancelOutcome::Disputed`).
pub(crate) fn conflict_refusal(payment: &payment::Model, conflict_id: i64) -> ServiceError {
    ServiceError::Refused(format!(
        "이 결제건은 PG사 내역과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {}, attempt {conflict_id})",
        payment.imp_uid
    ))
}

/// The answer to a cancel whose attempt (`attempt_id`) was closed as a conflict and reconciled by
/// an operator before its request could answer (`CancelOutcome::Reconciled`): the payment's record
/// agrees with KCP again and is what the merchant reads; "cancelled" could be false, "not
/// cancelled" could lead to a second refund by other means.
pub(crate) fn reconciled_refusal(payment: &payment::Model, attempt_id: i64) -> ServiceError {
    ServiceError::Refused(format!(
        "운영자가 PG사 내역과 대조하여 정리한 취소 요청입니다. 취소 반영 여부는 결제건 조회(cancel_amount, cancel_history)로 확인해 주세요. (imp_uid: {}, attempt {attempt_id})",
        payment.imp_uid
    ))
}
