//! The resolver's looks at virtual accounts awaiting their deposit (docs/kcp.md §11 step 7).
//!
//! Every other safety net starts from a notification row (`reverify_notifications`): a deposit
//! whose notifications never reached openport — a sender not in `OPENPORT_KCP__NOTIFY_SOURCES`,
//! openport or its database down for longer than KCP re-sends, KCP's notification URL wrong —
//! left the account `ready` for good while KCP held it paid, the buyer's money at KCP and the
//! merchant's order expiring. So each `ready` account is asked about by `tno` (`PAVC`) on a
//! schedule (`domain::vbank::next_check`: ten minutes after issuance, then hourly, the last an
//! hour after the deposit deadline), and a deposit KCP confirms is applied exactly as a verified
//! notification's (`Gateway::apply_deposit_found`: the conditional `ready → paid` and its `paid`
//! webhook in one transaction). The cost is one inquiry per open account per hour, bounded by the
//! number of `ready` accounts (which, unlike notification rows, nobody outside can add) and by the
//! sweep's limit. Rows of accounts no longer `ready` are not taken (`vbank_checks::due` leaves them
//! out) but deleted in bulk, a thousand a statement until none is left (`delete_stale_looks`): with
//! them in the due list, every account ever issued took one of the sweep's looks, and more
//! accounts issued a minute than its limit delayed the looks at open ones without bound. An
//! account a reversal makes `ready` again is scheduled anew by it (`Gateway::apply`), its row
//! deleted or not meanwhile: a second deposit whose notifications are lost is found as a first.
//!
//! Several instances share the schedule (`vbank_checks`): a look is taken by moving its row on from
//! the time it was read, so exactly one instance takes it; and a deposit is applied at most once
//! whoever finds it, by the conditional status change. An account KCP holds closed is recorded
//! revoked (`Gateway::record_closed_at_kcp`), as KCP's notice of the close would have it.
use super::merchants::runs_in_mode;
use super::notifications::{NotificationError, Verdict, OP_CD_REVERSAL};
use super::vbanks::awaits_deposit;
use super::{Gateway, ServiceResult};
use crate::domain::vbank::next_check;
use crate::pg::{TradeRef, VbankState};
use crate::store::entity::vbank_check;
use crate::store::{notifications, payments, vbank_checks};

/// `cancel_reason` of an account the resolver found closed at KCP.
const CLOSED_FOUND: &str = "PG사에서 가상계좌가 닫힘 (조회 확인)";

/// How long a look taken is held before another instance may take it again (this one crashed, or
/// KCP did not answer): retried sooner than the hourly schedule.
const RETRY_AFTER_SECS: i64 = 300;

/// How many due rows of accounts no longer `ready` one statement deletes at most: a short write
/// (on SQLite every other write waits for it), repeated until one deletes fewer
/// ([`STALE_STATEMENTS_PER_PASS`] at most), so the rows of a burst of accounts paid drain in one
/// pass. Stopped at a thousand a pass, a backlog of them (more accounts paid a minute, or paid
/// while the resolver was stopped) went down by a thousand a minute, shared by every instance
/// (they read the same earliest rows), and the due list walked past all of them on every pass
/// to reach the open accounts.
const STALE_PER_STATEMENT: u64 = 1_000;
/// How many such statements a pass runs at most: 100,000 rows, far more than are paid a minute,
/// yet a bound on how long the looks wait behind them. Any left go at the next pass, and the due
/// list skips them meanwhile.
const STALE_STATEMENTS_PER_PASS: u32 = 100;

impl Gateway {
    /// Takes the looks at open virtual accounts due now (at most `limit`); returns how many found a
    /// deposit and applied it.
    pub async fn check_open_vbanks(&self, limit: u64) -> ServiceResult<usize> {
        // Looks are taken by this host's clock, as attempts are (service/clock_check.rs), and by
        // no instance older than its database (service/schema_check.rs).
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(0);
        }
        let now = self.clock.unix();
        // Not in the way of the looks if it fails (a full disk): the due list skips these rows.
        if let Err(e) = self.delete_stale_looks(now).await {
            tracing::error!("resolver: looks at accounts no longer open not deleted: {e}");
        }
        let mut applied = 0;
        let served = self.served_merchants();
        for due in vbank_checks::due(&self.db.read, served, now, limit).await? {
            let payment_id = due.payment_id;
            match self.check_open_vbank(due, now).await {
                Ok(true) => applied += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(payment_id, "resolver: open virtual account: {e}"),
            }
        }
        Ok(applied)
    }

    /// Deletes the due rows of accounts no longer `ready`, [`STALE_PER_STATEMENT`] a statement,
    /// until a statement finds fewer or [`STALE_STATEMENTS_PER_PASS`] have run.
    async fn delete_stale_looks(&self, now: i64) -> Result<(), sea_orm::DbErr> {
        for _ in 0..STALE_STATEMENTS_PER_PASS {
            let went = vbank_checks::delete_stale(&self.db.write, now, STALE_PER_STATEMENT).await?;
            if went < STALE_PER_STATEMENT {
                break;
            }
        }
        Ok(())
    }

    /// One look: true when it applied a deposit.
    async fn check_open_vbank(&self, due: vbank_check::Model, now: i64) -> ServiceResult<bool> {
        let payment = payments::by_id(&self.db.read, due.payment_id).await?;
        let merchant = match &payment {
            Some(p) => Some(self.merchant(p.merchant_id).await?),
            None => None,
        };
        if merchant
            .as_ref()
            .is_some_and(|m| !runs_in_mode(self.settings.test_mode, m))
        {
            // Asked of the other mode's KCP by its own instances (as the resolver leaves
            // attempts). The due list holds this mode's looks only (`vbank_checks::due`); one that
            // reaches here anyway is left as it is: taken, it would wait a retry's time longer.
            return Ok(false);
        }
        let (Some(payment), Some(merchant)) = (payment.filter(awaits_deposit), merchant) else {
            // Paid, revoked or failed since the due list was read: nothing left to look for.
            vbank_checks::take(&self.db.write, &due, None).await?;
            return Ok(false);
        };
        // A retry's time: the look is this instance's until then; a crash or a failed inquiry
        // leaves it to be taken again then, not an hour later.
        let held = vbank_check::Model {
            check_at: now + RETRY_AFTER_SECS,
            ..due.clone()
        };
        if !vbank_checks::take(&self.db.write, &due, Some(held.check_at)).await? {
            // Another instance took it.
            return Ok(false);
        }
        let tno = payment.pg_tid.clone().unwrap_or_default();
        let connector = self.connectors.for_merchant(&merchant, &self.secrets)?;
        // The newest notification before KCP is asked: one recorded meanwhile (a reversal) is
        // not overruled by this answer (service/notifications.rs `apply`).
        let seen = notifications::newest_for(&self.db.write, &tno).await?;
        let kcp = match connector.inquire_vbank(&TradeRef::Tno(tno.clone())).await {
            Ok(kcp) => kcp,
            Err(e) => {
                tracing::info!(imp_uid = %payment.imp_uid, %tno, "open virtual account not looked at, asked again later: {e}");
                return Ok(false);
            }
        };
        let next = next_check(now, payment.vbank_issued_at, payment.vbank_date);
        let (imp_uid, site_cd) = (payment.imp_uid.clone(), payment.pg_id.clone());
        if matches!(kcp, VbankState::Closed { .. }) {
            // Closed at KCP with no notice that reached openport (its admin, KCP itself).
            tracing::warn!(%imp_uid, %tno, "KCP holds closed a virtual account awaiting its deposit; recording it revoked");
            self.record_closed_at_kcp(connector.as_ref(), payment, CLOSED_FOUND.into())
                .await?;
            vbank_checks::take(&self.db.write, &held, next).await?;
            return Ok(false);
        }
        let applied = match self.apply_deposit_found(payment, &kcp, seen).await {
            Ok(Verdict::Applied) => {
                // Whether its notification reached openport tells the operator where to look.
                match notifications::newest_deposit(&self.db.read, &tno, &site_cd).await {
                    Ok(Some(row)) if row.op_cd.as_deref() != Some(OP_CD_REVERSAL) => {
                        tracing::warn!(%imp_uid, %tno, noti_id = %row.noti_id, "a deposit KCP holds was applied by the resolver's look: its notification reached openport but KCP's inquiry did not confirm it then (earlier INFO 'unverified KCP notification still not confirmed'); the notification is decided with it")
                    }
                    _ => {
                        tracing::warn!(%imp_uid, %tno, "a deposit KCP holds was not recorded from a notification: applied by the resolver; if openport and its database were up meanwhile, check OPENPORT_KCP__NOTIFY_SOURCES and the notification URL in KCP's admin (earlier WARNs 'KCP notification not acknowledged' mean openport could not record them)")
                    }
                }
                true
            }
            Ok(_) => false,
            // Changed meanwhile (a notification, a revocation in flight): looked at again.
            Err(NotificationError::ChangedMeanwhile(_)) => false,
            Err(e) => {
                tracing::warn!(%imp_uid, %tno, "deposit KCP holds not applied: {e}");
                false
            }
        };
        vbank_checks::take(&self.db.write, &held, next).await?;
        Ok(applied)
    }
}
