//! Escrow delivery registration (`/escrows/logis/{imp_uid}`, spec/iamport-v1.md §4.6) mapped to
//! KCP's shipping-start status change `STE1` (documented assumption, spec/kcp.md §2.11).
//!
//! KCP takes one shipping start per transaction and has no call that changes it, so:
//! - POST records the waybill as sent *before* sending it, so that a lost answer is remembered;
//!   a retry that KCP answers "already registered" (8502) registers the merchant's delivery and
//!   records which earlier send KCP holds instead of this one (`domain::escrow`).
//! - PUT changes openport's record only and sends nothing; KCP keeps what it holds.
//!
//! Every answer carries `pg_logis`, what KCP holds as far as openport knows, so openport never
//! presents a delivery as KCP's that KCP did not confirm (docs/kcp.md §9.4).
use serde::Serialize;

use super::{Gateway, ServiceError};
use crate::domain::escrow::{
    self, Delivery, EscrowShipping, KcpShipment, NotRegistered, Registration, Waybill,
};
use crate::domain::payment::PaymentStatus;
use crate::pg::{DeclineReason, EscrowCancel, EscrowDelivery, PgError};
use crate::store::entity::{merchant, payment};
use crate::store::escrow::{self as record, Unreadable};
use crate::store::payments;

/// How often a record change is re-decided when concurrent requests keep changing the record.
const RECORD_TRIES: usize = 5;

/// The registered delivery, returned as iamport's EscrowLogisAnnotation plus `pg_logis`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Logis {
    /// The carrier's code, as the merchant registered or changed it last.
    pub company: String,
    /// The waybill number, as the merchant registered or changed it last.
    pub invoice: String,
    /// Unix seconds.
    pub sent_at: i64,
    /// When the delivery was registered or last changed (Unix seconds).
    pub applied_at: i64,
    pub receiving_at: Option<String>,
    pub pg_logis: PgLogis,
}

/// openport's addition to iamport's annotation: the shipping start KCP holds, as far as openport
/// knows. KCP has no call that changes it, so after a PUT it may differ from the delivery above.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PgLogis {
    /// The carrier KCP holds; null when openport cannot name it.
    pub company: Option<String>,
    /// The waybill number KCP holds; null when openport cannot name it.
    pub invoice: Option<String>,
    /// True when KCP answered that it registered exactly this carrier and waybill. False when
    /// KCP answered that it already held a shipping start (a POST retried after a lost answer):
    /// `company`/`invoice` are then the one earlier request whose answer was lost, or null.
    pub confirmed: bool,
}

impl From<&Registration> for Logis {
    fn from(r: &Registration) -> Self {
        let at_kcp = r.at_kcp.waybill();
        Self {
            company: r.delivery.waybill.carrier.clone(),
            invoice: r.delivery.waybill.invoice.clone(),
            sent_at: r.delivery.sent_at,
            applied_at: r.applied_at,
            receiving_at: r.delivery.receiving_at.clone(),
            pg_logis: PgLogis {
                company: at_kcp.map(|w| w.carrier.clone()),
                invoice: at_kcp.map(|w| w.invoice.clone()),
                confirmed: r.at_kcp.confirmed(),
            },
        }
    }
}

/// Why an escrow call is refused: iamport's HTTP statuses (404 / 400 / 409).
#[derive(Debug)]
pub enum EscrowRefusal {
    NotFound,
    NotEscrow,
    /// POST on a payment with a registered delivery.
    AlreadyRegistered,
    /// PUT on a payment without a registered delivery.
    NotRegistered,
    /// The payment's state allows no delivery (not paid, cancelled).
    NotEditable,
    Service(ServiceError),
}

impl From<ServiceError> for EscrowRefusal {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<sea_orm::DbErr> for EscrowRefusal {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Service(e.into())
    }
}

impl From<Unreadable> for EscrowRefusal {
    fn from(e: Unreadable) -> Self {
        Self::Service(ServiceError::Internal(e.to_string()))
    }
}

impl From<escrow::AlreadyRegistered> for EscrowRefusal {
    fn from(_: escrow::AlreadyRegistered) -> Self {
        Self::AlreadyRegistered
    }
}

impl From<NotRegistered> for EscrowRefusal {
    fn from(_: NotRegistered) -> Self {
        Self::NotRegistered
    }
}

/// Whether a record change waits for no cancel of the payment: a change that registers or edits
/// the merchant's delivery does; one recording KCP's answer to a shipping start already sent does
/// not (KCP holds what it holds, whatever is cancelled since).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhileCancelling {
    Refuse,
    Record,
}

/// The refusal of a delivery registration or change while a cancel of the payment is at KCP, as
/// a second cancel is refused (service/cancel.rs): a shipping start (`STE1`) sent beside a full
/// cancel planned as `STE2` before it reaches KCP races it there, one of the two refused by KCP.
const CANCEL_IN_FLIGHT: &str = "이 결제건에 처리 중인 취소 요청이 있어 배송정보를 등록하거나 변경할 수 없습니다. 취소 결과를 확인한 뒤 다시 시도해 주세요.";

/// What a record change decided.
enum Decision<T> {
    /// Write this record (None: no record), then answer `T`.
    Write(Option<EscrowShipping>, T),
    /// Leave the record as it is and answer `T`.
    Keep(T),
}

/// The refusal of a partial cancel of an escrow payment: KCP escrow has no partial cancel before
/// the purchase is confirmed, and a partially cancelled payment could no longer be shipped.
pub(crate) const PARTIAL_CANCEL_REFUSED: &str =
    "에스크로 결제는 부분취소할 수 없습니다. 전액취소만 가능합니다.";

/// The refusal of a cancel while a shipping start was sent and its answer not seen.
const SHIPPING_UNANSWERED: &str = "에스크로 배송등록 결과를 확인하지 못해 취소할 수 없습니다. 배송정보 등록(POST /escrows/logis)을 다시 요청해 결과를 확정한 뒤 취소해 주세요.";

/// The escrow status change that cancels escrow payment `p` whole (documented assumption,
/// spec/kcp.md §2.11, docs/kcp.md §9.5): `STE2` while KCP holds no shipping start, `STE4` once
/// it does. A shipping start sent with its answer unseen leaves openport not knowing which KCP
/// expects, so the cancel is refused until a retried registration settles it (KCP's `8502`
/// answer registers it: §9.4).
pub(crate) fn cancel_of(p: &payment::Model) -> Result<EscrowCancel, ServiceError> {
    match record::decode(p.escrow_logis.as_deref())
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    {
        None => Ok(EscrowCancel::BeforeShipping),
        Some(EscrowShipping::Registered(_)) => Ok(EscrowCancel::AfterShipping),
        Some(EscrowShipping::Unanswered(_)) => {
            Err(ServiceError::Refused(SHIPPING_UNANSWERED.into()))
        }
    }
}

/// The payment's transaction at KCP, if a shipping start may be registered on it.
fn shippable(p: &payment::Model) -> Result<String, EscrowRefusal> {
    if PaymentStatus::from_db(&p.status) != PaymentStatus::Paid {
        return Err(EscrowRefusal::NotEditable);
    }
    p.pg_tid.clone().ok_or(EscrowRefusal::NotEditable)
}

impl Gateway {
    async fn escrow_payment(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> Result<payment::Model, EscrowRefusal> {
        let p = payments::by_imp_uid(db, Some(m.id), imp_uid)
            .await?
            .ok_or(EscrowRefusal::NotFound)?;
        if !p.escrow {
            return Err(EscrowRefusal::NotEscrow);
        }
        Ok(p)
    }

    /// Reads the payment's record, lets `decide` change it, and writes the change only if nobody
    /// changed the record meanwhile (compare-and-set on the stored text); otherwise decides again
    /// on what the other request wrote. With [`WhileCancelling::Refuse`], not while the payment
    /// has a cancel open ([`Self::replace_unless_cancelling`]).
    async fn change_escrow_record<T>(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
        cancelling: WhileCancelling,
        decide: impl Fn(&payment::Model, Option<&EscrowShipping>) -> Result<Decision<T>, EscrowRefusal>,
    ) -> Result<T, EscrowRefusal> {
        for _ in 0..RECORD_TRIES {
            let p = self.escrow_payment(&self.db.write, m, imp_uid).await?;
            let current = record::decode(p.escrow_logis.as_deref())?;
            let (next, answer) = match decide(&p, current.as_ref())? {
                Decision::Keep(answer) => return Ok(answer),
                Decision::Write(next, answer) => (next, answer),
            };
            let text = next.as_ref().map(record::encode).transpose()?;
            let now = self.clock.unix();
            let written = match cancelling {
                WhileCancelling::Refuse => self.replace_unless_cancelling(&p, text, now).await?,
                WhileCancelling::Record => {
                    record::replace(&self.db.write, p.id, p.escrow_logis.as_deref(), text, now)
                        .await?
                }
            };
            if written {
                return Ok(answer);
            }
        }
        Err(EscrowRefusal::Service(ServiceError::Refused(
            "다른 요청이 배송정보를 변경하고 있습니다. 잠시 후 다시 시도해 주세요.".into(),
        )))
    }

    /// The record's compare-and-set, and then the check that the payment has no open cancel
    /// attempt, in one transaction: an open one refuses the change ([`CANCEL_IN_FLIGHT`]) and
    /// nothing is written. The write comes first so that a cancel and a change cannot both go
    /// through: a cancel whose attempt committed before the check is seen by it; one whose attempt
    /// commits after re-reads the payment once its attempt is written, holding the row
    /// (`Gateway::held_payment`, which waits for this transaction), and so plans from this record
    /// (a shipping start unanswered: refused; registered: `STE4`), never `STE2` beside an `STE1`.
    async fn replace_unless_cancelling(
        &self,
        p: &payment::Model,
        text: Option<String>,
        now: i64,
    ) -> Result<bool, EscrowRefusal> {
        let txn = self.db.write.begin().await?;
        if !record::replace(&txn, p.id, p.escrow_logis.as_deref(), text, now).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        if payments::has_open_cancel(&txn, p.id).await? {
            txn.rollback().await?;
            return Err(EscrowRefusal::Service(ServiceError::Refused(
                CANCEL_IN_FLIGHT.into(),
            )));
        }
        txn.commit().await?;
        Ok(true)
    }

    /// GET: the registered delivery; none while only unanswered shipping starts are recorded.
    pub async fn escrow_logis(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> Result<Option<Logis>, EscrowRefusal> {
        let p = self.escrow_payment(&self.db.read, m, imp_uid).await?;
        Ok(match record::decode(p.escrow_logis.as_deref())? {
            Some(EscrowShipping::Registered(r)) => Some(Logis::from(&r)),
            Some(EscrowShipping::Unanswered(_)) | None => None,
        })
    }

    /// POST: tells KCP shipping started (`STE1`) with the carrier and waybill, and registers the
    /// delivery (409 once one is registered). Refused (code 1) while a cancel of the payment is
    /// open, before anything is recorded or sent ([`CANCEL_IN_FLIGHT`]).
    pub async fn register_escrow_logis(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
        delivery: Delivery,
    ) -> Result<Logis, EscrowRefusal> {
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let waybill = delivery.waybill.clone();
        let (tno, added) = self
            .change_escrow_record(m, imp_uid, WhileCancelling::Refuse, |p, current| {
                let sending = escrow::sending(current, &waybill)?;
                let tno = shippable(p)?;
                Ok(Decision::Write(Some(sending.record), (tno, sending.added)))
            })
            .await?;
        let sent = connector
            .escrow_delivery(&EscrowDelivery {
                tno: tno.clone(),
                carrier: waybill.carrier.clone(),
                invoice: waybill.invoice.clone(),
            })
            .await;
        let now = self.clock.unix();
        match sent {
            Ok(()) => {
                let registered = self
                    .change_escrow_record(m, imp_uid, WhileCancelling::Record, |_, current| {
                        Ok(accepted_onto(current, &delivery, now))
                    })
                    .await?;
                let registered = registered.inspect_err(|_| {
                    tracing::info!(imp_uid, "escrow shipping start accepted by KCP after another request registered the delivery: kept, KCP's copy recorded confirmed, this POST answered 409");
                })?;
                Ok(Logis::from(&registered))
            }
            Err(PgError::Declined {
                reason: DeclineReason::AlreadyShipped,
                ..
            }) => {
                let registered = self
                    .change_escrow_record(m, imp_uid, WhileCancelling::Record, |_, current| {
                        let r = escrow::already_held(current, delivery.clone(), added, now)?;
                        Ok(Decision::Write(
                            Some(EscrowShipping::Registered(r.clone())),
                            r,
                        ))
                    })
                    .await?;
                warn_unless_kcp_holds(imp_uid, &registered, "registered");
                Ok(Logis::from(&registered))
            }
            Err(e @ (PgError::Declined { .. } | PgError::NotSent(_) | PgError::Config(_))) => {
                // KCP did not take it: forget this send, keep any earlier unanswered one.
                self.change_escrow_record(m, imp_uid, WhileCancelling::Record, |_, current| {
                    Ok(match escrow::withdrawn(current, &waybill, added) {
                        Some(next) => Decision::Write(next, ()),
                        None => Decision::Keep(()),
                    })
                })
                .await?;
                Err(EscrowRefusal::Service(ServiceError::Refused(
                    match e.refusal() {
                        Some(refusal) => format!("배송정보 등록에 실패하였습니다. {refusal}"),
                        None => {
                            tracing::warn!(imp_uid, tno, error = %e, "escrow shipping start not sent");
                            "배송정보 등록에 실패하였습니다. (PG사에 요청을 보내지 못했습니다. 다시 시도해 주세요.)"
                            .to_string()
                        }
                    },
                )))
            }
            Err(e @ (PgError::Unknown(_) | PgError::Mismatch { .. })) => {
                tracing::warn!(imp_uid, tno, error = %e,
                    "escrow shipping start outcome unknown; recorded as unanswered, a retried POST settles it");
                Err(EscrowRefusal::Service(ServiceError::Refused(
                    "PG사 응답을 확인하지 못했습니다. 다시 시도해 주세요.".into(),
                )))
            }
        }
    }

    /// PUT: changes the registered delivery (409 when none is). KCP has no call for that, so
    /// nothing is sent: the change is openport's, and `pg_logis` keeps what KCP holds. Refused as
    /// POST is while a cancel of the payment is open: a delivery being cancelled is not edited.
    pub async fn change_escrow_logis(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
        delivery: Delivery,
    ) -> Result<Logis, EscrowRefusal> {
        let now = self.clock.unix();
        let changed = self
            .change_escrow_record(m, imp_uid, WhileCancelling::Refuse, |p, current| {
                let r = escrow::changed(current, delivery.clone(), now)?;
                shippable(p)?;
                Ok(Decision::Write(
                    Some(EscrowShipping::Registered(r.clone())),
                    r,
                ))
            })
            .await?;
        warn_unless_kcp_holds(imp_uid, &changed, "changed in openport only");
        Ok(Logis::from(&changed))
    }
}

/// The record once KCP accepted this request's shipping start of `delivery`, decided on the
/// record as it stands (`current`), never written over it blindly: the answer may come late,
/// after other requests changed the record.
/// - No delivery registered yet: this one is, as KCP accepted it.
/// - One registered meanwhile (a POST whose `STE1` KCP answered "already held" while this one was
///   on its way, and perhaps a PUT since): that delivery stays, the merchant's last word; only
///   what KCP holds becomes known, this waybill, confirmed. This POST is answered as any POST on a
///   registered delivery (409), so that of two overlapping POSTs one alone is told "registered".
fn accepted_onto(
    current: Option<&EscrowShipping>,
    delivery: &Delivery,
    now: i64,
) -> Decision<Result<Registration, escrow::AlreadyRegistered>> {
    let Some(EscrowShipping::Registered(r)) = current else {
        let registered = escrow::accepted(delivery.clone(), now);
        return Decision::Write(
            Some(EscrowShipping::Registered(registered.clone())),
            Ok(registered),
        );
    };
    if r.at_kcp.confirmed() {
        // KCP confirmed a shipping start before (it takes one): nothing more is learnt.
        return Decision::Keep(Err(escrow::AlreadyRegistered));
    }
    let known = Registration {
        at_kcp: KcpShipment::Accepted(delivery.waybill.clone()),
        ..r.clone()
    };
    Decision::Write(
        Some(EscrowShipping::Registered(known)),
        Err(escrow::AlreadyRegistered),
    )
}

/// Logs a warning when KCP may hold another waybill than the registered delivery's (never the
/// waybill itself: it leads to the buyer's address).
fn warn_unless_kcp_holds(imp_uid: &str, r: &Registration, what: &str) {
    let holds: Option<&Waybill> = r.at_kcp.waybill();
    if holds == Some(&r.delivery.waybill) {
        return;
    }
    let kcp = match (&r.at_kcp, holds) {
        (_, Some(_)) => "another waybill",
        (KcpShipment::AlreadyHeld(earlier), None) if earlier.is_empty() => {
            "a shipping start openport never sent"
        }
        _ => "one of several earlier waybills",
    };
    tracing::warn!(
        imp_uid,
        kcp,
        "escrow delivery {what}: KCP holds {kcp}, not the registered one (pg_logis says which)"
    );
}
