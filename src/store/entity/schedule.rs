use sea_orm::entity::prelude::*;

/// A future charge of a billing key (iamport ScheduleResult).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub merchant_id: i64,
    pub customer_uid: String,
    /// The buyer's id (iamport's `customer_id`): the request's, else the billing key's.
    pub customer_id: Option<String>,
    pub merchant_uid: String,
    pub schedule_at: i64,
    pub amount: i64,
    pub currency: String,
    pub name: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    pub custom_data: Option<String>,
    pub notice_url: Option<String>,
    /// Instalment months of the charge (0 = lump sum).
    pub card_quota: i32,
    /// `scheduled`, `executing` (claimed by one instance), `executed`, `revoked`.
    pub status: String,
    pub imp_uid: Option<String>,
    pub payment_status: Option<String>,
    pub fail_reason: Option<String>,
    pub executed_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When the claim of an `executing` schedule runs out: another instance may claim it after.
    pub lease_until: i64,
    /// The random token of the schedule's latest claim (0: never claimed), which every write of
    /// the holder is conditional on (`store::billing::held`).
    pub claim_token: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
