//! KCP common notifications (spec/kcp.md §2.12): virtual-account deposits (`TX00`). Each
//! `noti_id` counts once; a deposit that completes the amount makes the payment `paid` and fires
//! its webhook in the same transaction; `op_cd 13` (deposit cancelled by the bank network)
//! reverses it.
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::store::entity::{kcp_notification, payment};
use crate::store::is_unique_violation;

/// KCP's reply that stops re-sends (spec/kcp.md §2.12, exact).
pub const ACK: &str =
    "<html><body><form><input type=\"hidden\" name=\"result\" value=\"0000\"></form></body></html>";

#[derive(Debug, Clone)]
pub struct Notification {
    pub site_cd: String,
    pub tno: String,
    pub tx_cd: String,
    pub noti_id: String,
    pub op_cd: Option<String>,
    pub amount: i64,
    pub total: i64,
}

impl Gateway {
    /// Records one notification. Ok(()) means "answer 0000": done now or done before.
    pub async fn handle_notification(&self, n: Notification) -> ServiceResult<()> {
        if n.noti_id.is_empty() || n.tno.is_empty() {
            return Err(ServiceError::BadRequest(
                "noti_id, tno가 필요합니다.".into(),
            ));
        }
        let now = self.clock.unix();
        let txn = self.db.write.begin().await?;
        let inserted = kcp_notification::ActiveModel {
            noti_id: Set(n.noti_id.clone()),
            site_cd: Set(n.site_cd.clone()),
            tno: Set(n.tno.clone()),
            tx_cd: Set(n.tx_cd.clone()),
            op_cd: Set(n.op_cd.clone()),
            amount: Set(n.amount),
            total: Set(n.total),
            received_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(()), // a re-send we already counted
            Err(e) => return Err(e.into()),
        }
        if n.tx_cd != "TX00" {
            // Other events are kept for the operator; nothing in openport depends on them yet.
            txn.commit().await?;
            return Ok(());
        }
        let p = payment::Entity::find()
            .filter(payment::Column::PgTid.eq(n.tno.clone()))
            .filter(payment::Column::PayMethod.eq("vbank"))
            .one(&txn)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("가상계좌 결제건이 없습니다. (tno {})", n.tno))
            })?;
        let reversed = n.op_cd.as_deref() == Some("13");
        let status = PaymentStatus::from_db(&p.status);
        let mut am: payment::ActiveModel = p.clone().into();
        let mut event = None;
        if reversed {
            if status == PaymentStatus::Paid && n.total < p.amount {
                am.status = Set(PaymentStatus::Ready.as_db().into());
                am.paid_at = Set(None);
            }
        } else if status == PaymentStatus::Ready && n.total >= p.amount {
            // KCP settles what arrived; openport marks paid once the order amount is covered
            // (an over-deposit is KCP's to refund).
            am.status = Set(PaymentStatus::Paid.as_db().into());
            am.paid_at = Set(Some(now));
            event = Some("paid");
        }
        am.updated_at = Set(now);
        let p = am.update(&txn).await?;
        if let Some(e) = event {
            self.enqueue_webhook(&txn, &p, e, None).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
