//! Virtual accounts without the payment window: `POST /vbanks` and `DELETE /vbanks/{imp_uid}`
//! (spec/iamport-v1.md §4.7), over KCP's window-less issuance and its revocation (documented
//! assumptions, docs/kcp.md §10).
//!
//! Money rules are the key-in ones (service/pay.rs): the payment (pending) and its attempt are
//! committed before KCP is called, the outcome is recorded in one transaction with its `ready`
//! webhook, and the one-live-payment-per-merchant_uid index lets concurrent requests issue at most
//! one account. An outcome openport does not know is settled by inquiry (`pay_type PAVC`), never
//! guessed; an account openport cannot stand behind (another amount or order, or found only after
//! the merchant was told "unknown") is revoked at KCP.
use futures::future::FutureExt;
use sea_orm::Set;

use super::notifications::{NotificationError, OP_CD_REVERSAL};
use super::pay::{ApprovalOutcome, ChargeOrder, FailReasons, Settling};
use super::resolve::CancelOutcome;
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::domain::text::refuse_script;
use crate::domain::vbank::VbankBank;
use crate::pg::{
    quoted_refusal, DeclineReason, IssuedVirtualAccount, Pg, PgError, TradeRef, VbankIssueRequest,
    VbankState, WindowApproval,
};
use crate::store::entity::{kcp_notification, merchant, payment, pg_attempt};
use crate::store::notifications;
use crate::store::payments::{self, Opened};

/// iamport's `pay_method` of a virtual account.
pub const VBANK: &str = "vbank";
/// KCP's reason text (`mod_desc`) and the payment's `cancel_reason` for a revocation.
pub const REVOKE_REASON: &str = "가상계좌 발급취소";
/// What a failed issuance records: an account KCP issued for another amount or order is revoked.
const VBANK_FAILURES: FailReasons = FailReasons {
    mismatch: "발급금액 또는 주문번호 불일치로 가상계좌 발급이 취소되었습니다.",
    config: "PG 설정 오류로 가상계좌를 발급하지 못했습니다.",
};
/// Why an account found after its issuance answer was lost is revoked (or was closed meanwhile).
const UNSETTLED: &str = "발급 결과를 확정하지 못해 가상계좌 발급이 취소되었습니다.";

/// `POST /vbanks`, parsed at the edge.
#[derive(Debug, Clone)]
pub struct VbankCommand {
    /// `pay_method` is set to `vbank` by [`Gateway::issue_vbank`].
    pub order: ChargeOrder,
    pub bank: VbankBank,
    /// The deposit deadline, Unix seconds (iamport `vbank_due`).
    pub due: i64,
    /// iamport `vbank_holder`. KCP takes no holder: its hub call's `va_name` is who is expected
    /// to pay in (the buyer), and the account's holder is KCP's own (`depositor`), which the
    /// Payment shows. So it is only checked (script → 400, as before) and otherwise ignored.
    pub holder: Option<String>,
}

/// Whether KCP's account, found paid into (for `held_for`), is `payment`'s own in full: its order
/// (or none named), the payment's amount, and deposits that cover it (as a deposit notification
/// is believed, service/notifications.rs).
fn pays_for(payment: &payment::Model, account: &IssuedVirtualAccount, held_for: i64) -> bool {
    (account.order_no.is_empty() || account.order_no == payment.order_no)
        && account.amount == payment.amount
        && held_for >= payment.amount
}

/// The account fields of a payment whose virtual account KCP issued (iamport's `vbank_*`).
pub(crate) fn set_account(p: &mut payment::ActiveModel, account: &IssuedVirtualAccount) {
    p.vbank_code = Set(Some(VbankBank::iamport_code_of_kcp(&account.bank_code)));
    p.vbank_name = Set(Some(account.bank_name.clone()));
    p.vbank_num = Set(Some(account.account.clone()));
    p.vbank_holder = Set(Some(account.holder.clone()));
    p.vbank_date = Set(Some(account.due.timestamp()));
    p.vbank_issued_at = Set(Some(account.issued_at.timestamp()));
}

impl Gateway {
    /// Issues a virtual account: `ready` with the account, and a `ready` webhook.
    pub async fn issue_vbank(
        &self,
        m: &merchant::Model,
        cmd: VbankCommand,
    ) -> ServiceResult<PaymentRecord> {
        // The checkout's rule and wording (domain::vbank), and for digits that write a date
        // (`YYYYMMDD`, read as seconds in 1970) that they were read as Unix seconds.
        let due = crate::domain::vbank::deposit_deadline_unix(cmd.due, self.clock.now()).map_err(
            |e| {
                let note = crate::domain::unix_secs::read_as_secs_note(cmd.due)
                    .map_or(String::new(), |note| format!(" {note}"));
                ServiceError::BadRequest(format!("{e}{note}"))
            },
        )?;
        if let Some(holder) = cmd.holder.as_deref() {
            refuse_script("vbank_holder", holder)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        }
        let mut order = cmd.order;
        order.pay_method = Some(VBANK);
        order.card_quota = 0;
        let text = order.kcp_text()?;
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let Opened {
            payment, attempt, ..
        } = self.open_approval(m, &order, None).await?;
        let pending = payment.clone();
        // The buyer is also the expected depositor (`va_name`); the connector sends the same
        // sanitized name in both fields.
        let req = VbankIssueRequest {
            order_no: payment.order_no.clone(),
            amount: order.amount,
            good_name: text.good_name,
            buyer_name: text.buyer_name,
            buyer_email: text.buyer_email,
            buyer_tel: text.buyer_tel,
            bank_code: cmd.bank.kcp_code.to_string(),
            due,
        };
        let decided = match connector.issue_vbank(&req).await {
            Ok(account) => {
                self.settle_vbank(connector.as_ref(), payment, attempt, account)
                    .await
            }
            Err(err) => {
                self.conclude_pg_error(connector.as_ref(), payment, attempt, err, &VBANK_FAILURES)
                    .await
            }
        };
        // KCP may have issued the account: a database failure from here on is an unknown outcome.
        match Self::charge_unknown_after_db_error(pending, decided)? {
            ApprovalOutcome::Paid(p) => self.payment_record(p).await,
            ApprovalOutcome::Declined { payment: p, .. } | ApprovalOutcome::NetCancelled(p) => {
                Err(ServiceError::Refused(format!(
                    "가상계좌 발급에 실패하였습니다. ({})",
                    p.fail_reason.unwrap_or_default()
                )))
            }
            open @ (ApprovalOutcome::Unknown(_) | ApprovalOutcome::Conflict(_)) => {
                Self::answer(open)
            }
        }
    }

    /// Records an issued account (`ready`, its `ready` webhook in the same transaction) exactly as
    /// a window-issued one, or revokes it at KCP when it must not stand (another order; the amount
    /// is checked by `settle_window`). An account that names no order is taken to be ours.
    async fn settle_vbank(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        mut account: IssuedVirtualAccount,
    ) -> ServiceResult<ApprovalOutcome> {
        if account.order_no.is_empty() {
            account.order_no.clone_from(&payment.order_no);
        }
        if account.order_no != payment.order_no {
            return self
                .net_cancel(
                    connector,
                    payment,
                    attempt,
                    &account.tno,
                    VBANK_FAILURES.mismatch,
                )
                .await;
        }
        self.settle_window(
            connector,
            payment,
            attempt,
            WindowApproval::VirtualAccount(account),
        )
        .await
    }

    /// Settles an issuance whose answer was lost, by inquiry (`PAVC`, by order number unless a tno
    /// is known). An account found is handed out only when `honour` (the merchant is still
    /// waiting) and the answer names it; otherwise nobody can tell the buyer where to pay, so it
    /// is revoked. "No account" is believed only after the settle delay, as for card approvals.
    pub(crate) fn resolve_vbank_issue<'a>(
        &'a self,
        connector: &'a dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        honour: bool,
    ) -> Settling<'a> {
        async move {
            let trade = match &attempt.tno {
                Some(tno) => TradeRef::Tno(tno.clone()),
                None => TradeRef::OrderNo(attempt.order_no.clone()),
            };
            match connector.inquire_vbank(&trade).await {
                Ok(VbankState::Open {
                    account: Some(account),
                    paid: false,
                    ..
                }) if honour => {
                    self.settle_vbank(connector, payment, attempt, account)
                        .await
                }
                // The buyer paid into an account nobody recorded: closing it with STSC would
                // leave KCP nowhere to send the deposit back (a refund names the buyer's account,
                // service/cancel.rs). Named by KCP's answer, for this order and amount, it is
                // what iamport shows after a deposit: the account issued and paid.
                Ok(VbankState::Open {
                    account: Some(account),
                    paid: true,
                    amount,
                    ..
                }) if pays_for(&payment, &account, amount) => {
                    self.record_paid_into(connector, payment, attempt, account)
                        .await
                }
                // Otherwise it can be neither recorded nor closed: the payment is held for the
                // operator, who refunds it in KCP's admin (or records it paid); unless another
                // payment holds the account, whose it then is (`hold_as_conflict`).
                Ok(VbankState::Open {
                    tno, paid: true, ..
                }) => {
                    tracing::error!(imp_uid = %payment.imp_uid, %tno, "virtual account found paid into after its issuance answer was lost; left for the operator");
                    self.hold_as_conflict(
                        connector,
                        payment,
                        attempt,
                        &tno,
                        None,
                        "가상계좌 발급 결과를 확인하지 못한 사이 입금된 계좌입니다. 운영자 확인이 필요합니다.",
                    )
                    .await
                }
                Ok(VbankState::Open { tno, .. }) => {
                    tracing::warn!(imp_uid = %payment.imp_uid, %tno, "virtual account found after its answer was lost; revoking");
                    self.net_cancel(connector, payment, attempt, &tno, UNSETTLED)
                        .await
                }
                Ok(VbankState::Closed { tno, .. }) => {
                    self.record_found_cancelled(payment, attempt, &tno, UNSETTLED)
                        .await
                }
                Ok(VbankState::NotFound) if self.absence_is_final(&attempt, &trade) => {
                    // An account KCP issues later stays open at KCP for deposits nobody will
                    // record: looked at again, as a failed approval is (service/resolve.rs).
                    self.schedule_absence_recheck(&payment, attempt.tno.as_deref())
                        .await?;
                    self.fail_unrecorded(
                        payment,
                        attempt,
                        "PG사 가상계좌 발급 내역이 없어 발급 실패로 처리되었습니다.",
                        "PG사 발급 내역 없음",
                    )
                    .await
                }
                Ok(VbankState::NotFound) => {
                    self.absent_left_open(payment, attempt, &trade).await
                }
                Err(e) => {
                    tracing::warn!(imp_uid = %payment.imp_uid, "virtual-account inquiry failed: {e}");
                    self.leave_open(payment, attempt, &e.to_string()).await
                }
            }
        }
        .boxed()
    }

    /// Records an account found paid into after its issuance answer was lost ([`pays_for`]): the
    /// account issued and the payment `paid` (`paid_at` now: the inquiry gives no deposit time),
    /// its attempt `succeeded` and its `paid` webhook, in one write (`payments::conclude_charge`).
    /// Never revoked on a failed write, unlike an unpaid account (`settle_window`): the attempt
    /// stays open and is settled again. When another holder settled the attempt first, the
    /// account in hand is settled as one the payment may not hold (service/orphans.rs).
    async fn record_paid_into(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
        account: IssuedVirtualAccount,
    ) -> ServiceResult<ApprovalOutcome> {
        // Another payment's account is not this payment's to record (service/orphans.rs).
        if let Some(outcome) = self
            .answer_of_another_trade(&payment, &attempt, &account.tno)
            .await?
        {
            return Ok(outcome);
        }
        let now = self.clock.unix();
        let webhooks = self.webhooks_announcing(&payment, "paid").await?;
        let mut p: payment::ActiveModel = payment.clone().into();
        p.status = Set(PaymentStatus::Paid.as_db().into());
        p.pg_tid = Set(Some(account.tno.clone()));
        p.paid_at = Set(Some(now));
        p.updated_at = Set(now);
        set_account(&mut p, &account);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set("succeeded".into());
        a.tno = Set(Some(account.tno.clone()));
        a.result_code = Set(Some("0000".into()));
        a.result_message = Set(Some("found paid into by inquiry".into()));
        a.updated_at = Set(now);
        let pending = PaymentStatus::Pending.as_db();
        let concluded =
            payments::conclude_charge(&self.db.write, &attempt, pending, p, a, webhooks);
        let concluded = match concluded.await {
            Err(e) if crate::store::is_trade_clash(&e) => {
                return self
                    .trade_taken_meanwhile(payment, attempt, &account.tno)
                    .await
            }
            concluded => concluded?,
        };
        match concluded {
            Some(p) => {
                tracing::warn!(imp_uid = %p.imp_uid, tno = %account.tno, "virtual account found paid into after its issuance answer was lost; recorded issued and paid");
                Ok(ApprovalOutcome::Paid(p))
            }
            None => {
                self.approval_orphaned(connector, payment.id, &account.tno, false)
                    .await
            }
        }
    }

    /// `DELETE /vbanks/{imp_uid}`: closes an unpaid account at KCP (`STSC`; an escrow account
    /// `STE5`, spec/kcp.md §2.11). The payment becomes
    /// `cancelled` like a full cancel — `cancel_amount` = `amount`, one `cancel_history` entry
    /// with [`REVOKE_REASON`], `paid_at` still 0 — so nothing can be cancelled or deposited after
    /// it (docs/api.md). No webhook: API cancels send none (spec §5).
    pub async fn revoke_vbank(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> ServiceResult<PaymentRecord> {
        let mut attempt_written = None;
        let answered = self.revoke_with(m, imp_uid, &mut attempt_written).await;
        // Once the revocation's attempt is written (and perhaps sent), a database failure is
        // answered as a lost KCP answer, as for cancels: never an HTTP 500 a merchant may read as
        // "not revoked" while KCP closed the account.
        Self::unknown_after_db_error(answered, attempt_written.as_deref(), |imp_uid| {
            Err(ServiceError::Refused(revocation_unknown(imp_uid)))
        })
    }

    /// [`Gateway::revoke_vbank`]; `attempt_written` is set to the payment's imp_uid once the
    /// revocation's attempt is recorded.
    async fn revoke_with(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
        attempt_written: &mut Option<String>,
    ) -> ServiceResult<PaymentRecord> {
        let found = payments::by_imp_uid(&self.db.read, Some(m.id), imp_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound(super::lookup::NOT_FOUND.into()))?;
        let tno = revocable(&found)?;
        // KCP holds something else than the record (a revocation KCP refused as "no such trade",
        // or whose lost answer's inquiry found none): nothing is sent for the account until an
        // operator has compared it with KCP's admin, as for cancels (service/cancel.rs).
        if let Some(conflict) = payments::unreconciled_conflict(&self.db.read, found.id).await? {
            return Err(super::cancel::conflict_refusal(&found, conflict.id));
        }
        // Before the attempt, as for cancels: an unusable configuration leaves no open attempt.
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let attempt = self
            .open_cancel_attempt(
                &found,
                &tno,
                &Some(REVOKE_REASON.into()),
                found.amount,
                false,
            )
            .await?;
        *attempt_written = Some(found.imp_uid.clone());
        // Holding the only open cancel, re-read holding the payment's row: a deposit may have
        // paid it meanwhile, and one being applied now is waited for (from here on no deposit
        // moves it while the attempt is open: service/notifications.rs `apply`).
        let payment = self
            .held_for_revocation(found.id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(super::lookup::NOT_FOUND.into()))?;
        if let Err(e) = revocable(&payment) {
            self.close_attempt(attempt, "failed", "not sent: no longer ready")
                .await?;
            return Err(e);
        }
        if let Some(refusal) = self.conflict_under_slot(&attempt, &payment).await? {
            return Err(refusal);
        }
        let attempt_id = attempt.id;
        // KCP closes an account with whatever was deposited on it and nowhere to send it back
        // (docs/kcp.md §10.2): looked for before the close is sent.
        match self
            .look_before_closing(connector.as_ref(), &payment, &tno)
            .await?
        {
            BeforeClose::Close => {}
            BeforeClose::PaidAtKcp { kcp, seen } => {
                tracing::warn!(imp_uid = %payment.imp_uid, %tno, "revocation of a virtual account KCP holds paid: not sent, the deposit is applied instead");
                self.close_attempt(attempt, "failed", "not sent: KCP holds the account paid")
                    .await?;
                return self.deposit_applied_instead(payment, &kcp, seen).await;
            }
            BeforeClose::Refuse { why, message } => {
                tracing::warn!(imp_uid = %payment.imp_uid, %tno, "revocation not sent: {why}");
                self.close_attempt(attempt, "failed", &format!("not sent: {why}"))
                    .await?;
                return Err(ServiceError::Refused(message.into()));
            }
        }
        // The look above was a KCP call on the attempt's first lease, which covers two calls
        // (service/attempts.rs): renewed before the close, and not due for the resolver before a
        // settle delay after it. Due as it was (a settle delay from the attempt's creation, up to
        // a KCP timeout before the close), a resolver could inquire while KCP was still applying
        // the close, find the account open and record the revocation as not made.
        let Some(attempt) = self.renew_before_settling_call(attempt).await? else {
            // Taken over while looking (this request stalled past its lease): nothing was sent,
            // and what the other holder decided is the answer.
            let decided = self.cancel_decided(attempt_id).await?;
            return self.answer_revocation(&payment, decided).await;
        };
        // An escrow account KCP refuses to close with STE5 is closed with STSC, the attempt
        // renewed before it (`Gateway::cancel_at_kcp`).
        let sent = self
            .cancel_at_kcp(attempt, payment.escrow, |call| {
                let escrow = payment.escrow && call == super::cancel::CancelCall::Planned;
                connector.revoke_vbank(&tno, escrow, REVOKE_REASON)
            })
            .await?;
        let Some(super::cancel::CancelSent { attempt, answer }) = sent else {
            // Taken over before the STSC: KCP refused the STE5, nothing was applied, and what the
            // other holder decided is the answer.
            let decided = self.cancel_decided(attempt_id).await?;
            return self.answer_revocation(&payment, decided).await;
        };
        let outcome = match answer {
            // KCP closed it: never answered "not revoked", whatever another holder wrote.
            Ok(done) => {
                self.record_confirmed_cancel(payment.clone(), attempt, done.cancelled_at)
                    .await?
            }
            Err(PgError::Declined {
                reason: DeclineReason::AlreadyCancelled,
                ..
            }) => {
                // Closed at KCP already (its admin screen, or a revocation whose answer was lost):
                // what KCP says is what openport records.
                tracing::warn!(imp_uid = %payment.imp_uid, %tno, "KCP says the virtual account is already closed");
                self.recorded_or_decided(payment.clone(), attempt, self.clock.now())
                    .await?
            }
            // KCP knows no such trade while openport holds the account issued: the disagreement
            // a revocation whose answer was lost meets when its inquiry says so, answered the
            // same way (`refused_cancel`): a `conflict` listed for the operator, the operator's
            // wording for the merchant, never "발급취소에 실패" with nothing listed (the merchant
            // would take the account for open at KCP and revocable later). Only KCP's inquiry
            // showing the account closed (this revocation, or one before it, applied) overrides
            // the refusal: recorded revoked.
            Err(PgError::Declined {
                code,
                message,
                reason: reason @ DeclineReason::NoSuchTrade,
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
            Err(PgError::Declined { code, message, .. }) => {
                if self
                    .close_attempt(attempt, "failed", &quoted_refusal(&code, &message))
                    .await?
                {
                    // KCP refuses to close an account a deposit reached after the look above
                    // (the sandbox does, docs/sandbox.md §2.3): applied now, not left to KCP's
                    // re-send of a notification the revocation held back.
                    let seen = notifications::newest_for(&self.db.write, &tno).await?;
                    if let Ok(kcp) = connector.inquire_vbank(&TradeRef::Tno(tno.clone())).await {
                        if matches!(kcp, VbankState::Open { paid: true, .. }) {
                            return self.deposit_applied_instead(payment, &kcp, seen).await;
                        }
                    }
                    return Err(ServiceError::Refused(format!(
                        "가상계좌 발급취소에 실패하였습니다.({message})"
                    )));
                }
                self.cancel_decided(attempt_id).await?
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "revocation outcome unknown: {e}");
                match self.mark_unknown(attempt, &e.to_string()).await? {
                    Some(attempt) => {
                        self.resolve_cancel(connector.as_ref(), payment.clone(), attempt)
                            .await?
                    }
                    None => self.cancel_decided(attempt_id).await?,
                }
            }
        };
        self.answer_revocation(&payment, outcome).await
    }

    /// How a revocation's outcome is answered: the payment once revoked, a refusal otherwise.
    async fn answer_revocation(
        &self,
        payment: &payment::Model,
        outcome: CancelOutcome,
    ) -> ServiceResult<PaymentRecord> {
        match outcome {
            CancelOutcome::Applied(p) => self.payment_record(*p).await,
            CancelOutcome::NotApplied(why) => Err(ServiceError::Refused(format!(
                "가상계좌 발급취소에 실패하였습니다.({why})"
            ))),
            CancelOutcome::Unknown => Err(self
                .unknown_cancel_refusal(payment, revocation_unknown(&payment.imp_uid))
                .await?),
            CancelOutcome::Conflict(attempt_id) => Err(ServiceError::Refused(format!(
                "PG사에서는 발급취소되었으나 결제 기록과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {}, attempt {attempt_id})",
                payment.imp_uid
            ))),
            CancelOutcome::Disputed(attempt_id) => {
                Err(super::cancel::conflict_refusal(payment, attempt_id))
            }
            CancelOutcome::Reconciled(attempt_id) => {
                Err(super::cancel::reconciled_refusal(payment, attempt_id))
            }
        }
    }
}

/// The answer to a revocation whose outcome this request could not learn.
fn revocation_unknown(imp_uid: &str) -> String {
    format!("PG사 발급취소 응답을 확인하지 못했습니다. 결과는 자동으로 확인됩니다. (imp_uid: {imp_uid})")
}

/// Whether `p` is a virtual account issued and awaiting its deposit.
pub(crate) fn awaits_deposit(p: &payment::Model) -> bool {
    PaymentStatus::from_db(&p.status) == PaymentStatus::Ready
        && p.pay_method == VBANK
        && p.pg_tid.is_some()
        && p.vbank_num.is_some()
}

/// What a revocation learnt before sending the close ([`Gateway::look_before_closing`]).
enum BeforeClose {
    /// Nothing deposited as far as KCP and openport's notifications show: send it.
    Close,
    /// KCP holds the account paid for the payment's amount: the deposit is applied instead.
    PaidAtKcp {
        kcp: Box<VbankState>,
        seen: Option<i64>,
    },
    /// Not sent: money may be on the account, or KCP could not be asked. `why` for the log and
    /// the attempt, `message` for the merchant.
    Refuse {
        why: &'static str,
        message: &'static str,
    },
}

/// The refusal of a revocation while the account may hold a deposit.
const MAY_HOLD_DEPOSIT: &str = "입금 내역이 있는 가상계좌는 발급취소할 수 없습니다. 발급취소하면 입금액을 돌려줄 곳이 없어 운영자 확인(KCP 관리자 환불)이 필요합니다.";
/// The refusal of a revocation while KCP cannot be asked what the account holds.
const NOT_LOOKED: &str = "PG사에 가상계좌 입금 여부를 확인하지 못해 발급취소를 요청하지 않았습니다. 잠시 후 다시 시도해 주세요.";

impl Gateway {
    /// The payment of a revocation (or of a close KCP made), re-read once its attempt is open,
    /// holding the payment's row (`payments::hold_if_status`): a deposit being applied is waited
    /// for and seen.
    async fn held_for_revocation(&self, id: i64) -> ServiceResult<Option<payment::Model>> {
        let txn = self.db.write.begin().await?;
        payments::hold_if_status(&txn, id, PaymentStatus::Ready.as_db()).await?;
        let payment = payments::by_id(&txn, id).await?;
        txn.commit().await?;
        Ok(payment)
    }

    /// What stands between a revocation and the close (docs/kcp.md §10.2, §11): the deposit
    /// notifications openport holds for the account — the newest deposit's total (a partial one
    /// keeps the account `ready`, its money is still on it), or a deposit not verified yet — and
    /// what KCP holds (`PAVC`). KCP's word that the account is paid wins (the deposit is applied);
    /// otherwise any sign of money, or no answer from KCP, keeps the close from being sent.
    ///
    /// The notifications are KCP's only word on a partial deposit (`STIS` carries no deposited
    /// amount), so asking KCP cannot replace them; the newest is taken in KCP's order, of the
    /// payment's site, never a `refused` one ([`notifications::newest_deposits`]). In the order
    /// openport received them, a deposit's late re-send after its reversal, or another site's
    /// post naming the `tno`, refused the revocation for good though KCP held nothing.
    async fn look_before_closing(
        &self,
        connector: &dyn Pg,
        payment: &payment::Model,
        tno: &str,
    ) -> ServiceResult<BeforeClose> {
        let notified = notifications::newest_deposits(&self.db.write, tno, &payment.pg_id).await?;
        let seen = notifications::newest_for(&self.db.write, tno).await?;
        let kcp = match connector
            .inquire_vbank(&TradeRef::Tno(tno.to_string()))
            .await
        {
            Ok(kcp) => kcp,
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, %tno, "virtual-account inquiry before a revocation failed: {e}");
                return Ok(BeforeClose::Refuse {
                    why: "KCP could not be asked whether the account holds a deposit",
                    message: NOT_LOOKED,
                });
            }
        };
        Ok(match &kcp {
            VbankState::Open {
                paid: true, amount, ..
            } if *amount >= payment.amount => BeforeClose::PaidAtKcp {
                kcp: Box::new(kcp.clone()),
                seen,
            },
            VbankState::Open { paid: true, .. } => BeforeClose::Refuse {
                why: "KCP holds the account paid, for less than the payment",
                message: MAY_HOLD_DEPOSIT,
            },
            _ if notified.iter().any(shows_money) => BeforeClose::Refuse {
                why: "openport holds a deposit notification for the account",
                message: MAY_HOLD_DEPOSIT,
            },
            _ => BeforeClose::Close,
        })
    }

    /// Records as revoked `ready` account `payment` that KCP holds closed (closed in KCP's admin,
    /// or by KCP: its notice `TX07`/`TX06`, or the resolver's look), as a revocation is recorded —
    /// `cancelled`, `cancel_amount` = `amount`, `paid_at` still 0 — with the `cancelled` webhook,
    /// as for any cancel made at KCP (spec §5). Through the cancel path a KCP cancel notice takes
    /// (service/notifications.rs `verify_cancel_notice`): an attempt opened for the whole amount
    /// and settled by the cancel resolver's inquiry, which sends nothing to KCP. None when a
    /// cancel of the payment is in flight or the payment changed meanwhile: decided by that one
    /// (and while this host's clock is off: decided by the next look or notice).
    pub(crate) async fn record_closed_at_kcp(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        reason: String,
    ) -> ServiceResult<Option<CancelOutcome>> {
        let Some(tno) = payment.pg_tid.clone() else {
            return Ok(None);
        };
        let attempt = match self
            .open_cancel_attempt(&payment, &tno, &Some(reason), payment.amount, true)
            .await
        {
            Ok(attempt) => attempt,
            Err(ServiceError::Refused(_) | ServiceError::ClockSkewed) => return Ok(None),
            Err(e) => return Err(e),
        };
        let fresh = self
            .held_for_revocation(payment.id)
            .await?
            .filter(|p| awaits_deposit(p) && p.cancel_amount == payment.cancel_amount);
        let Some(fresh) = fresh else {
            self.close_attempt(
                attempt,
                "failed",
                "not recorded: the payment changed meanwhile",
            )
            .await?;
            return Ok(None);
        };
        Ok(Some(self.resolve_cancel(connector, fresh, attempt).await?))
    }

    /// A revocation that found the account paid at KCP: the deposit applied as a verified
    /// notification's would be, and the answer a revocation of a paid account gets (400, spec
    /// §4.7), naming the status the payment now has.
    async fn deposit_applied_instead(
        &self,
        payment: payment::Model,
        kcp: &VbankState,
        seen: Option<i64>,
    ) -> ServiceResult<PaymentRecord> {
        let id = payment.id;
        match self.apply_deposit_found(payment, kcp, seen).await {
            Ok(_) | Err(NotificationError::ChangedMeanwhile(_)) => {}
            Err(NotificationError::Service(e)) => return Err(e),
            Err(NotificationError::Db(e)) => return Err(e.into()),
            Err(e) => return Err(ServiceError::Internal(e.to_string())),
        }
        let now = payments::by_id(&self.db.write, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(super::lookup::NOT_FOUND.into()))?;
        revocable(&now)?;
        // Still `ready`: KCP's answer did not make it paid (another change came first).
        Err(ServiceError::Refused(MAY_HOLD_DEPOSIT.into()))
    }
}

/// Whether a deposit notification that may be the newest of an account (in KCP's order, one of
/// those notified at the latest deposit time) shows money on it: a total above 0 (a partial
/// deposit keeps the account `ready` with the money on it), or a deposit not verified yet whose
/// total is unknown. A reversal that took the total to 0 shows none.
fn shows_money(newest: &kcp_notification::Model) -> bool {
    newest.total > 0
        || (newest.outcome.is_none() && newest.op_cd.as_deref() != Some(OP_CD_REVERSAL))
}

/// Only a virtual account awaiting its deposit can be revoked (spec §4.7: 400 otherwise); its
/// `tno` is what KCP closes.
fn revocable(p: &payment::Model) -> ServiceResult<String> {
    if p.pay_method != VBANK {
        return Err(ServiceError::BadRequest(
            "가상계좌 결제건이 아닙니다.".into(),
        ));
    }
    let status = PaymentStatus::from_db(&p.status);
    match (&p.pg_tid, &p.vbank_num) {
        (Some(tno), Some(_)) if status == PaymentStatus::Ready => Ok(tno.clone()),
        _ if status == PaymentStatus::Pending => Err(ServiceError::BadRequest(
            "가상계좌 발급 결과를 확인 중인 결제건입니다. 잠시 후 다시 시도해 주세요.".into(),
        )),
        _ => Err(ServiceError::BadRequest(format!(
            "입금대기(ready) 상태의 가상계좌만 발급취소할 수 있습니다. (status: {})",
            status.as_iamport()
        ))),
    }
}
