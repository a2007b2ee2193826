use sea_orm::entity::prelude::*;

/// A KCP common notification (spec/kcp.md §2.12), kept once per `noti_id` as first received.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kcp_notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// KCP's `noti_id`; for a notification that carries none (any `tx_cd` but `TX00`), the key
    /// `tx_cd:tno:tx_tm` (service/notifications.rs).
    pub noti_id: String,
    pub site_cd: String,
    pub tno: String,
    pub tx_cd: String,
    pub op_cd: Option<String>,
    /// `ipgm_mnyx`: this deposit.
    pub amount: i64,
    /// `totl_mnyx`: everything deposited so far, as KCP counts it; 0 when absent or unreadable
    /// (unknown: a deposit's total is positive).
    pub total: i64,
    /// `ipgm_time`: when the deposit was made, as notified (Unix seconds); None when absent or
    /// unreadable. Taken for `paid_at` only once KCP confirms the deposit, within the account's
    /// life (service/notifications.rs).
    pub deposited_at: Option<i64>,
    pub received_at: i64,
    /// What verifying it by inquiry found (`service::notifications::Verdict`); `None` while KCP
    /// could not be asked or did not show it yet, so a re-send (or the resolver's sweep,
    /// `Gateway::reverify_notifications`) verifies it again.
    pub outcome: Option<String>,
    /// When it was last verified: with an outcome, when that was decided; without, when the
    /// sweep last asked KCP, or, for a deposit naming a trade KCP holds and openport does not,
    /// `received_at` plus the sweep's window: the sweep is done with it, and it waits for an
    /// operator (`store::notifications::leave_to_operator`). `None` with no outcome: never looked
    /// at; one received before the sweep's window gets a single look
    /// (`store::notifications::served_never_looked`).
    pub verified_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
