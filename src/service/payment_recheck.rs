//! `openport payment recheck`: a payment brought in line with a cancel made at KCP that openport
//! never heard of.
//!
//! A cancel made in KCP's admin console (or by the buyer at KCP) reaches openport only by KCP's
//! notice (`TX05`, `TX06`, …, service/notifications.rs). When the notice never arrives (no
//! notification URL registered at KCP, lost, refused by `notify_sources`), the payment shows
//! `paid` with a balance KCP no longer holds, for good: nothing else asks KCP about a paid card
//! payment. The operator names the payment, and it is checked exactly as a notice of it would be
//! ([`Gateway::record_cancel_made_at_kcp`] on its current tno): KCP is asked what is left, and
//! only a lower balance is recorded, as a cancel settled by inquiry (never sent to KCP), with the
//! `cancelled` webhook.
use super::notifications::{CancelAtKcp, NotificationError};
use super::{Gateway, ServiceError};
use crate::store::payments;

/// The reason of the cancel a recheck records (the payment's `cancel_history`), as a notice's is
/// `PG사 취소 통보 (TX06)`: a cancel found at KCP (PG사) on the operator's re-inquiry.
pub const REASON: &str = "PG사 취소 확인 (운영자 재조회)";

/// What `payment recheck` found: the payment's trade as asked about, and KCP's answer.
#[derive(Debug)]
pub struct Recheck {
    pub imp_uid: String,
    pub tno: String,
    pub found: CancelAtKcp,
}

impl Gateway {
    /// Checks payment `imp_uid` (any merchant's) against what KCP holds of its current trade, as
    /// a cancel notice of that trade would be (module doc). An unknown imp_uid is
    /// [`ServiceError::NotFound`]; a payment with no KCP trade, [`ServiceError::Refused`]; both
    /// change nothing.
    pub async fn recheck_payment_at_kcp(
        &self,
        imp_uid: &str,
    ) -> Result<Recheck, NotificationError> {
        let payment = payments::by_imp_uid(&self.db.read, None, imp_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no payment with imp_uid {imp_uid}")))?;
        let Some(tno) = payment.pg_tid.clone() else {
            return Err(ServiceError::Refused(format!(
                "payment {imp_uid} ({}) holds no KCP trade (no tno): nothing to ask KCP about",
                payment.status
            ))
            .into());
        };
        let found = self
            .record_cancel_made_at_kcp(payment, &tno, REASON.to_owned())
            .await?;
        Ok(Recheck {
            imp_uid: imp_uid.to_owned(),
            tno,
            found,
        })
    }
}
