//! Amount pre-registration (spec/iamport-v1.md §4.3): POST is not idempotent, PUT changes.
use sea_orm::Set;

use super::{Gateway, ServiceError, ServiceResult};
use crate::store::entity::prepare;
use crate::store::{is_unique_violation, payments};

impl Gateway {
    pub async fn prepare(
        &self,
        merchant_id: i64,
        merchant_uid: &str,
        amount: i64,
        currency: Option<String>,
    ) -> ServiceResult<prepare::Model> {
        let row = prepare::ActiveModel {
            merchant_id: Set(merchant_id),
            merchant_uid: Set(merchant_uid.to_string()),
            amount: Set(amount),
            currency: Set(currency),
            created_at: Set(self.clock.unix()),
            ..Default::default()
        };
        match payments::insert_prepare(&self.db.write, row).await {
            Ok(p) => Ok(p),
            Err(e) if is_unique_violation(&e) => Err(ServiceError::Refused(
                "결제정보 사전등록에 실패하였습니다(이미 등록된 merchant_uid입니다).".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn change_prepare(
        &self,
        merchant_id: i64,
        merchant_uid: &str,
        amount: i64,
        currency: Option<String>,
    ) -> ServiceResult<prepare::Model> {
        let existing = self.prepared(merchant_id, merchant_uid).await?;
        payments::update_prepare(&self.db.write, existing.id, amount, currency.clone()).await?;
        Ok(prepare::Model {
            amount,
            currency,
            ..existing
        })
    }

    pub async fn prepared(
        &self,
        merchant_id: i64,
        merchant_uid: &str,
    ) -> ServiceResult<prepare::Model> {
        payments::prepare_by_uid(&self.db.read, merchant_id, merchant_uid)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound("사전등록된 결제정보가 존재하지 않습니다.".into())
            })
    }
}
