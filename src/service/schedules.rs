//! Scheduled payments (spec/iamport-v1.md §4.4): registration, revocation, lookups, and the run
//! that charges each due schedule exactly once, whatever the number of instances.
use futures::StreamExt;
use sea_orm::Set;

use super::billing::{AgainCommand, CustomerCommand};
use super::lookup::{Page, Paging};
use super::pay::{instalment_allowed, ApprovalOutcome, ChargeOrder, UNKNOWN_CUSTOMER};
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::store::billing::{self, FinishedSchedule, ScheduleQuery};
use crate::store::entity::{merchant, payment, schedule};
use crate::store::{is_unique_violation, payments};

/// `customer_uid_usage` of a scheduled charge's payment (spec §3).
pub const SCHEDULED_USAGE: &str = "payment.scheduled";
/// How long an instance owns a schedule it claimed; a dead instance's schedule is taken over after.
const LEASE_SECS: i64 = 120;
/// The longest window of a schedule list (spec: ≤ 3 months).
const MAX_RANGE_SECS: i64 = 92 * 24 * 3600;
/// How long a finished schedule waits for others to be recorded with it (see
/// [`Gateway::run_due_schedules`]).
const FINISH_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Which schedules a new time applies to (see [`Gateway::reschedule`]).
#[derive(Debug, Clone, Copy)]
pub enum Reschedule {
    Pending,
    FailedOrRevoked,
}

#[derive(Debug, Clone)]
pub struct ScheduleItem {
    pub schedule_at: i64,
    pub order: ChargeOrder,
}

impl Gateway {
    /// Registers schedules for a customer (issuing a billing key first when card data is given and
    /// the customer has none). All or nothing: one bad item refuses the whole request.
    pub async fn schedule_payments(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
        card: Option<CustomerCommand>,
        items: Vec<ScheduleItem>,
    ) -> ServiceResult<Vec<schedule::Model>> {
        if items.is_empty() {
            return Err(ServiceError::BadRequest(
                "schedules 파라메터가 누락되었습니다.".into(),
            ));
        }
        let now = self.clock.unix();
        for it in &items {
            instalment_allowed(&it.order)?;
            if it.schedule_at <= now {
                return Err(ServiceError::Refused(format!(
                    "예약시각(schedule_at)은 현재 시각 이후여야 합니다. (merchant_uid: {})",
                    it.order.merchant_uid
                )));
            }
        }
        if billing::active_key(&self.db.read, m.id, customer_uid)
            .await?
            .is_none()
        {
            match card {
                Some(c) => {
                    self.register_customer(m, c).await?;
                }
                None => return Err(ServiceError::Refused(UNKNOWN_CUSTOMER.into())),
            }
        }
        let txn = self.db.write.begin().await?;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let o = it.order;
            // A merchant_uid that already has a payment cannot be charged again: scheduling it
            // would only record a refusal later (and never adopt that other payment).
            if let Some(live) = payments::live_by_merchant_uid(&txn, m.id, &o.merchant_uid).await? {
                return Err(ServiceError::Refused(format!(
                    "이미 결제가 진행되었거나 완료된 merchant_uid입니다. ({}, imp_uid: {})",
                    o.merchant_uid, live.imp_uid
                )));
            }
            let row = schedule::ActiveModel {
                merchant_id: Set(m.id),
                customer_uid: Set(customer_uid.to_string()),
                merchant_uid: Set(o.merchant_uid.clone()),
                schedule_at: Set(it.schedule_at),
                amount: Set(o.amount),
                currency: Set(o.currency.clone()),
                name: Set(o.name.clone()),
                buyer_name: Set(o.buyer_name.clone()),
                buyer_email: Set(o.buyer_email.clone()),
                buyer_tel: Set(o.buyer_tel.clone()),
                buyer_addr: Set(o.buyer_addr.clone()),
                buyer_postcode: Set(o.buyer_postcode.clone()),
                custom_data: Set(o.custom_data.clone()),
                notice_url: Set((!o.notice_url.is_empty())
                    .then(|| serde_json::to_string(&o.notice_url).unwrap_or_default())),
                card_quota: Set(i32::from(o.card_quota)),
                status: Set("scheduled".into()),
                imp_uid: Set(None),
                payment_status: Set(None),
                fail_reason: Set(None),
                executed_at: Set(None),
                revoked_at: Set(None),
                lease_until: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            };
            match billing::insert_schedule(&txn, row).await {
                Ok(s) => out.push(s),
                Err(e) if is_unique_violation(&e) => {
                    return Err(ServiceError::Refused(format!(
                        "이미 예약된 merchant_uid입니다. ({})",
                        o.merchant_uid
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        txn.commit().await?;
        Ok(out)
    }

    /// Revokes pending schedules: the customer's (all of them, or those named), or the named ones
    /// of any customer.
    pub async fn unschedule(
        &self,
        m: &merchant::Model,
        customer_uid: Option<&str>,
        merchant_uids: Option<Vec<String>>,
    ) -> ServiceResult<Vec<schedule::Model>> {
        if customer_uid.is_none() && merchant_uids.is_none() {
            return Err(ServiceError::BadRequest(
                "customer_uid 또는 merchant_uid 파라메터가 필요합니다.".into(),
            ));
        }
        let now = self.clock.unix();
        let pending =
            billing::pending_schedules(&self.db.read, m.id, customer_uid, merchant_uids.as_deref())
                .await?;
        let mut revoked = Vec::new();
        for s in pending {
            if billing::revoke_schedule(&self.db.write, s.id, now).await? {
                revoked.push(schedule::Model {
                    status: "revoked".into(),
                    revoked_at: Some(now),
                    updated_at: now,
                    ..s
                });
            }
        }
        if revoked.is_empty() {
            return Err(ServiceError::Refused(
                "취소할 예약결제 기록이 존재하지 않습니다.".into(),
            ));
        }
        Ok(revoked)
    }

    pub async fn schedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
    ) -> ServiceResult<schedule::Model> {
        billing::schedule_by_uid(&self.db.read, m.id, merchant_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound("예약결제 정보가 존재하지 않습니다.".into()))
    }

    pub async fn schedules(
        &self,
        m: &merchant::Model,
        mut q: ScheduleQuery,
        paging: Paging,
        desc: bool,
    ) -> ServiceResult<Page<schedule::Model>> {
        q.merchant_id = m.id;
        if q.customer_uid.is_none() {
            let (Some(from), Some(to)) = (q.from, q.to) else {
                return Err(ServiceError::BadRequest(
                    "schedule_from, schedule_to 파라메터가 필요합니다.".into(),
                ));
            };
            if to <= from
                || to
                    .checked_sub(from)
                    .is_none_or(|range| range > MAX_RANGE_SECS)
            {
                return Err(ServiceError::BadRequest(
                    "조회 기간은 3개월 이내여야 합니다. (schedule_from ≤ t < schedule_to)".into(),
                ));
            }
        }
        let (total, list) =
            billing::schedules_page(&self.db.read, &q, paging.page, paging.limit, desc).await?;
        let last = total.div_ceil(paging.limit);
        Ok(Page {
            total,
            previous: paging.page.saturating_sub(1),
            next: if paging.page < last {
                paging.page + 1
            } else {
                0
            },
            list,
        })
    }

    /// Moves a pending schedule (`PUT …/schedule/{merchant_uid}`: one that ran or was revoked is
    /// refused), or schedules again one whose charge failed or that was revoked (`POST
    /// …/reschedule`: a pending, running or paid one is refused). Refusals are 400s, as iamport's.
    pub async fn reschedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
        schedule_at: i64,
        how: Reschedule,
    ) -> ServiceResult<schedule::Model> {
        let now = self.clock.unix();
        future_schedule_at(schedule_at, now)?;
        let s = self.schedule(m, merchant_uid).await?;
        let done = match how {
            Reschedule::Pending => {
                billing::reschedule(&self.db.write, s.id, schedule_at, now).await?
            }
            Reschedule::FailedOrRevoked => {
                billing::rearm_schedule(&self.db.write, s.id, schedule_at, now).await?
            }
        };
        if !done {
            return Err(match how {
                Reschedule::Pending => {
                    ServiceError::BadRequest("이미 실행 혹은 취소된 결제예약입니다.".into())
                }
                Reschedule::FailedOrRevoked => not_rearmable(),
            });
        }
        self.schedule(m, merchant_uid).await
    }

    /// Runs a failed or revoked schedule again now, and answers the payment it made.
    ///
    /// A charge whose KCP outcome is still open is answered too, as its payment (code 0, status
    /// `ready`), not refused: the resolver settles it later and, this being a scheduled charge
    /// that no one was told had failed, honours an approval it finds (service/resolve.rs). A
    /// refusal would tell the merchant "not charged" about a payment that may then be paid. As for
    /// every scheduled charge, the merchant learns the final `paid` or `failed` from its webhook
    /// (spec/iamport-v1.md §4.4, §5), and `GET /payments/{imp_uid}` shows it meanwhile.
    pub async fn retry_schedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
    ) -> ServiceResult<PaymentRecord> {
        let now = self.clock.unix();
        let s = self.schedule(m, merchant_uid).await?;
        if !billing::rearm_schedule(&self.db.write, s.id, now, now).await? {
            return Err(not_rearmable());
        }
        self.run_schedule(s.id).await?;
        let s = self.schedule(m, merchant_uid).await?;
        let p = match &s.imp_uid {
            Some(imp_uid) => payments::by_imp_uid(&self.db.read, Some(m.id), imp_uid)
                .await?
                .ok_or_else(|| ServiceError::Internal("scheduled payment vanished".into()))?,
            // Not recorded on the schedule: the charge's outcome is open (or nothing was charged).
            None => payments::live_by_merchant_uid(&self.db.write, m.id, merchant_uid)
                .await?
                .filter(|p| charged_for(p, &s))
                .ok_or_else(|| {
                    ServiceError::Refused(
                        "예약결제를 실행하지 못했습니다. 잠시 후 다시 조회해 주세요.".into(),
                    )
                })?,
        };
        self.payment_record(p).await
    }

    /// The scheduler's unit of work: claims up to `limit` due schedules in one statement (other
    /// instances skip them, see [`billing::claim_due_schedules`]) and charges them, at most
    /// `settings.schedule_concurrency` at a time, so that one instance keeps several KCP calls and
    /// commits in flight instead of waiting for each in turn. Each charge runs as its own task: a
    /// failing (or panicking) schedule is logged and the others go on. Returns how many were
    /// executed (a released one, whose outcome is still open, does not count).
    ///
    /// The outcomes are recorded on the schedules in groups (one statement for up to
    /// `schedule_concurrency` of them, or whatever has finished after [`FINISH_DELAY`]): the
    /// payment itself, and its webhook, are already durable by then, and a schedule whose outcome
    /// is lost with this instance is taken over once its lease runs out and answered by that
    /// payment.
    pub async fn run_due_schedules(&self, limit: u64) -> ServiceResult<usize> {
        let now = self.clock.unix();
        let claimed =
            billing::claim_due_schedules(&self.db.write, now, now + LEASE_SECS, limit).await?;
        let group = self.settings.schedule_concurrency.max(1);
        let mut charges = futures::stream::iter(claimed)
            .map(|s| {
                let gateway = self.clone();
                let id = s.id;
                tokio::spawn(async move { (id, gateway.charge_claimed_schedule(s).await) })
            })
            .buffer_unordered(group);
        let mut finished = Vec::with_capacity(group);
        let mut ran = 0;
        loop {
            let done = tokio::select! {
                done = charges.next() => done,
                () = tokio::time::sleep(FINISH_DELAY), if !finished.is_empty() => {
                    ran += self.finish_schedules(std::mem::take(&mut finished)).await?;
                    continue;
                }
            };
            match done {
                Some(Ok((_, Ok(Some(f))))) => finished.push(f),
                Some(Ok((_, Ok(None)))) => {}
                Some(Ok((id, Err(e)))) => tracing::error!(schedule_id = id, "scheduler: {e}"),
                Some(Err(e)) => tracing::error!("scheduler task: {e}"),
                None => break,
            }
            if finished.len() >= group {
                ran += self.finish_schedules(std::mem::take(&mut finished)).await?;
            }
        }
        ran += self.finish_schedules(finished).await?;
        Ok(ran)
    }

    /// Charges one schedule if this instance claims it (see [`Self::charge_claimed_schedule`]).
    pub async fn run_schedule(&self, id: i64) -> ServiceResult<bool> {
        let now = self.clock.unix();
        let Some(s) = billing::claim_schedule(&self.db.write, id, now, now + LEASE_SECS).await?
        else {
            return Ok(false);
        };
        match self.charge_claimed_schedule(s).await? {
            Some(f) => Ok(self.finish_schedules(vec![f]).await? == 1),
            None => Ok(false),
        }
    }

    /// Charges a schedule this instance has claimed and returns its outcome to record, or None
    /// when the schedule was given back (outcome still open) or left to another instance. Exactly
    /// once: the claim is a conditional UPDATE, and the charge itself is guarded by the
    /// one-live-payment-per-merchant_uid index, so an instance taking over a dead one's schedule
    /// finds the payment the dead one started.
    async fn charge_claimed_schedule(
        &self,
        s: schedule::Model,
    ) -> ServiceResult<Option<FinishedSchedule>> {
        let now = self.clock.unix();
        let mut claim = Claim {
            id: s.id,
            lease: s.lease_until,
        };
        // A schedule that waited in a batch behind slow charges (KCP timing out) may be near the
        // end of its lease: another instance takes it over once the lease runs out, so the lease
        // is extended before the charge starts, or the schedule is left to that instance.
        if s.lease_until - now < LEASE_SECS / 2 {
            let renewed = now + LEASE_SECS;
            if !billing::renew_lease(&self.db.write, s.id, s.lease_until, renewed).await? {
                return Ok(None);
            }
            claim.lease = renewed;
        }
        let m = self.merchant(s.merchant_id).await?;
        // No look for an earlier payment of this merchant_uid first (an instance whose lease ran
        // out may have started one): the write that opens the charge meets it at the unique index,
        // and the refusal below is answered by that payment.
        let order = ChargeOrder {
            merchant_uid: s.merchant_uid.clone(),
            amount: s.amount,
            currency: s.currency.clone(),
            name: s.name.clone(),
            buyer_name: s.buyer_name.clone(),
            buyer_email: s.buyer_email.clone(),
            buyer_tel: s.buyer_tel.clone(),
            buyer_addr: s.buyer_addr.clone(),
            buyer_postcode: s.buyer_postcode.clone(),
            custom_data: s.custom_data.clone(),
            notice_url: s
                .notice_url
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
            card_quota: u8::try_from(s.card_quota).unwrap_or(0),
            customer_uid_usage: Some(SCHEDULED_USAGE),
            ..ChargeOrder::default()
        };
        let done = self.clock.unix();
        let outcome = self
            .charge_billing_key(
                &m,
                AgainCommand {
                    customer_uid: s.customer_uid.clone(),
                    order,
                },
            )
            .await;
        let finished = |imp_uid: Option<&str>, payment_status, fail_reason: Option<&str>| {
            Ok(Some(FinishedSchedule {
                id: claim.id,
                held_until: claim.lease,
                imp_uid: imp_uid.map(str::to_owned),
                payment_status,
                fail_reason: fail_reason.map(str::to_owned),
                executed_at: done,
            }))
        };
        match outcome {
            Ok(ApprovalOutcome::Paid(p)) => finished(Some(&p.imp_uid), "paid", None),
            Ok(ApprovalOutcome::Declined { payment, .. })
            | Ok(ApprovalOutcome::NetCancelled(payment)) => finished(
                Some(&payment.imp_uid),
                "failed",
                payment.fail_reason.as_deref(),
            ),
            // Outcome open: the resolver settles the payment; a later run records it.
            Ok(ApprovalOutcome::Unknown(_)) => {
                self.release_schedule(claim, done + 30).await?;
                Ok(None)
            }
            // A refusal can also mean that another instance, whose lease on this schedule ran
            // out while it charged, holds the merchant_uid now: its payment decides, not the
            // refusal. Only a charge of this very schedule is adopted: a payment some other call
            // made with the same merchant_uid leaves the schedule failed with the refusal.
            Err(ServiceError::Refused(reason)) => {
                let live = payments::live_by_merchant_uid(&self.db.write, m.id, &s.merchant_uid)
                    .await?
                    .filter(|p| charged_for(p, &s));
                match live.map(|p| (PaymentStatus::from_db(&p.status), p)) {
                    Some((PaymentStatus::Pending, _)) => {
                        self.release_schedule(claim, done + 30).await?;
                        Ok(None)
                    }
                    Some((status, p)) => finished(Some(&p.imp_uid), status.as_iamport(), None),
                    None => finished(None, "failed", Some(&reason)),
                }
            }
            Err(ServiceError::CardRejected(reason)) | Err(ServiceError::BadRequest(reason)) => {
                finished(None, "failed", Some(&reason))
            }
            Err(e) => {
                self.release_schedule(claim, done + 60).await?;
                Err(e)
            }
        }
    }

    /// Records outcomes where this instance still holds the schedule; returns how many it did.
    async fn finish_schedules(&self, done: Vec<FinishedSchedule>) -> ServiceResult<usize> {
        let recorded = billing::finish_schedules(&self.db.write, &done).await?;
        for f in done.iter().filter(|f| !recorded.contains(&f.id)) {
            tracing::warn!(
                schedule_id = f.id,
                "schedule was taken over by another instance while this one charged; its outcome stands"
            );
        }
        Ok(recorded.len())
    }

    async fn release_schedule(&self, claim: Claim, retry_at: i64) -> ServiceResult<()> {
        billing::release_schedule(&self.db.write, claim.id, claim.lease, retry_at).await?;
        Ok(())
    }
}

fn future_schedule_at(schedule_at: i64, now: i64) -> ServiceResult<()> {
    if schedule_at <= now {
        return Err(ServiceError::BadRequest(
            "예약시각(schedule_at)은 현재 시각 이후여야 합니다.".into(),
        ));
    }
    Ok(())
}

/// spec (OpenAPI, reschedule and retry): only a failed or revoked schedule is run again.
fn not_rearmable() -> ServiceError {
    ServiceError::BadRequest(
        "실패했거나 취소된 결제예약만 다시 예약할 수 있습니다. (아직 실행되지 않았거나, 실행 중이거나, 승인된 결제예약)"
            .into(),
    )
}

/// True when `p` is the charge a run of schedule `s` made (possibly by an instance that lost its
/// lease), not another payment that took the merchant_uid.
fn charged_for(p: &payment::Model, s: &schedule::Model) -> bool {
    p.customer_uid_usage.as_deref() == Some(SCHEDULED_USAGE)
        && p.customer_uid.as_deref() == Some(s.customer_uid.as_str())
        && p.amount == s.amount
}

/// A schedule this instance holds: its id and the lease value that is the holder's token.
#[derive(Debug, Clone, Copy)]
struct Claim {
    id: i64,
    lease: i64,
}
