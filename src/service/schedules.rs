//! Scheduled payments (spec/iamport-v1.md §4.4): registration, revocation, lookups, and the run
//! that charges each due schedule exactly once, whatever the number of instances.
use futures::StreamExt;
use sea_orm::Set;

use super::billing::{AgainCommand, CustomerCommand};
use super::lookup::{Page, Paging};
use super::pay::{ApprovalOutcome, ChargeOrder, UNKNOWN_CUSTOMER};
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::store::billing::{self, ScheduleOutcome, ScheduleQuery};
use crate::store::entity::{merchant, payment, schedule};
use crate::store::{is_unique_violation, payments};

/// How long an instance owns a schedule it claimed; a dead instance's schedule is taken over after.
const LEASE_SECS: i64 = 120;
/// The longest window of a schedule list (spec: ≤ 3 months).
const MAX_RANGE_SECS: i64 = 92 * 24 * 3600;

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

    /// Revokes the customer's pending schedules (all of them, or those named).
    pub async fn unschedule(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
        merchant_uids: Option<Vec<String>>,
    ) -> ServiceResult<Vec<schedule::Model>> {
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
            if to <= from || to - from > MAX_RANGE_SECS {
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

    /// Moves a pending schedule, or re-arms an executed one whose charge failed.
    pub async fn reschedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
        schedule_at: i64,
    ) -> ServiceResult<schedule::Model> {
        let now = self.clock.unix();
        if schedule_at <= now {
            return Err(ServiceError::Refused(
                "예약시각(schedule_at)은 현재 시각 이후여야 합니다.".into(),
            ));
        }
        let s = self.schedule(m, merchant_uid).await?;
        let ok = match (s.status.as_str(), s.payment_status.as_deref()) {
            ("scheduled", _) => billing::reschedule(&self.db.write, s.id, schedule_at, now).await?,
            ("executed", Some("failed")) => {
                billing::rearm_schedule(&self.db.write, s.id, schedule_at, now).await?
            }
            _ => false,
        };
        if !ok {
            return Err(ServiceError::Refused(
                "변경할 수 없는 예약결제입니다. (이미 실행되었거나 취소됨)".into(),
            ));
        }
        self.schedule(m, merchant_uid).await
    }

    /// Runs a failed schedule again now.
    pub async fn retry_schedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
    ) -> ServiceResult<PaymentRecord> {
        let now = self.clock.unix();
        let s = self.schedule(m, merchant_uid).await?;
        if !(s.status == "executed" && s.payment_status.as_deref() == Some("failed")) {
            return Err(ServiceError::Refused(
                "실패한 예약결제만 재시도할 수 있습니다.".into(),
            ));
        }
        billing::rearm_schedule(&self.db.write, s.id, now, now).await?;
        self.run_schedule(s.id).await?;
        let s = self.schedule(m, merchant_uid).await?;
        let imp_uid = s.imp_uid.ok_or_else(|| {
            ServiceError::Refused(
                "예약결제를 실행하지 못했습니다. 잠시 후 다시 조회해 주세요.".into(),
            )
        })?;
        let p = payments::by_imp_uid(&self.db.read, Some(m.id), &imp_uid)
            .await?
            .ok_or_else(|| ServiceError::Internal("scheduled payment vanished".into()))?;
        self.payment_record(p).await
    }

    /// The scheduler's unit of work: claims up to `limit` due schedules in one statement (other
    /// instances skip them, see [`billing::claim_due_schedules`]) and charges them, at most
    /// `settings.schedule_concurrency` at a time, so that one instance keeps several KCP calls and
    /// commits in flight instead of waiting for each in turn. Each charge runs as its own task: a
    /// failing (or panicking) schedule is logged and the others go on. Returns how many were
    /// executed (a released one, whose outcome is still open, does not count).
    pub async fn run_due_schedules(&self, limit: u64) -> ServiceResult<usize> {
        let now = self.clock.unix();
        let claimed =
            billing::claim_due_schedules(&self.db.write, now, now + LEASE_SECS, limit).await?;
        let mut charges = futures::stream::iter(claimed)
            .map(|s| {
                let gateway = self.clone();
                let id = s.id;
                tokio::spawn(async move { (id, gateway.charge_claimed_schedule(s).await) })
            })
            .buffer_unordered(self.settings.schedule_concurrency.max(1));
        let mut ran = 0;
        while let Some(done) = charges.next().await {
            match done {
                Ok((_, Ok(true))) => ran += 1,
                Ok((_, Ok(false))) => {}
                Ok((id, Err(e))) => tracing::error!(schedule_id = id, "scheduler: {e}"),
                Err(e) => tracing::error!("scheduler task: {e}"),
            }
        }
        Ok(ran)
    }

    /// Charges one schedule if this instance claims it (see [`Self::charge_claimed_schedule`]).
    pub async fn run_schedule(&self, id: i64) -> ServiceResult<bool> {
        let now = self.clock.unix();
        match billing::claim_schedule(&self.db.write, id, now, now + LEASE_SECS).await? {
            Some(s) => self.charge_claimed_schedule(s).await,
            None => Ok(false),
        }
    }

    /// Charges a schedule this instance has claimed. Exactly once: the claim is a conditional
    /// UPDATE, and the charge itself is guarded by the one-live-payment-per-merchant_uid index, so
    /// an instance taking over a dead one's schedule finds the payment the dead one started.
    async fn charge_claimed_schedule(&self, s: schedule::Model) -> ServiceResult<bool> {
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
                return Ok(false);
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
            customer_uid_usage: Some("payment.scheduled"),
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
        match outcome {
            Ok(ApprovalOutcome::Paid(p)) => self.finish_schedule(claim, paid(&p), done).await,
            Ok(ApprovalOutcome::Declined { payment, .. })
            | Ok(ApprovalOutcome::NetCancelled(payment)) => {
                let failed = ScheduleOutcome {
                    imp_uid: Some(&payment.imp_uid),
                    payment_status: "failed",
                    fail_reason: payment.fail_reason.as_deref(),
                };
                self.finish_schedule(claim, failed, done).await
            }
            // Outcome open: the resolver settles the payment; a later run records it.
            Ok(ApprovalOutcome::Unknown(_)) => {
                self.release_schedule(claim, done + 30).await?;
                Ok(false)
            }
            // A refusal can also mean that another instance, whose lease on this schedule ran
            // out while it charged, holds the merchant_uid now: its payment decides, not the
            // refusal.
            Err(ServiceError::Refused(reason)) => {
                match payments::live_by_merchant_uid(&self.db.write, m.id, &s.merchant_uid).await? {
                    Some(live)
                        if PaymentStatus::from_db(&live.status) == PaymentStatus::Pending =>
                    {
                        self.release_schedule(claim, done + 30).await?;
                        Ok(false)
                    }
                    Some(live) => self.finish_schedule(claim, paid(&live), done).await,
                    None => self.finish_schedule(claim, refused(&reason), done).await,
                }
            }
            Err(ServiceError::CardRejected(reason)) | Err(ServiceError::BadRequest(reason)) => {
                self.finish_schedule(claim, refused(&reason), done).await
            }
            Err(e) => {
                self.release_schedule(claim, done + 60).await?;
                Err(e)
            }
        }
    }

    /// Records the outcome if this instance still holds the schedule; true when it did.
    async fn finish_schedule(
        &self,
        claim: Claim,
        outcome: ScheduleOutcome<'_>,
        now: i64,
    ) -> ServiceResult<bool> {
        let recorded =
            billing::finish_schedule(&self.db.write, claim.id, claim.lease, outcome, now).await?;
        if !recorded {
            tracing::warn!(
                schedule_id = claim.id,
                "schedule was taken over by another instance while this one charged; its outcome stands"
            );
        }
        Ok(recorded)
    }

    async fn release_schedule(&self, claim: Claim, retry_at: i64) -> ServiceResult<()> {
        billing::release_schedule(&self.db.write, claim.id, claim.lease, retry_at).await?;
        Ok(())
    }
}

/// A schedule this instance holds: its id and the lease value that is the holder's token.
#[derive(Debug, Clone, Copy)]
struct Claim {
    id: i64,
    lease: i64,
}

fn paid(p: &payment::Model) -> ScheduleOutcome<'_> {
    ScheduleOutcome {
        imp_uid: Some(&p.imp_uid),
        payment_status: "paid",
        fail_reason: None,
    }
}

fn refused(reason: &str) -> ScheduleOutcome<'_> {
    ScheduleOutcome {
        imp_uid: None,
        payment_status: "failed",
        fail_reason: Some(reason),
    }
}
