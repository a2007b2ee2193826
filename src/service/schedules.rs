//! Scheduled payments (spec/iamport-v1.md §4.4): registration, revocation, lookups, and the run
//! that charges each due schedule exactly once, whatever the number of instances.
use futures::StreamExt;
use sea_orm::Set;

use super::billing::{AgainCommand, CustomerCommand};
use super::inquiry::TradeInquiry;
use super::lookup::{Page, Paging};
use super::pay::{
    conflict_message, instalment_allowed, ApprovalOutcome, ChargeOrder, UNKNOWN_CUSTOMER,
};
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::ids::{new_scheduled_imp_uid, order_no_for};
use crate::domain::payment::{PaymentStatus, PG_KCP_BILLING};
use crate::domain::unix_secs::{read_as_secs_note, too_long_message, LAST_INPUT_SECS};
use crate::pg::{Pg, TradeRef, TradeState};
use crate::store::billing::{self, FinishedSchedule, HandBack, HeldSchedule, ScheduleQuery};
use crate::store::entity::{merchant, payment, pg_attempt, schedule};
use crate::store::payments::UnopenedFailure;
use crate::store::{is_unique_violation, payments};

/// `customer_uid_usage` of a scheduled charge's payment (spec §3).
pub const SCHEDULED_USAGE: &str = "payment.scheduled";
/// The fail reason of a scheduled charge whose call never left openport: its instance stopped
/// between opening the charge and calling KCP ([`Gateway::settle_unsent_charge`]). Nobody was
/// charged or told (no webhook announces it), and its schedule runs again.
pub const NEVER_SENT: &str = "결제 요청이 PG사에 전송되기 전에 처리가 중단되어 청구되지 않았습니다. 결제예약은 다시 실행됩니다.";
/// The shortest time an instance owns a schedule it claimed (see
/// [`Gateway::schedule_lease_secs`]); a dead instance's schedule is taken over after.
const MIN_LEASE_SECS: i64 = 120;
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

/// The refusal of an unschedule whose schedules all have their charge open at KCP
/// ([`Gateway::unschedule`]), followed by the list of them ([`in_progress_list`]).
pub const IN_PROGRESS: &str = "결제가 진행 중인 예약건이라 취소할 수 없습니다. 결과는 GET /payments/{imp_uid}로 확인해 주세요.";
/// The `message` of an unschedule that revoked some schedules and left others whose charge is
/// open at KCP, followed by the list of those ([`Unscheduled::note`]).
pub const LEFT_IN_PROGRESS: &str = "결제가 진행 중인 예약건은 취소되지 않았습니다. 결과는 GET /payments/{imp_uid}로 확인해 주세요.";
/// The most schedules in progress an answer names one by one; more are counted.
const IN_PROGRESS_NAMED: usize = 10;

/// What [`Gateway::unschedule`] did.
#[derive(Debug, Clone)]
pub struct Unscheduled {
    /// The schedules revoked (never empty: an unschedule that revokes nothing is refused).
    pub revoked: Vec<schedule::Model>,
    /// Those it was asked to revoke and left, their charge open at KCP (`executing` with an
    /// `imp_uid`): they end as that payment does.
    pub in_progress: Vec<schedule::Model>,
}

impl Unscheduled {
    /// The answer's `message` beside the revoked schedules: which were left in progress, if any
    /// (iamport's answer lists only the revoked ones, so without it those left could not be told
    /// from merchant_uids that name nothing).
    pub fn note(&self) -> Option<String> {
        in_progress_list(&self.in_progress).map(|named| format!("{LEFT_IN_PROGRESS} {named}"))
    }
}

/// `(merchant_uid: …, imp_uid: …)` for each schedule of `charging` (at most
/// [`IN_PROGRESS_NAMED`], then how many more); None when there is none.
fn in_progress_list(charging: &[schedule::Model]) -> Option<String> {
    if charging.is_empty() {
        return None;
    }
    let mut named: Vec<String> = charging
        .iter()
        .take(IN_PROGRESS_NAMED)
        .map(|s| {
            format!(
                "(merchant_uid: {}, imp_uid: {})",
                s.merchant_uid,
                s.imp_uid.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if charging.len() > IN_PROGRESS_NAMED {
        named.push(format!("외 {}건", charging.len() - IN_PROGRESS_NAMED));
    }
    Some(named.join(" "))
}

#[derive(Debug, Clone)]
pub struct ScheduleItem {
    pub schedule_at: i64,
    pub order: ChargeOrder,
}

/// A schedule list's window `from ≤ schedule_at < to`: not empty and at most 3 months long
/// (spec: "최대 3개월 단위로 조회가 가능합니다"), on every list that is given both ends. Each
/// refusal says which: ends given the wrong way round were told "at most 3 months", which sent the
/// merchant looking at the length of a range whose fault was its order.
fn within_range(from: i64, to: i64) -> ServiceResult<()> {
    if to <= from {
        return Err(ServiceError::BadRequest(
            "조회 종료 시각(to)은 시작 시각(from)보다 뒤여야 합니다. (from ≤ t < to)".into(),
        ));
    }
    if to
        .checked_sub(from)
        .is_none_or(|range| range > MAX_RANGE_SECS)
    {
        return Err(ServiceError::BadRequest(
            "조회 기간은 3개월 이내여야 합니다. (from ≤ t < to)".into(),
        ));
    }
    Ok(())
}

impl Gateway {
    /// Registers schedules for a customer (issuing a billing key first when card data is given and
    /// the customer has none). All or nothing: one bad item refuses the whole request.
    pub async fn schedule_payments(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
        customer_id: Option<String>,
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
            // Text KCP would be refused (script content) fails the schedule now, not when it is
            // due and no one is waiting for the answer.
            it.order.kcp_text()?;
            unix_secs(it.schedule_at, Some(&it.order.merchant_uid))?;
            if it.schedule_at <= now {
                return Err(ServiceError::Refused(format!(
                    "{}{} (merchant_uid: {})",
                    NOT_FUTURE,
                    note_of(it.schedule_at),
                    it.order.merchant_uid
                )));
            }
        }
        // Everything that refuses the request is checked before a billing key may be issued at
        // KCP for it: a refused request writes nothing. The transaction below checks again (a
        // concurrent request may take a merchant_uid meanwhile; then only the key stays, which
        // this request's card data asked for).
        let mut named = std::collections::HashSet::new();
        for it in &items {
            let uid = it.order.merchant_uid.as_str();
            if !named.insert(uid) {
                return Err(already_scheduled(uid));
            }
            if let Some(earlier) = billing::schedule_by_uid(&self.db.read, m.id, uid).await? {
                return Err(taken_by_schedule(&earlier));
            }
            if let Some(live) = payments::live_by_merchant_uid(&self.db.read, m.id, uid).await? {
                return Err(taken_by(uid, &live.imp_uid));
            }
            // A merchant_uid prepared with another amount (spec §4.3) is refused when it is due,
            // as onetime and again refuse it at once: refused now, while the merchant waits for
            // the answer, not as a failed payment and webhook no one waits for. The run checks
            // again (`payments::open_charge`): a prepare made or changed after this still holds.
            self.refuse_if_prepared_otherwise(m, uid, it.order.amount, &it.order.currency)
                .await?;
        }
        if billing::active_key(&self.db.read, m.id, customer_uid)
            .await?
            .is_none()
        {
            match card {
                Some(c) => {
                    self.register_customer_as(m, c, super::key_issuances::IssuanceKind::Schedule)
                        .await?
                }
                None => return Err(ServiceError::Refused(UNKNOWN_CUSTOMER.into())),
            };
        }
        // OpenAPI (`POST /subscribe/payments/schedule`): a buyer field left out is the billing
        // key's customer field ("누락되면 빌링키 등록 시 입력한 customer_name … 이 사용됩니다").
        let or_customer = |given: &Option<String>, registered: &Option<String>| {
            given.clone().or_else(|| registered.clone())
        };
        let txn = self.db.write.begin().await?;
        // The key read again, locked on PostgreSQL, in the transaction that writes the schedules:
        // a customer deleted since the read above (or deleted while this writes) would otherwise
        // keep a `scheduled` schedule past its delete, to fail when due with a `failed` webhook.
        // Either this commits first and the delete, which waits for the lock, revokes these
        // schedules with the others, or the key is read retired and the request refused.
        let Some(key) = billing::active_key_locked(&txn, m.id, customer_uid).await? else {
            return Err(ServiceError::Refused(UNKNOWN_CUSTOMER.into()));
        };
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let o = it.order;
            // A merchant_uid that already has a payment cannot be charged again: scheduling it
            // would only record a refusal later (and never adopt that other payment).
            if let Some(live) = payments::live_by_merchant_uid(&txn, m.id, &o.merchant_uid).await? {
                return Err(taken_by(&o.merchant_uid, &live.imp_uid));
            }
            let row = schedule::ActiveModel {
                merchant_id: Set(m.id),
                customer_uid: Set(customer_uid.to_string()),
                customer_id: Set(or_customer(&customer_id, &key.customer_id)),
                merchant_uid: Set(o.merchant_uid.clone()),
                schedule_at: Set(it.schedule_at),
                amount: Set(o.amount),
                currency: Set(o.currency.clone()),
                name: Set(o.name.clone()),
                buyer_name: Set(or_customer(&o.buyer_name, &key.customer_name)),
                buyer_email: Set(or_customer(&o.buyer_email, &key.customer_email)),
                buyer_tel: Set(or_customer(&o.buyer_tel, &key.customer_tel)),
                buyer_addr: Set(or_customer(&o.buyer_addr, &key.customer_addr)),
                buyer_postcode: Set(or_customer(&o.buyer_postcode, &key.customer_postcode)),
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
                    return Err(already_scheduled(&o.merchant_uid));
                }
                Err(e) => return Err(e.into()),
            }
        }
        txn.commit().await?;
        Ok(out)
    }

    /// Revokes pending schedules: the customer's (all of them, or those named), or the named ones
    /// of any customer. Those among them whose charge is open at KCP are not revocable (that
    /// payment may yet be approved: `billing::revocable`) and are named apart
    /// ([`Unscheduled::in_progress`]): with nothing revoked, the refusal says a charge is in
    /// progress and names each one's merchant_uid and imp_uid ([`IN_PROGRESS`]), not "nothing to
    /// revoke", which a merchant's "cancel my subscription" flow read as "already gone" while the
    /// buyer was charged a moment later (review rS, finding 1). The others are revoked as before,
    /// as iamport revokes those it can.
    pub async fn unschedule(
        &self,
        m: &merchant::Model,
        customer_uid: Option<&str>,
        merchant_uids: Option<Vec<String>>,
    ) -> ServiceResult<Unscheduled> {
        if customer_uid.is_none() && merchant_uids.is_none() {
            return Err(ServiceError::BadRequest(
                "customer_uid 또는 merchant_uid 파라메터가 필요합니다.".into(),
            ));
        }
        let now = self.clock.unix();
        let pending =
            billing::pending_schedules(&self.db.read, m.id, customer_uid, merchant_uids.as_deref())
                .await?;
        // All or none: a write failing part-way must not leave some revoked behind an error
        // answer, which a retry would then no longer list.
        let txn = self.db.write.begin().await?;
        let mut revoked = Vec::new();
        for s in pending {
            if billing::revoke_schedule(&txn, s.id, now).await? {
                revoked.push(schedule::Model {
                    status: "revoked".into(),
                    revoked_at: Some(now),
                    updated_at: now,
                    ..s
                });
            }
        }
        txn.commit().await?;
        // Read after the revocation, from the writer: one whose run opened its charge between the
        // read above and its revoke is among them.
        let in_progress = billing::schedules_charging(
            &self.db.write,
            m.id,
            customer_uid,
            merchant_uids.as_deref(),
        )
        .await?;
        if revoked.is_empty() {
            return Err(ServiceError::Refused(
                match in_progress_list(&in_progress) {
                    Some(named) => format!("{IN_PROGRESS} {named}"),
                    None => "취소할 예약결제 기록이 존재하지 않습니다.".into(),
                },
            ));
        }
        Ok(Unscheduled {
            revoked,
            in_progress,
        })
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
        match (q.from, q.to) {
            (Some(from), Some(to)) => within_range(from, to)?,
            // The per-customer lists keep both optional (docs/api.md): iamport's OpenAPI marks
            // them required, but a client that lists all of a customer's schedules is served.
            _ if q.customer_uid.is_some() => {}
            _ => {
                return Err(ServiceError::BadRequest(
                    "schedule_from, schedule_to 파라메터가 필요합니다.".into(),
                ))
            }
        }
        let (total, list) =
            billing::schedules_page(&self.db.read, &q, paging.page, paging.limit, desc).await?;
        Ok(Page::new(total, paging, list))
    }

    /// Moves a pending schedule (`PUT …/schedule/{merchant_uid}`: one that ran or was revoked is
    /// refused, and so is one whose charge is open; one a run claimed but did not charge, shown as
    /// `scheduled`, is moved and its claim ended), or schedules again one whose charge failed or
    /// that was revoked (`POST …/reschedule`: a pending, running or paid one is refused). Refusals
    /// are 400s, as iamport's.
    pub async fn reschedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
        schedule_at: i64,
        how: Reschedule,
    ) -> ServiceResult<schedule::Model> {
        let now = self.clock.unix();
        unix_secs(schedule_at, None)?;
        future_schedule_at(schedule_at, now)?;
        let s = self.schedule(m, merchant_uid).await?;
        let armed = match how {
            // One that ran or was revoked is refused by the move's own write, for what it is.
            Reschedule::Pending => movable(&s),
            Reschedule::FailedOrRevoked => {
                self.refuse_unless_rearmable(m, &s, "다시 예약").await?;
                true
            }
        };
        // A schedule armed for a new time is checked against its merchant_uid's prepared amount
        // as a registration is (spec §4.3): prepared with another amount since (or, for one that
        // failed, the very refusal it failed with), its run would be refused before charging, as
        // a failed payment and a `failed` webhook no one waits for; the merchant moving it waits
        // for the answer. The same words as registration's, as a 400 like every other refusal of
        // these two calls (see `future_schedule_at`). Nothing is written; the run checks again.
        if armed {
            self.refuse_if_prepared_otherwise(m, &s.merchant_uid, s.amount, &s.currency)
                .await
                .map_err(|e| match e {
                    ServiceError::Refused(why) => ServiceError::BadRequest(why),
                    e => e,
                })?;
        }
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
                Reschedule::FailedOrRevoked => self.not_rearmed(m, &s, "다시 예약").await,
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
    ///
    /// The schedule is re-armed and claimed by one conditional UPDATE: re-armed first, it was due
    /// at once and the background scheduler could claim it before this call did, which then
    /// answered "not run" while the scheduler charged it.
    ///
    /// Never an HTTP 500 a merchant may read as "nothing happened" (the rule of
    /// `Gateway::unknown_after_db_error`) when something did or will: once a charge has its
    /// outcome, a failed record of it on the schedule is logged and left to the next claim (which
    /// records it from the payment the schedule names), and the answer is still that payment. A
    /// run that fails before its charge opens gives its claim up, the schedule back as it was
    /// (failed or revoked): left claimed, the scheduler would charge it once the lease ran out,
    /// after this call had answered an error. Only then is the error the answer.
    pub async fn retry_schedule(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
    ) -> ServiceResult<PaymentRecord> {
        let now = self.clock.unix();
        let s = self.schedule(m, merchant_uid).await?;
        self.refuse_unless_rearmable(m, &s, "재시도").await?;
        // Nothing re-armed, charged or announced on an instance whose clock is off
        // (service/clock_check.rs); one that turns off after the claim gives the claim up below.
        self.refuse_while_skewed()?;
        // The charge asks for the merchant's KCP only after the claim re-armed the schedule, and
        // a refusal there fails the schedule with a payment and its `failed` webhook: a merchant
        // of the other mode than this instance (`Connectors::for_merchant`: a live one on an
        // instance in test mode) or an unusable KCP configuration is refused here, nothing
        // re-armed.
        self.connectors.for_merchant(m, &self.secrets)?;
        let claim = HeldSchedule {
            id: s.id,
            token: billing::new_claim_token(),
        };
        let claimed = match billing::rearm_and_claim(
            &self.db.write,
            s.id,
            now,
            now + self.schedule_lease_secs(),
            claim.token,
        )
        .await
        {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return Err(self.not_rearmed(m, &s, "재시도").await),
            // The claim may have been written all the same (its answer lost): given up as well.
            Err(e) => return self.give_up_retry(m, claim, &s, e.into()).await,
        };
        match self.charge_claimed_schedule(claimed).await {
            Ok(ScheduleRun::Finished(f)) => match f.imp_uid.clone() {
                Some(imp_uid) => {
                    self.finish_or_leave(vec![f]).await;
                    self.retry_answer(m, &imp_uid).await
                }
                // Refused before any charge opened: a payment of the merchant's own holds the
                // merchant_uid. Recorded, as a background run records it, the refusal made the
                // revoked or failed schedule `executed`/`failed` with no payment (a revoked one
                // lost its `revoked_at`, a failed one its payment and reason) behind an answer
                // saying nothing ran (r4 finding 2): given up like the other pre-charge failures.
                None => {
                    let refused = ServiceError::Refused(f.fail_reason.unwrap_or_default());
                    self.give_up_retry(m, claim, &s, refused).await
                }
            },
            Ok(ScheduleRun::Released { imp_uid }) => self.retry_answer(m, &imp_uid).await,
            Ok(ScheduleRun::Left) => Err(self.retry_left(s.id).await),
            Err(e) => self.give_up_retry(m, claim, &s, e).await,
        }
    }

    /// The answer of a retry whose run charged nothing because its claim no longer held schedule
    /// `id` (`ScheduleRun::Left`). "Not charged" holds for good only of a schedule revoked
    /// meanwhile. One the resolver handed back `scheduled` (the retry stalled past its charge's
    /// lease before calling KCP, and the charge was closed as never sent: review r3 F5), or that
    /// another run holds or has run, is charged by the scheduler; told "not charged", a merchant
    /// charging the customer another way would charge the buyer twice. Those answer
    /// [`RETRY_UNSETTLED`], which says how to tell, as does a schedule that cannot be read.
    async fn retry_left(&self, id: i64) -> ServiceError {
        let status = match billing::schedule_by_id(&self.db.write, id).await {
            Ok(s) => s.map(|s| s.status),
            Err(e) => {
                tracing::error!(
                    schedule_id = id,
                    "retry left its schedule, which was not read: {e}"
                );
                None
            }
        };
        retry_left_refusal(status.as_deref())
    }

    /// spec §4.3 for a schedule of `merchant_uid` charging `amount` in `currency`: refused (code 1,
    /// the words onetime and again answer, naming the merchant_uid, which a request of several
    /// schedules needs) when the merchant_uid is prepared with another amount or currency.
    async fn refuse_if_prepared_otherwise(
        &self,
        m: &merchant::Model,
        merchant_uid: &str,
        amount: i64,
        currency: &str,
    ) -> ServiceResult<()> {
        self.check_prepared(m.id, merchant_uid, amount, currency)
            .await
            .map_err(|e| match e {
                ServiceError::Refused(why) => {
                    ServiceError::Refused(format!("{why} (merchant_uid: {merchant_uid})"))
                }
                e => e,
            })
    }

    /// What `…/retry` and `…/reschedule` check before a failed or revoked schedule is armed again
    /// (`what` names the call, as [`not_rearmable`] does). The state first: a schedule that could
    /// not be armed again anyway (pending, running, paid) is the OpenAPI's 400 whatever became of
    /// its customer, not the 404 below. Then iamport's 404 "존재하지 않는 결제예약 혹은 빌링키":
    /// nothing is re-armed, charged or announced for a customer whose key was deleted (which
    /// revoked the schedule). Re-armed, such a schedule would stand `scheduled` though it can never
    /// be charged, and when due record a failed payment with a `failed` webhook for a customer the
    /// merchant deleted (r5-billing finding 2). A customer registered again has an active key and
    /// is re-armed. The write that re-arms it checks both again, in its own statement
    /// (`billing::rearm_schedule`, `billing::rearm_and_claim`): a delete committed after this read
    /// leaves the schedule as it was, refused as here ([`Self::not_rearmed`]).
    async fn refuse_unless_rearmable(
        &self,
        m: &merchant::Model,
        s: &schedule::Model,
        what: &str,
    ) -> ServiceResult<()> {
        rearm_refusal(&self.db.read, m, s, what).await
    }

    /// The refusal of a re-arm whose write changed nothing: that of
    /// [`Self::refuse_unless_rearmable`] for the schedule and key as they now are, read where the
    /// write was made (a replica may not have what made it fail yet); the state's 400 when they
    /// pass again (a customer deleted and registered again meanwhile).
    async fn not_rearmed(
        &self,
        m: &merchant::Model,
        s: &schedule::Model,
        what: &str,
    ) -> ServiceError {
        let current = match billing::schedule_by_id(&self.db.write, s.id).await {
            Ok(Some(current)) => current,
            Ok(None) => return not_rearmable(what),
            Err(e) => return e.into(),
        };
        match rearm_refusal(&self.db.write, m, &current, what).await {
            Err(e) => e,
            Ok(()) => not_rearmable(what),
        }
    }

    /// A retry's answer: the payment its run made or found, or the conflict that holds it for an
    /// operator (KCP holds its approval: no webhook will come until the operator settles it). A
    /// failed read of it is no HTTP 500 either (the charge happened): the answer names the
    /// payment to look up.
    async fn retry_answer(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> ServiceResult<PaymentRecord> {
        let read = match payments::by_imp_uid(&self.db.write, Some(m.id), imp_uid).await {
            Ok(Some(p)) => match self.held_by_conflict(&p).await {
                Ok(true) => return Err(ServiceError::Refused(conflict_message(imp_uid))),
                Ok(false) => self.payment_record(p).await,
                Err(e) => Err(e),
            },
            Ok(None) => Err(ServiceError::Internal("scheduled payment vanished".into())),
            Err(e) => Err(e.into()),
        };
        read.map_err(|e| {
            tracing::error!(%imp_uid, "retried schedule's payment not read: {e}");
            ServiceError::Refused(format!(
                "예약결제를 실행했으나 결과를 불러오지 못했습니다. 결제 결과는 GET /payments/{imp_uid} 로 확인해 주세요. (imp_uid: {imp_uid})"
            ))
        })
    }

    /// A retry whose claim or run failed (`e`) before a charge opened, as far as it knows: its
    /// claim is given up, the schedule restored to `prior` (`billing::give_up_claim`), so that
    /// nothing runs it once the answer says it failed. Then `e` is the answer (a 500 that says
    /// "try again", which is now true, or the refusal that a payment of the merchant's holds the
    /// merchant_uid, the schedule left as it was). When the claim turns out to have opened a
    /// charge, that payment is the answer; when the schedule cannot be restored, the answer says
    /// how to tell whether it will still run.
    async fn give_up_retry(
        &self,
        m: &merchant::Model,
        claim: HeldSchedule,
        prior: &schedule::Model,
        e: ServiceError,
    ) -> ServiceResult<PaymentRecord> {
        match billing::give_up_claim(&self.db.write, claim, prior).await {
            Ok(true) => return Err(e),
            Ok(false) => {}
            Err(lost) => {
                tracing::error!(
                    schedule_id = claim.id,
                    "retry failed ({e}) and its claim was not given up: {lost}"
                );
                return Err(ServiceError::Refused(RETRY_UNSETTLED.into()));
            }
        }
        // Not held, or held with a charge open: the schedule tells which.
        match billing::schedule_by_id(&self.db.write, claim.id).await {
            Ok(Some(s)) if s.claim_token == claim.token && s.status == "executing" => {
                match s.imp_uid {
                    Some(imp_uid) => self.retry_answer(m, &imp_uid).await,
                    None => Err(e),
                }
            }
            // This retry's claim does not hold it: nothing of this retry runs.
            Ok(_) => Err(e),
            Err(lost) => {
                tracing::error!(
                    schedule_id = claim.id,
                    "retry failed ({e}) and its schedule was not read: {lost}"
                );
                Err(ServiceError::Refused(RETRY_UNSETTLED.into()))
            }
        }
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
    /// payment itself, and its webhook, are already durable by then, and the schedule names its
    /// payment since the charge opened, so an outcome that is not recorded (the write fails, the
    /// process stops, the lease runs out) is recorded from that payment by whoever claims the
    /// schedule next, never charged again. A failed write of outcomes therefore does not end the
    /// run: it goes on waiting for its other charges, whose outcomes it records as they come.
    pub async fn run_due_schedules(&self, limit: u64) -> ServiceResult<usize> {
        // Due times and leases were written by other instances' clocks: an instance whose clock
        // is off the database's (service/clock_check.rs) would charge early or take over a
        // charge whose holder is still working, so it leaves schedules to the others. An instance
        // older than its database (service/schema_check.rs) charges nothing either.
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(0);
        }
        let now = self.clock.unix();
        let claimed = billing::claim_due_schedules(
            &self.db.write,
            self.served_merchants(),
            now,
            now + self.schedule_lease_secs(),
            limit,
        )
        .await?;
        let group = self.settings.schedule_concurrency.max(1);
        let mut charges = futures::stream::iter(claimed)
            .map(|s| {
                let gateway = self.clone();
                let claim = HeldSchedule::of(&s);
                tokio::spawn(async move {
                    let run = gateway.charge_claimed_schedule(s).await;
                    if run.is_err() {
                        // Failed before its charge opened, or before its outcome was known (a
                        // database or configuration error, this host's clock found off): run
                        // again in a minute rather than once the whole lease has run out.
                        let again = gateway.clock.unix() + 60;
                        gateway.release_or_leave(claim, again).await;
                    }
                    (claim.id, run)
                })
            })
            .buffer_unordered(group);
        let mut finished = Vec::with_capacity(group);
        let mut ran = 0;
        loop {
            let done = tokio::select! {
                done = charges.next() => done,
                () = tokio::time::sleep(FINISH_DELAY), if !finished.is_empty() => {
                    ran += self.finish_or_leave(std::mem::take(&mut finished)).await;
                    continue;
                }
            };
            match done {
                Some(Ok((_, Ok(ScheduleRun::Finished(f))))) => finished.push(f),
                Some(Ok((_, Ok(_)))) => {}
                // Another charge of its merchant_uid being decided, or this host's clock found
                // off in the middle of the batch (the clock check warns of that once, not once
                // per schedule): not an error, the schedule runs again in a minute.
                Some(Ok((
                    id,
                    Err(e @ (ServiceError::InProgress(_) | ServiceError::ClockSkewed)),
                ))) => {
                    tracing::info!(schedule_id = id, "scheduler: given back: {e}")
                }
                Some(Ok((id, Err(e)))) => tracing::error!(schedule_id = id, "scheduler: {e}"),
                Some(Err(e)) => tracing::error!("scheduler task: {e}"),
                None => break,
            }
            if finished.len() >= group {
                ran += self.finish_or_leave(std::mem::take(&mut finished)).await;
            }
        }
        ran += self.finish_or_leave(finished).await;
        Ok(ran)
    }

    /// How long one charge of a schedule may take: its KCP attempt is held for at most
    /// `Config::attempt_hold` (the call, the inquiry after a lost answer, and a margin; three
    /// `kcp.timeout_ms`), and the writes around it fit in that margin.
    fn charge_hold_secs(&self) -> i64 {
        self.settings.lease_secs
    }

    /// How long a claim holds a schedule: two charges' time, at least [`MIN_LEASE_SECS`]. A
    /// charge only starts with more than one charge's time left on the lease (see
    /// [`Self::charge_claimed_schedule`]), so a run is not taken over in the middle of a charge
    /// unless it stalls; derived from the KCP timeout, since a fixed lease shorter than a charge
    /// (120 s against 91 s of attempt hold by default, less than that with a longer timeout)
    /// let another instance take a schedule over while its charge was still running.
    fn schedule_lease_secs(&self) -> i64 {
        MIN_LEASE_SECS.max(self.charge_hold_secs().saturating_mul(2))
    }

    /// Charges a schedule this instance has claimed and returns what came of it: an outcome to
    /// record, the schedule given back (outcome still open), or left to whoever holds it now. An
    /// error leaves the claim to the caller (the batch gives it back for a minute, a retry gives
    /// it up); the schedule then names a payment exactly when a charge was opened. So does this
    /// host's clock found off (`ServiceError::ClockSkewed`, which may turn in the middle of a
    /// batch): nothing was asked of KCP, and an instance whose clock is right charges it; and a
    /// refusal that may not last (another charge of the merchant_uid being decided:
    /// `ServiceError::InProgress`), after which a later run charges the schedule or is refused. Exactly
    /// once: the claim is a conditional UPDATE; the charge opens only while this run still holds
    /// the claim, and names its payment on the schedule in the same write
    /// (`payments::open_charge`), so a run that claims the schedule later (its predecessor's lease
    /// ran out, its outcome was never recorded) finds that payment, failed ones included, and
    /// answers with it instead of charging again.
    async fn charge_claimed_schedule(&self, s: schedule::Model) -> ServiceResult<ScheduleRun> {
        let now = self.clock.unix();
        let claim = HeldSchedule::of(&s);
        if let Some(imp_uid) = &s.imp_uid {
            match payments::by_imp_uid(&self.db.write, Some(s.merchant_id), imp_uid).await? {
                Some(p) => match self.answer_with(claim, p).await? {
                    Some(run) => return Ok(run),
                    // Closed as never sent, and the schedule not handed back (that write failed,
                    // or its holder stopped): charged now, under this claim, as a new payment.
                    None => tracing::info!(
                        schedule_id = s.id,
                        %imp_uid,
                        "the schedule's charge never reached KCP; charging it now"
                    ),
                },
                // Written together with the schedule's imp_uid: not expected. Nothing holds this
                // imp_uid, so nothing was charged under it.
                None => tracing::error!(
                    schedule_id = s.id,
                    %imp_uid,
                    "schedule names a payment that does not exist; charging it"
                ),
            }
        }
        // A schedule that waited in a batch behind slow charges (KCP timing out) may be near the
        // end of its lease: another instance takes it over once the lease runs out, so the lease
        // is extended before the charge starts, or the schedule is left to that instance.
        if s.lease_until - now <= self.charge_hold_secs() {
            let renewed = now + self.schedule_lease_secs();
            if !billing::renew_lease(&self.db.write, claim, renewed).await? {
                return Ok(ScheduleRun::Left);
            }
        }
        let m = self.merchant(s.merchant_id).await?;
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
            schedule: Some(claim),
            ..ChargeOrder::default()
        };
        let started = self.clock.unix();
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
            // This run stalled past its attempt's lease before calling KCP, and whoever claimed
            // the attempt closed it as never sent and handed the schedule back (or will, or the
            // next claim charges it): nothing to record, and no call was made.
            Ok(ApprovalOutcome::Declined { payment: p, .. }) if closed_unsent(&p) => {
                Ok(ScheduleRun::Left)
            }
            Ok(ApprovalOutcome::Paid(p))
            | Ok(ApprovalOutcome::Declined { payment: p, .. })
            | Ok(ApprovalOutcome::NetCancelled(p)) => {
                Ok(ScheduleRun::Finished(recorded(claim, &p, started)))
            }
            // Outcome open: the resolver settles the payment, which the schedule names; a later
            // run records it.
            Ok(ApprovalOutcome::Unknown(p)) => {
                self.release_or_leave(claim, started + 30).await;
                Ok(ScheduleRun::Released { imp_uid: p.imp_uid })
            }
            // KCP holds an approval an operator has to settle: the schedule is neither failed
            // (its `…/retry` would charge again) nor run again soon; the operator's verdict
            // records it (`Gateway::mark_reconciled`).
            Ok(ApprovalOutcome::Conflict(p)) => {
                self.release_or_leave(claim, self.clock.unix() + CONFLICT_LOOK_SECS)
                    .await;
                Ok(ScheduleRun::Released { imp_uid: p.imp_uid })
            }
            // Taken over, revoked or moved before the charge opened: nothing was charged here.
            Err(ServiceError::ScheduleNotHeld) => Ok(ScheduleRun::Left),
            // Refused before any charge opened (nothing was sent to KCP). After a payment of the
            // merchant_uid that is this schedule's own charge (one an older openport made without
            // naming it on the schedule) was adopted and answers it:
            // - Another request's charge of the merchant_uid is being decided
            //   (`ServiceError::InProgress`): how it ends decides (failed, it frees the
            //   merchant_uid and a later run charges the schedule; paid, a later run is refused as
            //   below). Failed now, the schedule would stay failed (with a failed payment and
            //   `failed` webhook when that charge had ended meanwhile) though nothing was wrong
            //   with it. The run ends in the error, as a database error does: the batch gives the
            //   schedule back for a minute, a retry gives its claim up and answers the refusal.
            // - A settled payment of the merchant's holds the merchant_uid (paid, cancelled, a
            //   virtual account waiting for its deposit), or one KCP holds an approval of for an
            //   operator (`pay::conflict_message`: nothing of the merchant_uid is charged before
            //   the operator has checked, which may take days): the schedule fails with the
            //   refusal, without a payment or webhook; the merchant may retry or reschedule it.
            //   A retry meeting it gives its claim up instead and answers the refusal, the
            //   schedule left as it was (`Gateway::retry_schedule`).
            // - The schedule's own refusals (no billing key, prepared with another amount) and
            //   those of the order's rules (instalments, text): a failed payment KCP never saw,
            //   with its `failed` webhook.
            Err(refusal @ (ServiceError::Refused(_) | ServiceError::InProgress(_))) => {
                let reason = refusal.to_string();
                match payments::live_by_merchant_uid(&self.db.write, m.id, &s.merchant_uid).await? {
                    // One that turns out never sent was closed and the schedule handed back: the
                    // next pass charges it.
                    Some(p) if charged_for(&p, &s) => Ok(self
                        .answer_with(claim, p)
                        .await?
                        .unwrap_or(ScheduleRun::Left)),
                    _ if matches!(refusal, ServiceError::InProgress(_)) => Err(refusal),
                    Some(_) => Ok(ScheduleRun::Finished(unopened(
                        claim, None, &reason, started,
                    ))),
                    None => self.fail_unopened(&m, &s, claim, &reason, started).await,
                }
            }
            Err(ServiceError::CardRejected(reason)) | Err(ServiceError::BadRequest(reason)) => {
                self.fail_unopened(&m, &s, claim, &reason, started).await
            }
            Err(e) => Err(e),
        }
    }

    /// Answers a claimed schedule with the payment a run of it opened: its outcome is recorded on
    /// the schedule as it stands, a failure as much as an approval (the merchant has had that
    /// payment's webhook). One whose outcome is open is settled now if it is due and nobody holds
    /// its attempt, as a charge meeting it would; else the schedule is given back for a later run.
    /// None: that charge never reached KCP ([`Self::settle_unsent_charge`]), so nothing is
    /// recorded and the schedule is to be charged again.
    async fn answer_with(
        &self,
        claim: HeldSchedule,
        p: payment::Model,
    ) -> ServiceResult<Option<ScheduleRun>> {
        let p = if PaymentStatus::from_db(&p.status) == PaymentStatus::Pending {
            self.try_resolve_payment(&p, false).await?;
            payments::by_id(&self.db.write, p.id)
                .await?
                .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?
        } else {
            p
        };
        if self.never_sent(&p).await? {
            return Ok(None);
        }
        if PaymentStatus::from_db(&p.status) == PaymentStatus::Pending {
            let wait = if self.held_by_conflict(&p).await? {
                CONFLICT_LOOK_SECS
            } else {
                30
            };
            self.release_or_leave(claim, self.clock.unix() + wait).await;
            return Ok(Some(ScheduleRun::Released { imp_uid: p.imp_uid }));
        }
        Ok(Some(ScheduleRun::Finished(recorded(
            claim,
            &p,
            p.started_at,
        ))))
    }

    /// Whether `p` is a scheduled charge closed as never sent, by its attempt
    /// (`payments::NOT_SENT`), not by its words alone: the schedule is charged again on it.
    async fn never_sent(&self, p: &payment::Model) -> ServiceResult<bool> {
        Ok(closed_unsent(p) && payments::approval_never_sent(&self.db.write, p.id).await?)
    }

    /// Settles a scheduled charge's approval attempt that its holder left `unsent` (the instance
    /// stopped, or stalled past its lease, between opening the charge and calling KCP; the mark
    /// before the call, `Gateway::mark_sending`, is conditional on holding the attempt, so this
    /// claim also means no call will be made). Closed as never sent ([`payments::NOT_SENT`]) with
    /// its payment `failed` ([`NEVER_SENT`]) and no webhook, and its schedule handed back
    /// (`billing::hand_back_unsent`): the next scheduler pass of any instance charges it, once,
    /// as a new payment with its own KCP order number (the claim, the one live payment per
    /// merchant_uid and the write opening the charge decide as for any run). None then.
    ///
    /// Failing it instead, as an attempt whose answer was lost is failed when KCP has nothing,
    /// told the merchant "failed" (webhook, schedule `executed`/`failed`) about a charge nobody
    /// made, to be retried by hand (review r3, kill -9 under load). A key-in, `onetime` or
    /// `again` charge is not marked: its request died with the instance, and failing it is right.
    ///
    /// KCP is asked by the order number first: the mark is the proof, but a database restored
    /// from a backup taken between the charge's opening and its mark holds an attempt that reads
    /// never sent while KCP may hold its approval. Anything found there is settled by inquiry as
    /// any other scheduled charge (`Some`, [`Gateway::resolve_approval`]); an inquiry that fails
    /// leaves the attempt open for a later look, still `unsent`. Its "no such trade" is proof only
    /// where [`Gateway::absence_is_final`] says so (not against live KCP, whose inquiry by order
    /// number is undocumented): otherwise the close records the second look any failure on such
    /// an answer gets ([`Gateway::schedule_absence_recheck`]), so an approval KCP holds under a
    /// mark the database lost (a restored backup, a promoted asynchronous standby) is found and
    /// net-cancelled, not left standing beside the schedule's next charge (review r3 F2).
    ///
    /// A schedule whose customer the merchant deleted after the charge opened is revoked rather
    /// than handed back ([`billing::hand_back_unsent`], review r3 F1).
    pub(crate) async fn settle_unsent_charge(
        &self,
        connector: &dyn Pg,
        payment: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<Option<ApprovalOutcome>> {
        let Some(inquiry) = TradeInquiry::of(&payment.pay_method) else {
            return Ok(Some(
                self.resolve_approval(connector, payment, attempt, true)
                    .await?,
            ));
        };
        let by_order_no = TradeRef::OrderNo(attempt.order_no.clone());
        match inquiry.ask(connector, &by_order_no).await {
            Ok(TradeState::NotFound) => {
                // Not proof where KCP's order-number form is not trusted (live KCP): the mark
                // read `unsent` may be a lost one (a restored backup, a promoted asynchronous
                // standby) while KCP holds the approval. Looked at again, as any failure on such
                // an answer is; written before the close, so no crash leaves it without.
                if !self.absence_is_final(&attempt, &by_order_no) {
                    self.schedule_absence_recheck(&payment, None).await?;
                }
            }
            Ok(_) => {
                tracing::error!(imp_uid = %payment.imp_uid, order_no = %attempt.order_no, "a scheduled charge recorded as never sent has a trade at KCP (a database restored from a backup?); settled by inquiry, not run again");
                return Ok(Some(
                    self.resolve_approval(connector, payment, attempt, true)
                        .await?,
                ));
            }
            Err(e) => {
                tracing::warn!(imp_uid = %payment.imp_uid, "a scheduled charge never sent; KCP not asked yet: {e}");
                let why = format!("never sent; inquiry failed: {e}");
                return Ok(Some(self.leave_open(payment, attempt, &why).await?));
            }
        }
        let now = self.clock.unix();
        let payment_id = payment.id;
        let mut p: payment::ActiveModel = payment.into();
        p.status = Set(PaymentStatus::Failed.as_db().into());
        p.fail_reason = Set(Some(NEVER_SENT.into()));
        p.failed_at = Set(Some(now));
        p.updated_at = Set(now);
        let mut a: pg_attempt::ActiveModel = attempt.clone().into();
        a.state = Set(payments::NOT_SENT.into());
        a.result_message = Set(Some(
            "never sent: its holder stopped before calling KCP; the schedule runs again".into(),
        ));
        a.updated_at = Set(now);
        let Some(failed) = payments::conclude_charge(
            &self.db.write,
            &attempt,
            PaymentStatus::Pending.as_db(),
            p,
            a,
            Vec::new(),
        )
        .await?
        else {
            return Ok(Some(self.approval_decided(payment_id).await?));
        };
        tracing::warn!(imp_uid = %failed.imp_uid, "a scheduled charge never reached KCP (its instance stopped before the call); its schedule runs again");
        match billing::hand_back_unsent(
            &self.db.write,
            failed.merchant_id,
            &failed.imp_uid,
            failed.started_at,
            now,
        )
        .await
        {
            Ok(HandBack::Scheduled) => {}
            Ok(HandBack::Revoked) => {
                tracing::info!(imp_uid = %failed.imp_uid, "the schedule of a charge never sent is revoked: its customer was deleted after the charge opened")
            }
            Ok(HandBack::NotRunning) => {
                tracing::warn!(imp_uid = %failed.imp_uid, "no running schedule names the charge never sent; the run that holds its schedule charges it again")
            }
            Err(e) => {
                tracing::error!(imp_uid = %failed.imp_uid, "schedule of a charge never sent not handed back; charged again once its claim's lease runs out: {e}")
            }
        }
        Ok(None)
    }

    /// A run that failed before a charge could be opened: recorded as a failed payment that KCP
    /// never saw, with the `failed` webhook every scheduled payment's failure sends (spec §4.4,
    /// §5), and named on the schedule in the same write
    /// (`payments::record_unopened_schedule_failure`), so the merchant hears of it and a later run
    /// answers with it. Without a payment or webhook when a live payment, the merchant's own,
    /// holds the merchant_uid.
    async fn fail_unopened(
        &self,
        m: &merchant::Model,
        s: &schedule::Model,
        claim: HeldSchedule,
        reason: &str,
        at: i64,
    ) -> ServiceResult<ScheduleRun> {
        let failed = unopened_payment(m, s, reason, self.clock.unix(), self.settings.test_mode);
        let webhooks = self.webhooks_announcing(&failed, "failed").await?;
        let imp_uid = failed.imp_uid.clone();
        let mut row: payment::ActiveModel = failed.into();
        row.id = sea_orm::ActiveValue::NotSet;
        Ok(
            match payments::record_unopened_schedule_failure(&self.db.write, claim, row, webhooks)
                .await?
            {
                UnopenedFailure::Recorded => {
                    ScheduleRun::Finished(unopened(claim, Some(&imp_uid), reason, at))
                }
                UnopenedFailure::MerchantUidTaken => {
                    ScheduleRun::Finished(unopened(claim, None, reason, at))
                }
                UnopenedFailure::ScheduleNotHeld => ScheduleRun::Left,
            },
        )
    }

    /// Records outcomes where this instance still holds the schedule; returns how many it did,
    /// counting those the resolver recorded first from the same payment
    /// ([`Self::finish_resolved_schedule`]: the run learnt the outcome while the resolver did).
    async fn finish_schedules(&self, done: Vec<FinishedSchedule>) -> ServiceResult<usize> {
        let recorded = billing::finish_schedules(&self.db.write, &done).await?;
        let missed: Vec<(i64, &str)> = done
            .iter()
            .filter(|f| !recorded.contains(&f.id))
            .filter_map(|f| Some((f.id, f.imp_uid.as_deref()?)))
            .collect();
        let by_resolver = billing::executed_naming(&self.db.write, &missed).await?;
        for f in done
            .iter()
            .filter(|f| !recorded.contains(&f.id) && !by_resolver.contains(&f.id))
        {
            tracing::warn!(
                schedule_id = f.id,
                "schedule was taken over by another instance while this one charged; its outcome stands"
            );
        }
        Ok(recorded.len() + by_resolver.len())
    }

    /// [`Self::finish_schedules`] for a batch run, which must not end while its other charges
    /// run (they would go on detached, their outcomes unrecorded), and for a retry, whose answer
    /// is the payment whatever the schedule shows: a failed write is logged and counts none.
    /// Those schedules stay claimed; whoever claims them once the lease runs out records them from
    /// the payments they name.
    async fn finish_or_leave(&self, done: Vec<FinishedSchedule>) -> usize {
        let count = done.len();
        match self.finish_schedules(done).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::error!(
                    schedules = count,
                    "schedule outcomes not recorded; recorded from their payments after the lease: {e}"
                );
                0
            }
        }
    }

    /// Records on its schedule the outcome the resolver settled for a scheduled charge whose run
    /// ended without one (`billing::finish_schedule_of_payment`), so that the schedule shows its
    /// payment as soon as the merchant has the payment's webhook. A failed write is logged, not
    /// returned: the payment's outcome is recorded, and the schedule's next run records it from
    /// the payment as before.
    pub(crate) async fn finish_resolved_schedule(&self, outcome: &ApprovalOutcome) {
        let p = match outcome {
            ApprovalOutcome::Paid(p)
            | ApprovalOutcome::Declined { payment: p, .. }
            | ApprovalOutcome::NetCancelled(p) => p,
            ApprovalOutcome::Unknown(_) | ApprovalOutcome::Conflict(_) => return,
        };
        // A charge closed as never sent (by another holder, while this one inquired) is no
        // outcome: its schedule runs again.
        if p.customer_uid_usage.as_deref() != Some(SCHEDULED_USAGE)
            || PaymentStatus::from_db(&p.status) == PaymentStatus::Pending
            || closed_unsent(p)
        {
            return;
        }
        let (payment_status, fail_reason) = schedule_outcome(p);
        let resolved = billing::ResolvedCharge {
            imp_uid: &p.imp_uid,
            payment_status,
            fail_reason,
            executed_at: p.started_at,
            now: self.clock.unix(),
        };
        if let Err(e) =
            billing::finish_schedule_of_payment(&self.db.write, p.merchant_id, &resolved).await
        {
            tracing::error!(imp_uid = %p.imp_uid, "schedule of a resolved charge not recorded; its next run records it: {e}");
        }
    }

    /// Gives a claimed schedule back, to be run again at `retry_at`. A failed write is logged, not
    /// returned: the schedule then stays claimed until its lease runs out, and whoever claims it
    /// next does what a run at `retry_at` would have done (answers from the payment it names, or
    /// charges it if it names none), only later.
    async fn release_or_leave(&self, claim: HeldSchedule, retry_at: i64) {
        if let Err(e) = billing::release_schedule(&self.db.write, claim, retry_at).await {
            tracing::warn!(
                schedule_id = claim.id,
                "schedule not given back; run again once its lease runs out: {e}"
            );
        }
    }
}

/// What a run of a claimed schedule came to ([`Gateway::charge_claimed_schedule`]).
#[derive(Debug)]
enum ScheduleRun {
    /// An outcome to record on the schedule.
    Finished(FinishedSchedule),
    /// Given back for a later run: the outcome of the charge `imp_uid` is still open.
    Released { imp_uid: String },
    /// Nothing done: the claim no longer holds the schedule (taken over after its lease, revoked
    /// or moved before a charge opened).
    Left,
}

/// How long a schedule whose charge is held for an operator (KCP holds an approval openport could
/// neither record nor cancel) is left before a run looks at it again: the operator's verdict
/// records it on the schedule, and a run only catches a record of it that failed.
const CONFLICT_LOOK_SECS: i64 = 3600;

/// [`Gateway::retry_left`]'s answer for a schedule standing `status` (None: not read).
fn retry_left_refusal(status: Option<&str>) -> ServiceError {
    ServiceError::Refused(match status {
        Some("revoked") => RETRY_REVOKED.into(),
        _ => RETRY_UNSETTLED.into(),
    })
}

/// The answer of a retry whose schedule was revoked while it ran, before a charge opened.
const RETRY_REVOKED: &str = "재시도 중에 결제예약이 취소되거나 변경되어 결제하지 않았습니다.";

/// The answer of a retry that failed and whose claim may still hold the schedule.
const RETRY_UNSETTLED: &str = "결제예약 재시도의 처리 결과를 확인하지 못했습니다. 결제예약을 조회해 주세요: 예약 상태(scheduled)이면 곧 자동으로 실행되고 결과는 웹훅으로 전달되며, 재시도 전의 상태 그대로이면 실행되지 않았습니다.";

/// A `schedule_at` of more than 10 digits is not Unix seconds but another form (as `POST /vbanks`
/// refuses such a `vbank_due`): a date written `YYYYMMDDHHmm` (202612101000 read as seconds is
/// the year 8390) or milliseconds (JavaScript's `Date.now()`, near the year 55,000). Taken, the
/// request answered `code 0`, the schedule stood `scheduled` for ever and its merchant_uid was
/// spent. A 400 (code -1) like any invalid order field, naming Unix seconds, the date the digits
/// write if they write one, and the item's merchant_uid on a schedule request; checked on every
/// path that takes a `schedule_at` (a schedule request's items, a move, a reschedule) before
/// anything is written or issued.
fn unix_secs(schedule_at: i64, merchant_uid: Option<&str>) -> ServiceResult<()> {
    if schedule_at <= LAST_INPUT_SECS {
        return Ok(());
    }
    let item = merchant_uid.map_or(String::new(), |uid| format!(" (merchant_uid: {uid})"));
    Err(ServiceError::BadRequest(format!(
        "{}{item}",
        too_long_message("예약시각(schedule_at)은", schedule_at)
    )))
}

/// The refusal of a `schedule_at` not after now, in the words iamport's OpenAPI gives.
const NOT_FUTURE: &str = "예약시각(schedule_at)은 현재 시각 이후여야 합니다.";

/// What a refusal of a past `schedule_at` adds when its digits write a date (`YYYYMMDD`, read as
/// seconds in 1970): without it the merchant was told only "not in the future", about a date
/// that is.
fn note_of(schedule_at: i64) -> String {
    read_as_secs_note(schedule_at).map_or(String::new(), |note| format!(" {note}"))
}

/// A moved schedule's `schedule_at` not after now: HTTP 400 (code -1), as iamport's OpenAPI lists
/// it for `PUT …/schedule/{merchant_uid}` and `…/reschedule` ("예약시각이 현재 시각보다 과거인
/// 경우"). A schedule request answers the same words HTTP 200 `code 1`: its OpenAPI lists no
/// status but 200 and 401, so an iamport client reads its refusals from the envelope.
fn future_schedule_at(schedule_at: i64, now: i64) -> ServiceResult<()> {
    if schedule_at <= now {
        return Err(ServiceError::BadRequest(format!(
            "{NOT_FUTURE}{}",
            note_of(schedule_at)
        )));
    }
    Ok(())
}

/// spec (OpenAPI, reschedule and retry): only a failed or revoked schedule is run again; `what`
/// names the call refused (`다시 예약`, `재시도`).
fn not_rearmable(what: &str) -> ServiceError {
    ServiceError::BadRequest(format!(
        "실패했거나 취소된 결제예약만 {what}할 수 있습니다. (아직 실행되지 않았거나, 실행 중이거나, 승인된 결제예약)"
    ))
}

/// [`Gateway::refuse_unless_rearmable`]'s check, from `db`.
async fn rearm_refusal(
    db: &impl sea_orm::ConnectionTrait,
    m: &merchant::Model,
    s: &schedule::Model,
    what: &str,
) -> ServiceResult<()> {
    if !rearmable(s) {
        return Err(not_rearmable(what));
    }
    if billing::active_key(db, m.id, &s.customer_uid)
        .await?
        .is_none()
    {
        return Err(ServiceError::NotFound(
            "존재하지 않는 결제예약 혹은 빌링키입니다.".into(),
        ));
    }
    Ok(())
}

/// A schedule request naming a merchant_uid twice, or one a schedule of the merchant holds.
fn already_scheduled(merchant_uid: &str) -> ServiceError {
    ServiceError::Refused(format!("이미 예약된 merchant_uid입니다. ({merchant_uid})"))
}

/// A schedule request naming the merchant_uid of the merchant's schedule `earlier`. A merchant_uid
/// names one schedule for good (its runs, retries and payment hang on it), so it stays refused;
/// one that was revoked or whose charge failed is said to be so, with the call that runs it
/// again (`…/reschedule`), instead of "already scheduled" about a schedule
/// `GET …/schedule/{merchant_uid}` shows revoked.
fn taken_by_schedule(earlier: &schedule::Model) -> ServiceError {
    let uid = &earlier.merchant_uid;
    if !rearmable(earlier) {
        return already_scheduled(uid);
    }
    let was = if earlier.status == "revoked" {
        "취소(revoked)된"
    } else {
        "결제에 실패한"
    };
    ServiceError::Refused(format!(
        "{was} 결제예약의 merchant_uid입니다. 같은 merchant_uid로 다시 예약하려면 POST /subscribe/payments/schedule/{uid}/reschedule 을 호출하거나, 새 merchant_uid로 예약해 주세요. ({uid})"
    ))
}

/// Whether `s` may be scheduled again or retried: its charge failed, or it was revoked (the
/// condition `billing::rearm_schedule` and `billing::rearm_and_claim` write under).
fn rearmable(s: &schedule::Model) -> bool {
    match s.status.as_str() {
        "executed" => s.payment_status.as_deref() == Some("failed"),
        "revoked" => true,
        _ => false,
    }
}

/// Whether `PUT …/schedule/{merchant_uid}` may move `s`: not run yet, or claimed by a run that has
/// not charged it (the condition `billing::reschedule` writes under).
fn movable(s: &schedule::Model) -> bool {
    match s.status.as_str() {
        "scheduled" => true,
        "executing" => s.imp_uid.is_none(),
        _ => false,
    }
}

/// True when `p` is the charge a run of schedule `s` made (possibly by an instance that lost its
/// lease), not another payment that took the merchant_uid.
fn charged_for(p: &payment::Model, s: &schedule::Model) -> bool {
    p.customer_uid_usage.as_deref() == Some(SCHEDULED_USAGE)
        && p.customer_uid.as_deref() == Some(s.customer_uid.as_str())
        && p.amount == s.amount
}

/// The outcome of a charge to record on its schedule: the payment's iamport status (`paid` or
/// `failed`, or `cancelled` for an approval cancelled since) and, for a failure, its reason.
fn recorded(claim: HeldSchedule, p: &payment::Model, executed_at: i64) -> FinishedSchedule {
    let (payment_status, fail_reason) = schedule_outcome(p);
    FinishedSchedule {
        id: claim.id,
        token: claim.token,
        imp_uid: Some(p.imp_uid.clone()),
        payment_status,
        fail_reason: fail_reason.map(str::to_owned),
        executed_at,
    }
}

/// What a schedule shows of its payment `p`: `p`'s iamport status, and its reason when it failed.
fn schedule_outcome(p: &payment::Model) -> (&'static str, Option<&str>) {
    let status = PaymentStatus::from_db(&p.status);
    let fail_reason = (status == PaymentStatus::Failed)
        .then_some(p.fail_reason.as_deref())
        .flatten();
    (status.as_iamport(), fail_reason)
}

/// Whether `p` reads as a scheduled charge closed as never sent ([`NEVER_SENT`], written only by
/// [`Gateway::settle_unsent_charge`]): no outcome to record on its schedule. Charging the schedule
/// again needs its attempt's word too ([`Gateway::never_sent`]).
fn closed_unsent(p: &payment::Model) -> bool {
    p.customer_uid_usage.as_deref() == Some(SCHEDULED_USAGE)
        && PaymentStatus::from_db(&p.status) == PaymentStatus::Failed
        && p.fail_reason.as_deref() == Some(NEVER_SENT)
}

/// A merchant_uid that already has a payment cannot be scheduled: it could only be refused later.
fn taken_by(merchant_uid: &str, imp_uid: &str) -> ServiceError {
    ServiceError::Refused(format!(
        "이미 결제가 진행되었거나 완료된 merchant_uid입니다. ({merchant_uid}, imp_uid: {imp_uid})"
    ))
}

/// The outcome of a run that failed before a charge could be opened.
fn unopened(
    claim: HeldSchedule,
    imp_uid: Option<&str>,
    reason: &str,
    executed_at: i64,
) -> FinishedSchedule {
    FinishedSchedule {
        id: claim.id,
        token: claim.token,
        imp_uid: imp_uid.map(str::to_owned),
        payment_status: "failed",
        fail_reason: Some(reason.to_owned()),
        executed_at,
    }
}

/// The failed payment of a scheduled run that KCP never saw (see [`Gateway::fail_unopened`]): the
/// schedule's order, as a charge would have recorded it (`sandbox`: the instance's test mode),
/// failed with `reason`.
fn unopened_payment(
    m: &merchant::Model,
    s: &schedule::Model,
    reason: &str,
    now: i64,
    sandbox: bool,
) -> payment::Model {
    let imp_uid = new_scheduled_imp_uid();
    payment::Model {
        id: 0,
        order_no: order_no_for(&imp_uid),
        imp_uid,
        merchant_id: m.id,
        merchant_uid: s.merchant_uid.clone(),
        status: PaymentStatus::Failed.as_db().into(),
        pay_method: "card".into(),
        channel: "api".into(),
        pg_provider: PG_KCP_BILLING.into(),
        pg_id: m.site_cd.clone(),
        pg_tid: None,
        amount: s.amount,
        cancel_amount: 0,
        currency: s.currency.clone(),
        name: s.name.clone(),
        buyer_name: s.buyer_name.clone(),
        buyer_email: s.buyer_email.clone(),
        buyer_tel: s.buyer_tel.clone(),
        buyer_addr: s.buyer_addr.clone(),
        buyer_postcode: s.buyer_postcode.clone(),
        custom_data: s.custom_data.clone(),
        notice_url: s.notice_url.clone(),
        user_agent: None,
        card_code: None,
        card_name: None,
        card_number: None,
        card_type: None,
        card_quota: s.card_quota,
        apply_num: None,
        fail_reason: Some(reason.to_owned()),
        cancel_reason: None,
        sandbox,
        customer_uid: Some(s.customer_uid.clone()),
        customer_uid_usage: Some(SCHEDULED_USAGE.into()),
        started_at: now,
        paid_at: None,
        failed_at: Some(now),
        cancelled_at: None,
        updated_at: now,
        emb_pg_provider: None,
        escrow: false,
        bank_code: None,
        bank_name: None,
        vbank_code: None,
        vbank_name: None,
        vbank_num: None,
        vbank_holder: None,
        vbank_date: None,
        vbank_issued_at: None,
        escrow_logis: None,
        cash_receipt: false,
        partial_cancel_allowed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ServiceError) -> String {
        match e {
            ServiceError::Refused(why) => why,
            e => panic!("not a refusal: {e}"),
        }
    }

    /// Review r3 F5: a retry whose never-sent charge the resolver closed, handing the schedule
    /// back, was told "not charged" while the next pass charged it.
    #[test]
    fn a_retry_that_lost_its_schedule_says_not_charged_only_of_a_revoked_one() {
        assert_eq!(message(retry_left_refusal(Some("revoked"))), RETRY_REVOKED);
        for status in [Some("scheduled"), Some("executing"), Some("executed"), None] {
            assert_eq!(
                message(retry_left_refusal(status)),
                RETRY_UNSETTLED,
                "{status:?}"
            );
        }
    }
}
