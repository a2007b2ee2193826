use sea_orm::entity::prelude::*;

/// One HTTP POST of a webhook delivery and what came back.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub delivery_id: i64,
    pub url: String,
    /// Unix seconds on the gateway clock.
    pub attempted_at: i64,
    /// None when no HTTP answer came (connect error, timeout).
    pub http_status: Option<i32>,
    /// Why no usable answer came; never contains the request body.
    pub error: Option<String>,
    /// At most the first 200 characters of the receiver's answer.
    pub response_excerpt: Option<String>,
    pub duration_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
