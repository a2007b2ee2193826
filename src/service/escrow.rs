//! Escrow delivery registration (`/escrows/logis/{imp_uid}`, spec/iamport-v1.md §4.6) mapped to
//! KCP's shipping-start status change `STE1` (documented assumption, spec/kcp.md §2.11).
use sea_orm::{ActiveModelTrait, Set};
use serde::{Deserialize, Serialize};

use super::{Gateway, ServiceError};
use crate::domain::payment::PaymentStatus;
use crate::pg::{EscrowDelivery, PgError};
use crate::store::entity::{merchant, payment};
use crate::store::payments;

/// What the merchant registered, returned as iamport's EscrowLogisAnnotation.
#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Logis {
    pub company: String,
    pub invoice: String,
    pub sent_at: i64,
    pub applied_at: i64,
    #[serde(default)]
    pub receiving_at: Option<String>,
}

/// Why an escrow call is refused: iamport's HTTP statuses (404 / 409 / 400).
#[derive(Debug)]
pub enum EscrowRefusal {
    NotFound,
    NotEscrow,
    AlreadyRegistered,
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

impl Gateway {
    async fn escrow_payment(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> Result<payment::Model, EscrowRefusal> {
        let p = payments::by_imp_uid(&self.db.read, Some(m.id), imp_uid)
            .await?
            .ok_or(EscrowRefusal::NotFound)?;
        if !p.escrow {
            return Err(EscrowRefusal::NotEscrow);
        }
        Ok(p)
    }

    pub async fn escrow_logis(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
    ) -> Result<Option<Logis>, EscrowRefusal> {
        let p = self.escrow_payment(m, imp_uid).await?;
        Ok(p.escrow_logis
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok()))
    }

    /// POST registers (409 when already registered); PUT changes what was registered (409 when
    /// nothing was). Both tell KCP shipping started (`STE1`) with the carrier and waybill.
    pub async fn register_escrow_logis(
        &self,
        m: &merchant::Model,
        imp_uid: &str,
        mut logis: Logis,
        update: bool,
    ) -> Result<Logis, EscrowRefusal> {
        let p = self.escrow_payment(m, imp_uid).await?;
        match (update, p.escrow_logis.is_some()) {
            (false, true) => return Err(EscrowRefusal::AlreadyRegistered),
            (true, false) => return Err(EscrowRefusal::NotEditable),
            _ => {}
        }
        if PaymentStatus::from_db(&p.status) != PaymentStatus::Paid {
            return Err(EscrowRefusal::NotEditable);
        }
        let tno = p.pg_tid.clone().ok_or(EscrowRefusal::NotEditable)?;
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        match connector
            .escrow_delivery(&EscrowDelivery {
                tno,
                carrier: logis.company.clone(),
                invoice: logis.invoice.clone(),
            })
            .await
        {
            Ok(()) => {}
            Err(PgError::Declined { code, message, .. }) => {
                return Err(EscrowRefusal::Service(ServiceError::Refused(format!(
                    "배송정보 등록에 실패하였습니다. [{code}] {message}"
                ))))
            }
            Err(e) => {
                return Err(EscrowRefusal::Service(ServiceError::Refused(format!(
                    "PG사 응답을 확인하지 못했습니다. 다시 시도해 주세요. ({e})"
                ))))
            }
        }
        logis.applied_at = self.clock.unix();
        let mut am: payment::ActiveModel = p.into();
        am.escrow_logis = Set(Some(serde_json::to_string(&logis).unwrap_or_default()));
        am.updated_at = Set(self.clock.unix());
        am.update(&self.db.write).await?;
        Ok(logis)
    }
}
