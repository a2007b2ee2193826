use sea_orm::entity::prelude::*;

/// One call to KCP, recorded (state `pending`) and committed before the call is made.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pg_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub payment_id: i64,
    /// `approve`, `cancel`, or `net_cancel`: the cancel of an approval that reached a holder whose
    /// `approve` attempt another holder had settled without it (service/orphans.rs). The second
    /// looks at KCP make no call with an effect: `absence_recheck` after a failure for finding no
    /// approval (service/resolve.rs), `cancel_recheck` after a cancel closed as not applied
    /// (service/cancel_recheck.rs).
    pub kind: String,
    /// `pending` (sent or about to be), `unknown` (answer lost), `succeeded`, `failed`,
    /// `net_cancelled`, `conflict` (left for the operator: the payment takes no API cancel until
    /// it is `reconciled`, `openport attempt reconciled`), `not_sent` (a scheduled charge whose
    /// holder stopped before calling KCP: [`Model::unsent`]). Only `pending` and `unknown` are
    /// open.
    pub state: String,
    pub order_no: String,
    pub tno: Option<String>,
    /// Amount approved or cancelled by this attempt.
    pub amount: i64,
    pub reason: Option<String>,
    pub result_code: Option<String>,
    pub result_message: Option<String>,
    pub tries: i32,
    /// When the resolver may look at it next (Unix seconds).
    pub next_check_at: i64,
    /// Its holder (the request that made the call, or the resolver that claimed it) owns it until
    /// then (Unix seconds); 0 = let go. The value is also the holder's token: every write on the
    /// attempt is conditional on it (service/attempts.rs).
    pub lease_until: i64,
    pub created_at: i64,
    /// When the attempt's last KCP call with an effect was sent, or about to be (Unix seconds):
    /// its `created_at` for the call made right after the insert, later for one sent after a lease
    /// renewal (an escrow cancel's `STSC` fallback, a revocation's close after its look at KCP, a
    /// net-cancel sent again). Written in the same write as the renewal, before the call. The
    /// settle delay counts from it (service/resolve.rs `Gateway::settled`).
    pub sent_at: i64,
    pub updated_at: i64,
    /// A cancel the merchant asked to announce (`enable_webhook`): whoever settles it sends the
    /// `cancelled` webhook.
    pub notify: bool,
    /// An order number an operator found absent from KCP's admin (`openport attempt
    /// confirm-absent`): "no such trade" for exactly it is final even where inquiries by order
    /// number are not trusted (service/resolve.rs `absence_is_final`).
    pub absent_order_no: Option<String>,
    /// The call provably never left openport: true from the insert of a scheduled charge's
    /// attempt until the write its holder makes just before the call, conditional on still
    /// holding it (service/attempts.rs `Gateway::mark_sending`). Whoever claims an attempt still
    /// `unsent` knows no call was made and none can be (migration 000038). False, "may have been
    /// sent", for every other attempt and for rows written before the column.
    pub unsent: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
