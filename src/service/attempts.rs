//! Who may settle a KCP attempt: one holder at a time, and the database decides who.
//!
//! The request that calls KCP holds its attempt from the moment the attempt is inserted (its
//! `lease_until` is set then), through its own follow-up of an unknown outcome (the inquiry, a
//! net-cancel), until it records the outcome or lets go (`lease_until = 0`, the outcome still
//! open). Only then, or once that lease has run out, can the resolver or a merchant's retry of the
//! merchant_uid claim it (`payments::claim_attempt`). Without this, a request still inquiring
//! after a lost answer and the resolver could settle one approval two ways: the request honouring
//! it (paid, merchant told "paid") while the resolver net-cancelled it at KCP.
//!
//! - **Token.** The lease value a holder wrote is its token: a claim always writes a later one
//!   than the lease it replaces. Every write on an attempt, and every outcome recorded with it, is
//!   conditional on the attempt being still open and still held with that token
//!   (`payments::update_held_attempt`, `payments::conclude_charge`). A write that finds 0 rows
//!   means another holder decided: nothing is written, and the answer is read back from what the
//!   database says ([`Gateway::approval_decided`], [`Gateway::cancel_decided`]), never guessed.
//!   A holder with something from KCP in hand does not simply adopt it: an approval the payment
//!   does not hold is net-cancelled (service/orphans.rs), and a cancel KCP confirmed that another
//!   holder closed as not applied becomes a conflict ([`Gateway::confirmed_cancel_decided`]).
//! - **A confirmation outranks an inquiry.** A holder to whom KCP confirmed a call with an effect
//!   (a cancel, a net-cancel, a point cancel's `STRA`) and whose write finds the attempt still
//!   open but held by another holder takes it over ([`Gateway::take_over_confirmed`]) and records
//!   what KCP confirmed. The other holder can only be inquiring, and its answer may predate the
//!   call: left to it, "not applied" would be written over a cancel KCP made, and the
//!   confirmation, once answered "unknown", would be lost.
//! - **Lease length.** A lease covers two KCP calls and a margin (`Config::attempt_hold`), and a
//!   holder renews it ([`Gateway::renew`]) before every further KCP call with an effect (a cancel,
//!   a net-cancel, a point re-approval), so a holder is not taken over in the middle of a call.
//!   The same write records the call as the attempt's last (`sent_at`), from which the settle
//!   delay counts (`Gateway::settled`): a call sent late is not taken for settled early. The
//!   renewal is also the check that the holder still holds an open attempt: a holder whose record
//!   of an approval failed but actually committed (a connection lost after `COMMIT`) finds the
//!   attempt closed and answers "paid" instead of net-cancelling it.
use sea_orm::{ColumnTrait, Condition, Set};

use super::inquiry::TradeInquiry;
use super::merchants::runs_in_mode;
use super::pay::ApprovalOutcome;
use super::resolve::CancelOutcome;
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::pg::{DeclineReason, TradeRef, TradeState};
use crate::store::entity::{payment, pg_attempt};
use crate::store::{payments, webhooks};

/// What an operator found in KCP's admin of an approval (or a paid-into account) that its conflict
/// holds pending ([`Gateway::mark_reconciled`]). Checked against KCP's inquiry by the approval's
/// `tno` first: an answer that contradicts it is refused unless the operator overrides it (the
/// `…DespiteKcp` twins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconciledPayment {
    /// Cancelled (or refunded) there, by the operator or otherwise: nothing is charged. Refused
    /// when KCP's inquiry shows the approval still standing (the buyer would stay charged while
    /// the merchant_uid is free to be charged again): see [`Self::FailedDespiteKcp`].
    Failed,
    /// [`Self::Failed`], though KCP's inquiry shows the approval standing: the operator checked
    /// KCP's admin and holds the inquiry wrong.
    FailedDespiteKcp,
    /// Kept there, for the payment's amount: the buyer paid. Refused when KCP's inquiry by the
    /// approval's `tno` says otherwise (cancelled, no such trade, or standing for another amount
    /// than the payment's, e.g. partly cancelled): see [`Self::PaidDespiteKcp`].
    Paid,
    /// [`Self::Paid`], though KCP's inquiry says otherwise: the operator checked KCP's admin and
    /// holds the inquiry wrong.
    PaidDespiteKcp,
}

impl ReconciledPayment {
    /// Whether the operator found the payment paid (kept in KCP's admin).
    fn paid(self) -> bool {
        matches!(self, Self::Paid | Self::PaidDespiteKcp)
    }

    /// Whether the operator overrides KCP's inquiry.
    fn despite_kcp(self) -> bool {
        matches!(self, Self::FailedDespiteKcp | Self::PaidDespiteKcp)
    }
}

/// The `paid_at` given to a payment an operator found kept in KCP's admin
/// ([`ReconciledPayment::Paid`]), and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconciledPaidAt {
    /// Unix seconds.
    pub at: i64,
    pub source: PaidAtSource,
}

/// What [`Gateway::reconcile_conflict`] recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// The payment's `paid_at`, when the operator found it paid ([`ReconciledPayment::Paid`]).
    pub paid_at: Option<ReconciledPaidAt>,
    /// Why the operator's verdict on a held payment was not checked against KCP's inquiry (a
    /// merchant of the other mode, KCP did not answer…): it was recorded on the operator's word
    /// alone, which the operator must be told. None when KCP was asked, or no verdict was given.
    pub unchecked: Option<&'static str>,
}

/// Where [`ReconciledPaidAt`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidAtSource {
    /// KCP's approval time (`app_time`), from its inquiry by the attempt's `tno`.
    KcpApproval,
    /// KCP reported none (a virtual account's inquiry has no deposit time; KCP not reachable, or
    /// no longer showing the approval): the time openport found KCP holding the approval or the
    /// deposit, when the attempt became a conflict. The payment was paid by then.
    ConflictRecorded,
}

/// What KCP's inquiry by an approval's `tno` says of the approval an operator reconciled
/// ([`Gateway::mark_reconciled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KcpAnswer {
    /// Standing, approved at `at` (Unix seconds), `remaining` won of it not cancelled (less than
    /// the approval's amount once partly cancelled at KCP).
    Approved { at: i64, remaining: i64 },
    /// Not standing: the text says what KCP answered (cancelled, or no such trade).
    Gone(&'static str),
    /// Not asked: the merchant is of the other mode than this instance ([`runs_in_mode`]), whose
    /// KCP (the real one, or the sandbox) is not this instance's to ask. Unlike [`Self::Unknown`]
    /// it is a configuration mistake the operator can mend (the command run from a shell of the
    /// other mode): a verdict on it needs `…DespiteKcp`.
    OtherMode,
    /// Nothing to go by, the text says why: no inquiry to ask (a virtual account, no `tno`), KCP
    /// did not answer, or it answered about another trade.
    Unknown(&'static str),
}

impl KcpAnswer {
    /// What KCP answered, when it contradicts an operator who found the approval kept for
    /// `amount` (`paid`: KCP must hold exactly that) or cancelled (KCP must hold nothing).
    fn contradicting(self, paid: bool, amount: i64) -> Option<String> {
        match self {
            Self::Unknown(_) | Self::OtherMode => None,
            Self::Gone(answer) => paid.then(|| answer.to_string()),
            Self::Approved { remaining, .. } if paid && remaining != amount => {
                let partly = if remaining < amount {
                    " (partly cancelled at KCP)"
                } else {
                    ""
                };
                Some(format!(
                    "the approval stands for {remaining} won, not the payment's {amount} won{partly}"
                ))
            }
            Self::Approved { remaining, .. } if !paid && remaining > 0 => Some(format!(
                "the approval stands, {remaining} won of it not cancelled"
            )),
            Self::Approved { .. } => None,
        }
    }
}

/// [`Reconciled::unchecked`] for a merchant of the other mode ([`KcpAnswer::OtherMode`]).
const OTHER_MODE: &str =
    "the merchant is of the other mode than this command's OPENPORT_TEST_MODE, and its KCP is not asked from here";

/// The fail reason of a payment whose approval an operator found cancelled in KCP's admin.
const CANCELLED_BY_OPERATOR: &str =
    "PG사에 남아 있던 승인(입금)이 취소(환불)되었음을 운영자가 확인하여 결제 실패로 처리되었습니다.";

/// A new attempt of `kind` for KCP order number `order_no` and `amount`, written at `now`:
/// pending, nothing tried, due at once, held by nobody. Each call site sets what differs: its
/// payment (unless the statement that inserts both does), the tno, a reason, a hold, a later
/// first check.
pub fn new_attempt(kind: &str, order_no: String, amount: i64, now: i64) -> pg_attempt::ActiveModel {
    pg_attempt::ActiveModel {
        kind: Set(kind.into()),
        state: Set("pending".into()),
        order_no: Set(order_no),
        tno: Set(None),
        amount: Set(amount),
        reason: Set(None),
        result_code: Set(None),
        result_message: Set(None),
        tries: Set(0),
        next_check_at: Set(now),
        lease_until: Set(0),
        created_at: Set(now),
        // The call is made right after the insert; a later one moves it (`Gateway::renew`).
        sent_at: Set(now),
        updated_at: Set(now),
        notify: Set(false),
        absent_order_no: Set(None),
        unsent: Set(false),
        ..Default::default()
    }
}

/// What [`Gateway::confirm_absent_at_kcp`] is for, said in each of its refusals.
const CONFIRM_ABSENT_IS_FOR: &str = "confirm-absent settles approvals (card, point and virtual-account issuance) and an older version's owed point re-approval (reapprove_pending) only";

/// Whether an operator's word that KCP's admin holds nothing under an order number settles the
/// open `attempt` of `payment` ([`Gateway::confirm_absent_at_kcp`]); the refusal says what to use
/// instead. Only the attempts whose settling reads that word (`absence_is_final`): an approval
/// (one being net-cancelled by its tno too) and an older version's owed point re-approval. Any
/// other would only be resolved ahead of its time, and the word dropped: a second look
/// (`absence_recheck`, `cancel_recheck`) ran at once and closed, its hour for a late approval or
/// cancel gone (a late approval never net-cancelled while the merchant, told its merchant_uid was
/// free, charged again); a net-cancel's `STSC` sent again at once; a cancel asked about early. A
/// billing-key issuance reads it too, but KCP has no inquiry for one: it would stay open.
fn absence_settles(attempt: &pg_attempt::Model, payment: &payment::Model) -> ServiceResult<()> {
    let id = attempt.id;
    let kind = attempt.kind.as_str();
    let refusal = match kind {
        "approve"
            if payment.customer_uid_usage.as_deref() == Some(super::resolve::ISSUE_USAGE) =>
        {
            format!(
                "attempt {id} is a billing-key issuance: KCP has no inquiry for one, so this word would settle nothing; look for a key issued to that card in KCP's admin, delete it there, then run `attempt fail --id {id} --order-no {} --none-at-kcp`",
                attempt.order_no
            )
        }
        "approve" => return Ok(()),
        _ if Gateway::owes_legacy_reapproval(payment, attempt) => return Ok(()),
        super::resolve::ABSENCE_RECHECK | super::cancel_recheck::KIND => format!(
            "attempt {id} is a {kind}: a second look, due by itself, which needs nothing (run now it could no longer catch what KCP applies late); {CONFIRM_ABSENT_IS_FOR}"
        ),
        super::orphans::KIND => format!(
            "attempt {id} is a {kind}: the resolver sends it again until KCP answers (one KCP keeps failing takes `attempt conflict`); {CONFIRM_ABSENT_IS_FOR}"
        ),
        _ => format!(
            "attempt {id} is a {kind}: the resolver settles it by KCP's balance (one its inquiries cannot settle takes `attempt conflict`); {CONFIRM_ABSENT_IS_FOR}"
        ),
    };
    Err(ServiceError::BadRequest(refusal))
}

impl Gateway {
    /// The lease a holder writes at `now`: on a new attempt, a claim, or a renewal.
    pub(crate) fn lease_from(&self, now: i64) -> i64 {
        now + self.settings.lease_secs
    }

    /// Claims attempt `id` if nobody holds it (see `payments::claim_attempt`); the attempt as
    /// claimed, its `lease_until` being this holder's token. None while this host's clock is off
    /// the database's.
    pub(crate) async fn claim(&self, id: i64) -> ServiceResult<Option<pg_attempt::Model>> {
        // Judged by a clock that is off, another holder's lease could look run out
        // (service/clock_check.rs): attempts are left to instances whose clocks agree.
        if self.clock_is_skewed() {
            return Ok(None);
        }
        let now = self.clock.unix();
        if !payments::claim_attempt(&self.db.write, id, now, self.lease_from(now)).await? {
            return Ok(None);
        }
        Ok(payments::attempt_by_id(&self.db.write, id).await?)
    }

    /// Extends the lease on an attempt this holder holds, before a KCP call with an effect, and
    /// records that call as the attempt's last (`sent_at`) in the same write: durable before the
    /// call, as the attempt itself is, so the settle delay counts from it ([`Gateway::settled`]).
    /// None: the attempt is no longer this holder's to act on (settled, or taken over), so the
    /// call must not be made.
    pub(crate) async fn renew(
        &self,
        held: pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let a = self.renewed(&held);
        self.write_held(&held, a).await
    }

    /// [`Self::renew`] just before a scheduled run's approval call, ending the attempt's `unsent`
    /// in the same write: until it commits, whoever claims the attempt knows the call was never
    /// made (service/schedules.rs `Gateway::settle_unsent_charge`), and once anyone else has
    /// claimed it this write finds nothing and the call is not made. An error is returned, never
    /// followed by the call: the write may have committed (its answer lost), and then the attempt
    /// only reads "may have been sent", which is settled by inquiry as before.
    pub(crate) async fn mark_sending(
        &self,
        held: pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a = self.renewed(&held);
        a.unsent = Set(false);
        self.write_held(&held, a).await
    }

    /// Extends the lease only, for a holder that sends nothing more to KCP under it (an approval's
    /// record tried again): `sent_at` stays the call's, so the settle delay is not pushed back.
    /// None as for [`Self::renew`].
    pub(crate) async fn extend_lease(
        &self,
        held: pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a: pg_attempt::ActiveModel = held.clone().into();
        a.lease_until = Set(self.lease_from(self.clock.unix()).max(held.lease_until));
        self.write_held(&held, a).await
    }

    /// [`Self::renew`] before a call whose absence at KCP will later be read as "not done" (a
    /// point re-approval, looked for by its order number), or that must not be sent again while
    /// KCP may still be applying it (the net-cancel of an approval no payment holds,
    /// service/orphans.rs): the resolver does not look at the attempt again before a settle delay
    /// after this call (`next_check_at`, which [`Gateway::postpone`] never brings forward). Being
    /// settled (`sent_at`, set by the renewal) is not enough here: the call can come long after
    /// the attempt's creation (a re-approval sent by the resolver once the cancel before it was
    /// settled), and the attempt, due since, would be claimed and a second one sent while the
    /// first is still on its way, which could be applied too.
    pub(crate) async fn renew_before_settling_call(
        &self,
        held: pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a = self.renewed(&held);
        a.next_check_at = Set(self.clock.unix() + self.settings.settle_secs);
        self.write_held(&held, a).await
    }

    /// `held` with its lease extended from now (never shortened) and a call sent now
    /// (`sent_at`), before which it is written.
    fn renewed(&self, held: &pg_attempt::Model) -> pg_attempt::ActiveModel {
        let now = self.clock.unix();
        let lease = self.lease_from(now).max(held.lease_until);
        let mut a: pg_attempt::ActiveModel = held.clone().into();
        a.lease_until = Set(lease);
        a.sent_at = Set(now);
        a
    }

    /// [`Self::renew`] before a net-cancel of the approval `tno`, naming it on the attempt in the
    /// same write: should this holder die during the cancel, the resolver inquires (and cancels)
    /// that trade by its `tno`, KCP's documented form, instead of by order number, which is not
    /// trusted against real KCP (`absence_is_final`).
    ///
    /// In that same write the attempt is not due again before a settle delay after this STSC, as
    /// [`Self::renew_before_settling_call`] has it: KCP may still be applying the STSC when its
    /// holder dies (or its answer is lost), and a second one sent meanwhile could be refused with
    /// another code than "already cancelled", which reads as "the approval stands" (a conflict
    /// over a trade KCP cancels). Due as it was (the settle delay counted from the attempt's
    /// creation, long past when the resolver itself net-cancels), it was claimed again as soon as
    /// this holder's lease ran out (91 s with the default timeouts, under the 120 s settle delay).
    pub(crate) async fn renew_naming(
        &self,
        held: pg_attempt::Model,
        tno: &str,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a = self.renewed(&held);
        a.tno = Set(Some(tno.to_string()));
        a.next_check_at = Set(self.clock.unix() + self.settings.settle_secs);
        self.write_held(&held, a).await
    }

    /// Marks the attempt's outcome unknown and lets go of it, for the resolver to claim once it is
    /// due (`next_check_at` unchanged). None when another holder settled it meanwhile.
    pub(crate) async fn let_go(
        &self,
        held: pg_attempt::Model,
        why: &str,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let mut a: pg_attempt::ActiveModel = held.clone().into();
        a.state = Set("unknown".into());
        a.lease_until = Set(0);
        a.result_message = Set(Some(why.chars().take(200).collect()));
        a.updated_at = Set(self.clock.unix());
        self.write_held(&held, a).await
    }

    /// Writes `changes` onto the attempt `held` if this holder still holds it open; None when
    /// another holder decided it meanwhile (then nothing was written).
    pub(crate) async fn write_held(
        &self,
        held: &pg_attempt::Model,
        changes: pg_attempt::ActiveModel,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        let written = payments::update_held_attempt(&self.db.write, held, changes).await?;
        if written.is_none() {
            tracing::warn!(
                attempt_id = held.id,
                "attempt settled or taken over by another holder; its decision stands"
            );
        }
        Ok(written)
    }

    /// Takes the open attempt `held` over from whoever holds it now, for a holder to whom KCP
    /// confirmed its call after its lease ran out (module doc): the attempt as this holder then
    /// holds it, or None when it is closed, or moved on to another order number (a point cancel
    /// whose re-approval another holder owes), and nothing is taken. No clock check, unlike
    /// [`Self::claim`]: nothing is judged by this host's clock, the new lease is always later than
    /// the one it replaces.
    pub(crate) async fn take_over_confirmed(
        &self,
        held: &pg_attempt::Model,
    ) -> ServiceResult<Option<pg_attempt::Model>> {
        // Two holders with a confirmation each may race; a few tries settle who wins.
        for _ in 0..3 {
            let Some(current) = payments::attempt_by_id(&self.db.write, held.id).await? else {
                return Ok(None);
            };
            if !payments::OPEN_STATES.contains(&current.state.as_str())
                || current.order_no != held.order_no
            {
                return Ok(None);
            }
            let lease = self
                .lease_from(self.clock.unix())
                .max(current.lease_until + 1);
            if payments::take_over_attempt(&self.db.write, &current, &held.order_no, lease).await? {
                tracing::warn!(
                    attempt_id = held.id,
                    "KCP confirmed the call to a holder whose lease ran out: it takes the attempt over"
                );
                return Ok(Some(pg_attempt::Model {
                    lease_until: lease,
                    ..current
                }));
            }
        }
        Ok(None)
    }

    /// The outcome of an approval attempt as the database has it: for a holder whose write found
    /// that someone else decided. Still pending → unknown (the other holder is still at it), or a
    /// conflict when it is held pending for an operator (`Gateway::hold_as_conflict`).
    pub(crate) async fn approval_decided(&self, payment_id: i64) -> ServiceResult<ApprovalOutcome> {
        let p = payments::by_id(&self.db.write, payment_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
        Ok(match PaymentStatus::from_db(&p.status) {
            PaymentStatus::Pending if self.held_by_conflict(&p).await? => {
                ApprovalOutcome::Conflict(p)
            }
            PaymentStatus::Pending => ApprovalOutcome::Unknown(p),
            PaymentStatus::Failed => {
                let message = p.fail_reason.clone().unwrap_or_default();
                ApprovalOutcome::Declined {
                    payment: p,
                    reason: DeclineReason::Other,
                    message,
                }
            }
            // Paid (and perhaps cancelled since), or a virtual account issued (ready).
            PaymentStatus::Paid | PaymentStatus::Cancelled | PaymentStatus::Ready => {
                ApprovalOutcome::Paid(p)
            }
        })
    }

    /// The outcome this holder wrote, or what was decided instead when its write found the
    /// attempt settled by someone else (`written` None).
    pub(crate) async fn written_or_decided(
        &self,
        payment_id: i64,
        written: Option<payment::Model>,
        outcome: impl FnOnce(payment::Model) -> ApprovalOutcome,
    ) -> ServiceResult<ApprovalOutcome> {
        match written {
            Some(p) => Ok(outcome(p)),
            None => self.approval_decided(payment_id).await,
        }
    }

    /// The outcome of a cancel attempt as the database has it, for a holder whose write found
    /// that someone else decided. A `conflict` is [`CancelOutcome::Disputed`], never "not
    /// applied": the holder that closed it found KCP disagreeing with the record (a balance that
    /// matches neither outcome, no such trade), so KCP may well hold this cancel applied, and a
    /// merchant told "결제취소에 실패" might refund the buyer by other means while KCP refunded
    /// too. `reconciled` (an operator settled that conflict since) is
    /// [`CancelOutcome::Reconciled`]: the payment's record now agrees with KCP, so the merchant is
    /// pointed at it rather than told one way or the other.
    pub(crate) async fn cancel_decided(&self, attempt_id: i64) -> ServiceResult<CancelOutcome> {
        let a = payments::attempt_by_id(&self.db.write, attempt_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("attempt vanished".into()))?;
        Ok(match a.state.as_str() {
            "succeeded" => {
                let p = payments::by_id(&self.db.write, a.payment_id)
                    .await?
                    .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
                CancelOutcome::Applied(Box::new(p))
            }
            "pending" | "unknown" => CancelOutcome::Unknown,
            "conflict" => CancelOutcome::Disputed(a.id),
            "reconciled" => CancelOutcome::Reconciled(a.id),
            _ => CancelOutcome::NotApplied(
                a.result_message
                    .unwrap_or_else(|| "PG사에서 취소되지 않음".into()),
            ),
        })
    }

    /// [`Self::cancel_decided`] for a holder to whom KCP confirmed the cancel: when another holder
    /// closed the attempt as not applied (its inquiry ran before KCP applied the cancel), the
    /// database holds a balance KCP no longer does. The attempt becomes a `conflict` for an
    /// operator (the payment takes no API cancel until it is reconciled), and the merchant is
    /// told that KCP cancelled it, never "not cancelled".
    pub(crate) async fn confirmed_cancel_decided(
        &self,
        attempt_id: i64,
    ) -> ServiceResult<CancelOutcome> {
        let decided = match self.cancel_decided(attempt_id).await? {
            CancelOutcome::NotApplied(_) => None,
            // Closed as a conflict already: this holder knows what the other did not, that KCP
            // applied the cancel.
            CancelOutcome::Disputed(id) => Some(CancelOutcome::Conflict(id)),
            other => Some(other),
        };
        if let Some(decided) = decided {
            return Ok(decided);
        }
        let note =
            "KCP confirmed this cancel after the attempt was closed as not applied: reconcile";
        let now = self.clock.unix();
        if payments::restate_closed_attempt(
            &self.db.write,
            attempt_id,
            "failed",
            "conflict",
            note,
            now,
        )
        .await?
        {
            tracing::error!(
                attempt_id,
                "KCP applied a cancel recorded as not applied; closed as a conflict for an operator"
            );
        }
        match self.cancel_decided(attempt_id).await? {
            CancelOutcome::NotApplied(_) | CancelOutcome::Disputed(_) => {
                Ok(CancelOutcome::Conflict(attempt_id))
            }
            other => Ok(other),
        }
    }
}

/// An open attempt as an operator sees it (`openport attempt list`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpenAttempt {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub imp_uid: String,
    pub merchant_uid: String,
    /// The order number KCP knows the call by (`ordr_idxx`): what to search KCP's admin for.
    pub order_no: String,
    pub tno: Option<String>,
    pub amount: i64,
    pub created_at: i64,
    pub tries: i32,
    pub result_message: Option<String>,
}

impl Gateway {
    /// Open attempts, oldest first: the ones an operator may have to settle (an approval lost
    /// before KCP named its `tno`, where an inquiry by order number is not trusted).
    pub async fn open_attempts(&self, limit: u64) -> ServiceResult<Vec<OpenAttempt>> {
        let attempts = payments::open_attempts(&self.db.read, limit).await?;
        self.described(attempts).await
    }

    /// Attempts closed as `conflict` and not reconciled yet, oldest first: their payments take no
    /// API cancel until an operator reconciles them ([`Self::mark_reconciled`]).
    pub async fn conflict_attempts(&self, limit: u64) -> ServiceResult<Vec<OpenAttempt>> {
        let attempts = payments::conflict_attempts(&self.db.read, limit).await?;
        self.described(attempts).await
    }

    /// Attempts with their payments' imp_uid and merchant_uid, as an operator lists them.
    async fn described(&self, attempts: Vec<pg_attempt::Model>) -> ServiceResult<Vec<OpenAttempt>> {
        let mut out = Vec::new();
        for a in attempts {
            let p = payments::by_id(&self.db.read, a.payment_id)
                .await?
                .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
            out.push(OpenAttempt {
                id: a.id,
                kind: a.kind,
                state: a.state,
                imp_uid: p.imp_uid,
                merchant_uid: p.merchant_uid,
                order_no: a.order_no,
                tno: a.tno,
                amount: a.amount,
                created_at: a.created_at,
                tries: a.tries,
                result_message: a.result_message,
            });
        }
        Ok(out)
    }

    /// An operator reconciled a `conflict` attempt with KCP's admin (and the payment's record, by
    /// hand where needed): the payment takes API cancels again. `note` says what was done.
    ///
    /// An approval's conflict that holds its payment pending (KCP holds an approval or a paid-into
    /// account openport could neither record nor cancel: `Gateway::hold_as_conflict`) needs the
    /// operator's word on what KCP's admin shows, `payment`, and settles the payment with the
    /// attempt in one transaction ([`Self::settle_held_conflict`]); anything else takes none.
    /// A payment recorded paid so answers when it was paid. The operator's word is first checked
    /// against KCP's inquiry by the approval's `tno` ([`Self::kcp_answer`]), and one it
    /// contradicts is refused with nothing written ([`KcpAnswer::contradicting`]): paid while KCP
    /// shows the approval cancelled, no such trade, or standing for another amount than the
    /// payment's (partly cancelled there; the payment would be paid, with its `paid` webhook, for
    /// money KCP does not hold), failed while KCP shows it standing (the merchant_uid would be
    /// free to be charged again while the buyer stays charged: a double charge). The operator may
    /// override it (`…DespiteKcp`), which is logged and kept in the attempt's note. KCP not
    /// answering changes nothing: the operator's word stands, and the operator is told so
    /// ([`Reconciled::unchecked`], also logged and kept in the note). A merchant of the other mode
    /// than this instance is not asked at all ([`KcpAnswer::OtherMode`]): its verdict is refused
    /// unless overridden, since that is the operator's shell lacking the instances' configuration
    /// (OPENPORT_TEST_MODE), and the cross-check is what guards against a double charge.
    pub async fn reconcile_conflict(
        &self,
        id: i64,
        note: &str,
        payment: Option<ReconciledPayment>,
    ) -> ServiceResult<Reconciled> {
        let not_a_conflict = || ServiceError::BadRequest(format!("attempt {id} is not a conflict"));
        let attempt = payments::attempt_by_id(&self.db.write, id)
            .await?
            .filter(|a| a.state == "conflict")
            .ok_or_else(not_a_conflict)?;
        let held = payments::by_id(&self.db.write, attempt.payment_id)
            .await?
            .filter(|p| {
                attempt.kind == "approve"
                    && PaymentStatus::from_db(&p.status) == PaymentStatus::Pending
            });
        let note = format!("reconciled by operator: {note}");
        match (held, payment) {
            (Some(held), Some(outcome)) => {
                let paid = outcome.paid();
                let answer = self.kcp_answer(&attempt, &held).await;
                if answer == KcpAnswer::OtherMode && !outcome.despite_kcp() {
                    return Err(ServiceError::Refused(self.other_mode_refused(&attempt)));
                }
                let unchecked = match answer {
                    KcpAnswer::OtherMode => Some(OTHER_MODE),
                    KcpAnswer::Unknown(why) => Some(why),
                    KcpAnswer::Approved { .. } | KcpAnswer::Gone(_) => None,
                };
                let note = match unchecked {
                    Some(why) => {
                        tracing::warn!(attempt_id = id, "the operator's verdict on the approval's payment is not checked against KCP ({why}): recorded on the operator's word");
                        format!("{note} (not checked against KCP: {why}; recorded on the operator's word)")
                    }
                    None => note,
                };
                let note = match answer.contradicting(paid, held.amount) {
                    None => note,
                    Some(said) if !outcome.despite_kcp() => {
                        return Err(ServiceError::Refused(Self::reconcile_refused(
                            &attempt, &held, paid, &said,
                        )));
                    }
                    Some(said) => {
                        let recorded = if paid { "paid" } else { "failed" };
                        tracing::warn!(attempt_id = id, tno = attempt.tno.as_deref().unwrap_or("-"), "KCP's inquiry answers that {said}, though the operator reconciled the approval's payment as {recorded} from KCP's admin (--despite-kcp): check KCP's admin again");
                        format!("{note} (recorded {recorded} despite KCP's inquiry: {said})")
                    }
                };
                let paid_at = paid.then(|| {
                    let approved_at = match answer {
                        KcpAnswer::Approved { at, .. } => Some(at),
                        KcpAnswer::Gone(_) | KcpAnswer::Unknown(_) | KcpAnswer::OtherMode => None,
                    };
                    self.held_paid_at(&attempt, approved_at)
                });
                let paid_at = self
                    .settle_held_conflict(&attempt, held, paid_at, &note)
                    .await?;
                return Ok(Reconciled { paid_at, unchecked });
            }
            (Some(held), None) => {
                return Err(ServiceError::BadRequest(format!(
                    "attempt {id} holds payment {} pending (KCP's approval {}): say what KCP's admin shows with --payment failed (cancelled or refunded there) or --payment paid (kept there for the payment's amount)",
                    held.imp_uid,
                    attempt.tno.as_deref().unwrap_or("-")
                )));
            }
            (None, Some(_)) => {
                return Err(ServiceError::BadRequest(format!(
                    "attempt {id} holds no payment pending: --payment applies only to an approval's conflict whose payment is still pending (ready)"
                )));
            }
            (None, None) => {}
        }
        if !payments::restate_closed_attempt(
            &self.db.write,
            id,
            "conflict",
            "reconciled",
            &note,
            self.clock.unix(),
        )
        .await?
        {
            return Err(not_a_conflict());
        }
        tracing::warn!(attempt_id = id, "operator reconciled a conflict attempt");
        Ok(Reconciled {
            paid_at: None,
            unchecked: None,
        })
    }

    /// [`Self::reconcile_conflict`], for a caller that needs only the `paid_at` it recorded.
    pub async fn mark_reconciled(
        &self,
        id: i64,
        note: &str,
        payment: Option<ReconciledPayment>,
    ) -> ServiceResult<Option<ReconciledPaidAt>> {
        Ok(self.reconcile_conflict(id, note, payment).await?.paid_at)
    }

    /// The refusal of [`Self::reconcile_conflict`] of `attempt`, whose merchant is of the other
    /// mode than this instance ([`KcpAnswer::OtherMode`]): KCP not asked, nothing changed.
    fn other_mode_refused(&self, attempt: &pg_attempt::Model) -> String {
        let (id, tno) = (attempt.id, attempt.tno.as_deref().unwrap_or("-"));
        let (merchant_is, command_is) = if self.settings.test_mode {
            (
                "a live merchant",
                "in test mode (OPENPORT_TEST_MODE unset or true)",
            )
        } else {
            (
                "a merchant made in test mode",
                "with OPENPORT_TEST_MODE=false",
            )
        };
        format!(
            "attempt {id} not reconciled, nothing changed: its payment's merchant is {merchant_is} and this command runs {command_is}, so KCP's inquiry by its tno {tno}, which checks your word against KCP, is not asked from here. Run the command with the configuration of the instances serving the merchant; or, having checked the tno in KCP's admin, run again with --despite-kcp (recorded on your word alone)"
        )
    }

    /// [`Self::mark_reconciled`] of an approval's conflict that holds payment `held` pending: the
    /// attempt `reconciled` and the payment as the operator found it in KCP's admin, in one
    /// transaction, each conditional on what was read (the attempt still a conflict, the payment
    /// still pending). Failed (no `paid_at`): the merchant_uid is free again and a scheduled
    /// charge's `failed` webhook goes out. Paid: recorded paid at `paid_at` ([`Self::held_paid_at`],
    /// decided before, KCP asked included), with its `paid` webhook, and a key-in charge's card
    /// becomes the customer's. A scheduled charge's schedule shows the outcome at once
    /// (`finish_resolved_schedule`).
    async fn settle_held_conflict(
        &self,
        attempt: &pg_attempt::Model,
        held: payment::Model,
        paid_at: Option<ReconciledPaidAt>,
        note: &str,
    ) -> ServiceResult<Option<ReconciledPaidAt>> {
        let id = attempt.id;
        let paid = paid_at.is_some();
        let now = self.clock.unix();
        let mut p: payment::ActiveModel = held.clone().into();
        p.updated_at = Set(now);
        let webhooks = if paid {
            p.status = Set(PaymentStatus::Paid.as_db().into());
            p.paid_at = Set(paid_at.map(|p| p.at));
            p.fail_reason = Set(None);
            self.webhooks_announcing(&held, "paid").await?
        } else {
            p.status = Set(PaymentStatus::Failed.as_db().into());
            p.failed_at = Set(Some(now));
            p.fail_reason = Set(Some(CANCELLED_BY_OPERATOR.into()));
            self.failure_webhooks(&held).await?
        };
        let txn = self.db.write.begin().await?;
        let pending =
            Condition::all().add(payment::Column::Status.eq(PaymentStatus::Pending.as_db()));
        let restated =
            payments::restate_closed_attempt(&txn, id, "conflict", "reconciled", note, now).await?;
        let settled = if restated {
            payments::update_payment_if(&txn, p, pending).await?
        } else {
            None
        };
        let Some(settled) = settled else {
            txn.rollback().await?;
            return Err(ServiceError::Refused(format!(
                "attempt {id} or its payment was settled otherwise meanwhile"
            )));
        };
        for webhook in webhooks {
            webhooks::insert_delivery(&txn, webhook).await?;
        }
        txn.commit().await?;
        tracing::warn!(attempt_id = id, imp_uid = %settled.imp_uid, status = %settled.status, "operator reconciled an approval's conflict and settled its payment");
        let decided = if paid {
            self.adopt_kept_card(&settled).await;
            ApprovalOutcome::Paid(settled)
        } else {
            ApprovalOutcome::Declined {
                message: CANCELLED_BY_OPERATOR.into(),
                payment: settled,
                reason: DeclineReason::Other,
            }
        };
        self.finish_resolved_schedule(&decided).await;
        Ok(paid_at)
    }

    /// The refusal of [`Self::mark_reconciled`] of `attempt`, which holds `held` pending, as
    /// `paid` (or failed) while KCP's inquiry answers `said`: what KCP answered, why it matters and
    /// the way out, for the operator.
    fn reconcile_refused(
        attempt: &pg_attempt::Model,
        held: &payment::Model,
        paid: bool,
        said: &str,
    ) -> String {
        let (id, amount) = (attempt.id, held.amount);
        let tno = attempt.tno.as_deref().unwrap_or("-");
        let (claim, way_out) = if paid {
            (
                format!("--payment paid says KCP keeps it for the payment's amount ({amount} won): the payment would be recorded paid, and the merchant ship, for money KCP does not hold"),
                format!("Look the tno up in KCP's admin: cancelled there, or once you have cancelled what is left of it there, reconcile with --payment failed; kept there for the payment's amount ({amount} won), run again with --despite-kcp"),
            )
        } else {
            (
                "--payment failed says it is cancelled: the merchant_uid would be free to be charged again while the buyer stays charged for this one".to_string(),
                "Cancel the approval in KCP's admin first, then run again; cancelled there already (the inquiry is wrong), run again with --despite-kcp".to_string(),
            )
        };
        format!(
            "attempt {id} not reconciled, nothing changed: KCP's inquiry by its tno {tno} answers that {said}, though {claim}. {way_out}"
        )
    }

    /// When the payment that `attempt` (an approval's conflict) holds was paid: when KCP approved
    /// it, `kcp` (KCP's inquiry by the attempt's `tno`, its `app_time`: [`Self::kcp_answer`]).
    /// KCP's answer is believed only up to the time the attempt became a conflict: openport had
    /// KCP's `tno` then, so the approval came before (a time after it is no approval time, e.g.
    /// the current time the connector puts in for an answer without a readable `app_time`).
    /// Without it, that time: the payment was paid by then, and the approval (or a virtual
    /// account's deposit, whose inquiry tells no time) is usually just before
    /// (docs/operations.md "Unknown outcomes"). Never the time of the operator's command, which
    /// may come days later and moved the payment across settlement days.
    fn held_paid_at(&self, attempt: &pg_attempt::Model, kcp: Option<i64>) -> ReconciledPaidAt {
        let recorded = attempt.updated_at;
        match kcp {
            Some(at) if at <= recorded => ReconciledPaidAt {
                at,
                source: PaidAtSource::KcpApproval,
            },
            kcp => {
                if let Some(at) = kcp {
                    tracing::warn!(attempt_id = attempt.id, kcp_time = at, recorded, "KCP's approval time is after the conflict was recorded: the conflict's time is taken");
                }
                ReconciledPaidAt {
                    at: recorded,
                    source: PaidAtSource::ConflictRecorded,
                }
            }
        }
    }

    /// What KCP says of the trade `attempt` names, asked by `tno` with the inquiry of `held`'s
    /// method: [`KcpAnswer::OtherMode`] for a merchant of the other mode, [`KcpAnswer::Unknown`]
    /// when there is none to ask (a virtual account, no `tno`), KCP does not answer (logged), or it
    /// answers about another trade (logged).
    async fn kcp_answer(&self, attempt: &pg_attempt::Model, held: &payment::Model) -> KcpAnswer {
        let Some(tno) = attempt.tno.as_deref() else {
            return KcpAnswer::Unknown("the attempt has no KCP tno to ask by");
        };
        let Some(inquiry) = TradeInquiry::of(&held.pay_method) else {
            return KcpAnswer::Unknown("openport has no KCP inquiry for the payment's method");
        };
        let Ok(merchant) = self.merchant(held.merchant_id).await else {
            return KcpAnswer::Unknown("the payment's merchant could not be read");
        };
        if !runs_in_mode(self.settings.test_mode, &merchant) {
            return KcpAnswer::OtherMode;
        }
        let Ok(connector) = self.connectors.for_merchant(&merchant, &self.secrets) else {
            return KcpAnswer::Unknown("the merchant's KCP credentials could not be loaded");
        };
        let trade = TradeRef::Tno(tno.to_string());
        match inquiry.ask(connector.as_ref(), &trade).await {
            Ok(TradeState::Approved {
                approval,
                remaining,
            }) if approval.tno.is_empty() || approval.tno == tno => KcpAnswer::Approved {
                at: approval.approved_at.timestamp(),
                remaining,
            },
            Ok(TradeState::Approved { .. }) => {
                tracing::warn!(attempt_id = attempt.id, %tno, "KCP's inquiry answered another trade: it is not taken as this approval's");
                KcpAnswer::Unknown("KCP's inquiry answered about another trade")
            }
            Ok(TradeState::Cancelled { .. }) => KcpAnswer::Gone("the approval is cancelled"),
            Ok(TradeState::NotFound) => KcpAnswer::Gone("KCP has no such trade"),
            Err(e) => {
                tracing::warn!(attempt_id = attempt.id, %tno, "KCP could not be asked about the approval: {e}");
                KcpAnswer::Unknown("KCP did not answer its inquiry")
            }
        }
    }

    /// Whether an operator may turn the open `attempt` into a conflict
    /// ([`Self::mark_conflict_by_hand`]); the refusal says why not.
    fn conflictable_by_hand(&self, attempt: &pg_attempt::Model) -> ServiceResult<()> {
        let id = attempt.id;
        if !payments::OPEN_STATES.contains(&attempt.state.as_str()) {
            return Err(ServiceError::BadRequest(format!(
                "attempt {id} is {}: it is settled already",
                attempt.state
            )));
        }
        // An approval's payment is pending until the attempt decides it: a conflict would leave
        // it so for good. It has its own commands.
        if attempt.kind == "approve" {
            return Err(ServiceError::BadRequest(format!(
                "attempt {id} is an approval: settle it with `attempt confirm-absent` or `attempt fail`"
            )));
        }
        // KCP may still be working on a call younger than the settle delay: what its admin shows
        // now could change under the operator's comparison.
        if !self.settled(attempt) {
            return Err(ServiceError::Refused(format!(
                "attempt {id} is younger than the settle delay ({} s): KCP may still be working on the call, try again later",
                self.settings.settle_secs
            )));
        }
        Ok(())
    }

    /// The operator's way out for an open attempt that inquiry cannot settle: a cancel (or a
    /// revocation, a net-cancel, a second look) whose inquiries KCP keeps refusing or garbling, or
    /// whose method has none, stays open for ever, and an open cancel blocks every API cancel of
    /// its payment (one open cancel per payment). It becomes a `conflict` with the operator's
    /// `note`, as one the resolver could not settle would: the payment takes no API cancel until
    /// the operator has put KCP's admin and the record in agreement and marked it reconciled
    /// ([`Self::mark_reconciled`]). Refused for an approval, a settled attempt, one younger than
    /// the settle delay, or one a request or the resolver holds right now (checked again once
    /// claimed).
    pub async fn mark_conflict_by_hand(&self, id: i64, note: &str) -> ServiceResult<()> {
        if note.trim().is_empty() {
            return Err(ServiceError::BadRequest(
                "--note must say what was found".into(),
            ));
        }
        let attempt = payments::attempt_by_id(&self.db.read, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("attempt {id} does not exist")))?;
        self.conflictable_by_hand(&attempt)?;
        let Some(held) = self.claim(id).await? else {
            return Err(ServiceError::Refused(format!(
                "attempt {id} is settled or held by a request or the resolver right now"
            )));
        };
        if let Err(e) = self.conflictable_by_hand(&held) {
            let mut a: pg_attempt::ActiveModel = held.clone().into();
            a.lease_until = Set(0);
            self.write_held(&held, a).await?;
            return Err(e);
        }
        let why = format!("marked a conflict by operator: {note}");
        if !self.close_attempt(held, "conflict", &why).await? {
            return Err(ServiceError::Refused(format!(
                "attempt {id} was settled otherwise meanwhile"
            )));
        }
        tracing::warn!(
            attempt_id = id,
            "operator turned an open attempt into a conflict"
        );
        Ok(())
    }

    /// An operator looked in KCP's admin and found no trade under `order_no`, the order number
    /// the open attempt `id` waits for: recorded on the attempt, which is then resolved at once
    /// with that word (`absence_is_final`) where it used to stay open against real KCP: an
    /// approval or an account issuance fails, a Benepia re-approval (`STRA`) whose answer was
    /// lost is sent again. Refused for every other kind ([`absence_settles`]), before the claim
    /// and again once claimed. The word covers that order number only, never a later one of the
    /// same attempt. Returns the attempt as it stands afterwards: still open (`pending`,
    /// `unknown`) while KCP's inquiry fails or before the settle delay, the word kept.
    pub async fn confirm_absent_at_kcp(
        &self,
        id: i64,
        order_no: &str,
    ) -> ServiceResult<pg_attempt::Model> {
        let attempt = payments::attempt_by_id(&self.db.read, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("attempt {id} does not exist")))?;
        let wrong_order = |waits_for: &str| {
            ServiceError::BadRequest(format!(
                "attempt {id} waits for order number {waits_for}, not {order_no}: look that one up in KCP's admin"
            ))
        };
        if !payments::OPEN_STATES.contains(&attempt.state.as_str()) {
            return Err(ServiceError::BadRequest(format!(
                "attempt {id} is {}: it is settled already",
                attempt.state
            )));
        }
        absence_settles(&attempt, &self.payment_of_attempt(&attempt).await?)?;
        if attempt.order_no != order_no {
            return Err(wrong_order(&attempt.order_no));
        }
        let Some(held) = self.claim(id).await? else {
            return Err(ServiceError::Refused(format!(
                "attempt {id} is settled or held by a request or the resolver right now"
            )));
        };
        // Checked again on the attempt as claimed (and its payment as it is now): a point cancel
        // may have moved on to another order number meanwhile.
        let payment = self.payment_of_attempt(&held).await?;
        if let Err(e) = absence_settles(&held, &payment) {
            let mut a: pg_attempt::ActiveModel = held.clone().into();
            a.lease_until = Set(0);
            self.write_held(&held, a).await?;
            return Err(e);
        }
        // It may have moved on since it was read (a point cancel's re-approval has an order
        // number of its own): then it is only let go, the word recorded nowhere.
        let moved_on = held.order_no != order_no;
        let mut a: pg_attempt::ActiveModel = held.clone().into();
        a.lease_until = Set(0);
        if !moved_on {
            a.absent_order_no = Set(Some(order_no.to_string()));
            a.next_check_at = Set(self.clock.unix());
        }
        if self.write_held(&held, a).await?.is_none() {
            return Err(ServiceError::Refused(format!(
                "attempt {id} was settled otherwise meanwhile"
            )));
        }
        if moved_on {
            return Err(wrong_order(&held.order_no));
        }
        tracing::warn!(attempt_id = id, %order_no, "operator: KCP's admin holds nothing under this order number");
        self.resolve_attempt(id).await?;
        payments::attempt_by_id(&self.db.write, id)
            .await?
            .ok_or_else(|| ServiceError::Internal("attempt vanished".into()))
    }

    /// The payment `attempt` belongs to, as it is now.
    async fn payment_of_attempt(
        &self,
        attempt: &pg_attempt::Model,
    ) -> ServiceResult<payment::Model> {
        payments::by_id(&self.db.write, attempt.payment_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))
    }

    /// Whether an operator may fail `attempt` for finding nothing under `order_no` in KCP's admin
    /// ([`Self::fail_attempt_none_at_kcp`]); the refusal says why not.
    fn failable_by_hand(&self, attempt: &pg_attempt::Model, order_no: &str) -> ServiceResult<()> {
        let id = attempt.id;
        if attempt.kind != "approve" {
            return Err(ServiceError::BadRequest(format!(
                "attempt {id} is a {}: only an approval can be settled this way",
                attempt.kind
            )));
        }
        if attempt.order_no != order_no {
            return Err(ServiceError::BadRequest(format!(
                "attempt {id} waits for order number {}, not {order_no}: look that one up in KCP's admin",
                attempt.order_no
            )));
        }
        if let Some(tno) = &attempt.tno {
            return Err(ServiceError::Refused(format!(
                "attempt {id} names KCP's approval {tno}: KCP approved it and the resolver is cancelling it by that number; it cannot be failed by hand (see `openport attempt list`)"
            )));
        }
        // KCP may still be working on a call younger than the settle delay (a request's lease
        // can run out before its call has): its approval could land after this verdict.
        if !self.settled(attempt) {
            return Err(ServiceError::Refused(format!(
                "attempt {id} is younger than the settle delay ({} s): KCP may still be working on the call, try again later",
                self.settings.settle_secs
            )));
        }
        Ok(())
    }

    /// The operator's verdict on an open approval after looking in KCP's admin: KCP holds no
    /// approval for its order number (one it held has been cancelled there). The payment fails and
    /// its merchant_uid is free. Refused for a cancel, a settled attempt, or one a request or the
    /// resolver holds right now (try again in a minute).
    ///
    /// `order_no` is the number the operator looked up, which must be the attempt's (a mistyped
    /// id fails nothing else). An attempt that names KCP's `tno` is refused: KCP approved it, and
    /// the resolver is cancelling that approval by its `tno` (a net-cancel whose answer was lost);
    /// failing it here would stop that and leave the buyer charged.
    pub async fn fail_attempt_none_at_kcp(&self, id: i64, order_no: &str) -> ServiceResult<String> {
        let attempt = payments::attempt_by_id(&self.db.read, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("attempt {id} does not exist")))?;
        self.failable_by_hand(&attempt, order_no)?;
        let Some(attempt) = self.claim(id).await? else {
            return Err(ServiceError::Refused(format!(
                "attempt {id} is settled or held by a request or the resolver right now"
            )));
        };
        // Checked again on the attempt as claimed: between the read and the claim the resolver
        // may have found KCP's approval and named it for a net-cancel whose answer was lost.
        if let Err(e) = self.failable_by_hand(&attempt, order_no) {
            let mut a: pg_attempt::ActiveModel = attempt.clone().into();
            a.lease_until = Set(0);
            self.write_held(&attempt, a).await?;
            return Err(e);
        }
        let payment = payments::by_id(&self.db.write, attempt.payment_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
        let imp_uid = payment.imp_uid.clone();
        // A word on KCP's admin at one moment: looked at again later, as every failure for
        // finding no approval is (`schedule_absence_recheck`).
        self.schedule_absence_recheck(&payment, None).await?;
        match self
            .fail_unrecorded(
                payment,
                attempt,
                "PG사 승인 내역이 없음을 운영자가 확인하여 결제 실패로 처리되었습니다.",
                "PG사 승인 내역 없음 (운영자 확인)",
            )
            .await?
        {
            ApprovalOutcome::Declined { .. } => {
                tracing::warn!(attempt_id = id, %imp_uid, "operator settled an open approval as failed (none at KCP)");
                Ok(imp_uid)
            }
            _ => Err(ServiceError::Refused(format!(
                "attempt {id} was settled otherwise meanwhile"
            ))),
        }
    }
}
