//! Billing keys and schedules.
use sea_orm::sea_query::{
    CaseStatement, Expr, IntoColumnRef, IntoCondition, LockBehavior, LockType, SimpleExpr,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Set,
    Statement,
};

use super::entity::{billing_key, merchant, payment, schedule};
use crate::domain::schedule::ScheduleStatus;

/// Whose background work (due schedules, retired keys' deletions, webhook deliveries) an
/// instance runs: only the merchants of its own mode (`service::merchants::runs_in_mode`). A live
/// instance must leave a test-mode merchant's schedules alone: their billing keys are the
/// sandbox's, so a charge at KCP would only be refused, and the refusal would be recorded and
/// announced (`failed` webhook) as the schedule's outcome. An instance in test mode sharing the
/// database must leave a live merchant's alone the same way: its calls go to the sandbox, which
/// knows none of the live keys. `All` is for tools and tests.
#[derive(Debug, Clone, Copy)]
pub enum ServedMerchants {
    All,
    /// Merchants made outside test mode, and never the demo merchant (whose imp_key this is).
    LiveOnly {
        demo_imp_key: &'static str,
    },
    /// Merchants made in test mode, and the demo merchant.
    TestOnly {
        demo_imp_key: &'static str,
    },
}

impl ServedMerchants {
    /// The ids of the merchants served, as an uncorrelated sub-select over the (few) merchants,
    /// which both databases run once; None for `All`.
    pub fn merchant_ids(self) -> Option<sea_orm::sea_query::SelectStatement> {
        let ids = merchant::Entity::find()
            .select_only()
            .column(merchant::Column::Id);
        let ids = match self {
            Self::All => return None,
            Self::LiveOnly { demo_imp_key } => ids
                .filter(merchant::Column::TestMode.eq(false))
                .filter(merchant::Column::ImpKey.ne(demo_imp_key)),
            Self::TestOnly { demo_imp_key } => ids.filter(
                Condition::any()
                    .add(merchant::Column::TestMode.eq(true))
                    .add(merchant::Column::ImpKey.eq(demo_imp_key)),
            ),
        };
        Some(ids.into_query())
    }

    /// Whether the payment named by `payment_id` (a column of the row being filtered, which names
    /// no merchant of its own: an attempt, a virtual account's look) is of a merchant served:
    /// `(the payment's merchant_id, by its primary key) IN (the served ids)`. A scalar sub-select
    /// is never turned into a join, so both databases read the due rows through their own index
    /// and look up one payment per row; as `EXISTS` or a join, PostgreSQL may instead read every
    /// payment of the served merchants first, when its estimates say so.
    pub fn payment_served(self, payment_id: impl IntoColumnRef) -> Option<SimpleExpr> {
        let ids = self.merchant_ids()?;
        let merchant_of = payment::Entity::find()
            .select_only()
            .column(payment::Column::MerchantId)
            .filter(Expr::col((payment::Entity, payment::Column::Id)).equals(payment_id))
            .into_query();
        Some(
            Expr::expr(SimpleExpr::SubQuery(
                None,
                Box::new(merchant_of.into_sub_query_statement()),
            ))
            .in_subquery(ids),
        )
    }
}

pub async fn active_key(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
) -> Result<Option<billing_key::Model>, DbErr> {
    active_key_query(merchant_id, customer_uid).one(db).await
}

/// [`active_key`] in a transaction that is about to write what needs the key to stay the
/// customer's until it commits (a schedule): on PostgreSQL its row is read `FOR SHARE`, so a delete
/// or a re-registration, which retires the key with an `UPDATE` of that row, waits for the
/// transaction and then sees what it wrote; a key retired meanwhile is read as it now is, not
/// active. SQLite's one writer runs such transactions one after the other.
pub async fn active_key_locked(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
) -> Result<Option<billing_key::Model>, DbErr> {
    let q = active_key_query(merchant_id, customer_uid);
    if db.get_database_backend() == DbBackend::Postgres {
        q.lock_shared().one(db).await
    } else {
        q.one(db).await
    }
}

/// The customer's active billing key (at most one, by the unique index `billing_keys_one_active`,
/// whose predicate the literal `'active'` matches, so a cached generic plan can probe it).
pub(super) fn active_key_query(
    merchant_id: i64,
    customer_uid: &str,
) -> Select<billing_key::Entity> {
    billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.eq(customer_uid))
        .filter(Expr::cust(r#""billing_keys"."status" = 'active'"#))
}

/// Whether `customer_uid` ever had a billing key at this merchant (active, replaced or deleted).
pub async fn customer_known(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
) -> Result<bool, DbErr> {
    Ok(billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.eq(customer_uid))
        .count(db)
        .await?
        > 0)
}

pub async fn active_keys(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uids: &[String],
) -> Result<Vec<billing_key::Model>, DbErr> {
    billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.is_in(customer_uids.to_vec()))
        .filter(billing_key::Column::Status.eq("active"))
        .all(db)
        .await
}

pub async fn insert_key(
    db: &impl ConnectionTrait,
    k: billing_key::ActiveModel,
) -> Result<billing_key::Model, DbErr> {
    k.insert(db).await
}

/// Whether the key a transaction inserted as `inserted` is in the database: read back by its id
/// and its sealed key, which is sealed with a fresh nonce for each issuance, so no other row can
/// match it even where an id is reused after a rollback (SQLite's rowid).
pub async fn key_stored(
    db: &impl ConnectionTrait,
    inserted: &billing_key::Model,
) -> Result<bool, DbErr> {
    Ok(billing_key::Entity::find_by_id(inserted.id)
        .filter(billing_key::Column::BatchKeySealed.eq(inserted.batch_key_sealed.as_str()))
        .count(db)
        .await?
        == 1)
}

/// A key that was never the customer's (stored nowhere else: see `Gateway::discard_issued_key`),
/// written straight as [`Retirement::Replaced`] leaves a key: retired at `now`, its deletion at
/// KCP pending and due at once ([`claim_key_deletion`]).
pub async fn insert_retired_key(
    db: &impl ConnectionTrait,
    mut k: billing_key::ActiveModel,
    now: i64,
) -> Result<billing_key::Model, DbErr> {
    k.status = Set("replaced".into());
    k.deleted_at = Set(Some(now));
    k.pg_deleted_at = Set(None);
    k.pg_delete_next_at = Set(Some(now));
    k.pg_delete_tries = Set(0);
    k.pg_delete_lease_until = Set(0);
    k.insert(db).await
}

/// The status of a key issued for a key-in charge that is not the customer's key yet
/// (`service::kept_cards`).
pub const PENDING: &str = "pending";

/// Records a key KCP issued for key-in charge `payment_id`: [`PENDING`], and its deletion at KCP
/// due at `due_at`, which waits while the payment is open (`Gateway::try_key_deletion`) and is
/// cleared when the key becomes the customer's ([`activate_pending_key`]). So a key whose charge
/// is never settled by the request that issued it (a crash, a lost answer) is still settled: made
/// the customer's once the payment is found paid, deleted at KCP once it is found not to be.
/// `due_at` is when the request's hold on the charge runs out: until then the request itself
/// settles the key, and the resolver's pass, which would only find the charge open, stays away.
pub async fn insert_pending_key(
    db: &impl ConnectionTrait,
    mut k: billing_key::ActiveModel,
    payment_id: i64,
    due_at: i64,
) -> Result<billing_key::Model, DbErr> {
    k.status = Set(PENDING.into());
    k.payment_id = Set(Some(payment_id));
    k.deleted_at = Set(None);
    k.pg_deleted_at = Set(None);
    k.pg_delete_next_at = Set(Some(due_at));
    k.pg_delete_tries = Set(0);
    k.pg_delete_lease_until = Set(0);
    k.insert(db).await
}

pub async fn key_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<billing_key::Model>, DbErr> {
    billing_key::Entity::find_by_id(id).one(db).await
}

/// Key `id` while it is [`PENDING`].
pub async fn pending_key(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<billing_key::Model>, DbErr> {
    billing_key::Entity::find_by_id(id)
        .filter(billing_key::Column::Status.eq(PENDING))
        .one(db)
        .await
}

/// The [`PENDING`] key issued for key-in charge `payment_id`, if any.
pub async fn pending_key_of(
    db: &impl ConnectionTrait,
    payment_id: i64,
) -> Result<Option<billing_key::Model>, DbErr> {
    billing_key::Entity::find()
        .filter(billing_key::Column::PaymentId.eq(payment_id))
        .filter(billing_key::Column::Status.eq(PENDING))
        .one(db)
        .await
}

/// Makes [`PENDING`] key `id` the customer's active key, with the columns `changes` sets (the
/// customer fields it takes from the key it replaces): nothing left to delete at KCP. False when
/// it was not pending any more. The customer's previous key must be retired first (one active key
/// per customer_uid, the unique index `billing_keys_one_active`).
pub async fn activate_pending_key(
    db: &impl ConnectionTrait,
    id: i64,
    mut changes: billing_key::ActiveModel,
    now: i64,
) -> Result<bool, DbErr> {
    changes.status = Set("active".into());
    changes.updated_at = Set(now);
    changes.deleted_at = Set(None);
    changes.pg_delete_next_at = Set(None);
    changes.pg_delete_tries = Set(0);
    changes.pg_delete_lease_until = Set(0);
    let res = billing_key::Entity::update_many()
        .set(changes)
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Retires [`PENDING`] key `id`, which will not be the customer's, as a replaced key is: its
/// deletion at KCP pending and due at once (and its lease as it is, for the deletion that may hold
/// it). False when it was not pending any more.
pub async fn drop_pending_key(db: &impl ConnectionTrait, id: i64, now: i64) -> Result<bool, DbErr> {
    let res = billing_key::Entity::update_many()
        .col_expr(billing_key::Column::Status, Expr::value("replaced"))
        .col_expr(billing_key::Column::UpdatedAt, Expr::value(now))
        .col_expr(billing_key::Column::DeletedAt, Expr::value(now))
        .col_expr(billing_key::Column::PgDeleteNextAt, Expr::value(now))
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Retires every [`PENDING`] key of customer `customer_uid` as [`drop_pending_key`] does: the
/// cards key-in charges of the customer are keeping, dropped by the customer's delete
/// (`Gateway::delete_customer`), in its transaction. Each row is written here, so an adoption of
/// it ([`activate_pending_key`], conditional on the row still being pending) either committed
/// before, and its key is the active one the delete retires, or finds it dropped. The rows are
/// found through the customer's payments (a pending key names its key-in charge, whose
/// customer_uid is the key's), which are indexed by customer_uid where billing keys are only for
/// the active one. How many.
pub async fn drop_pending_keys_of(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: &str,
    now: i64,
) -> Result<u64, DbErr> {
    let charges = payment::Entity::find()
        .select_only()
        .column(payment::Column::Id)
        .filter(payment::Column::MerchantId.eq(merchant_id))
        .filter(payment::Column::CustomerUid.eq(customer_uid))
        .into_query();
    let res = billing_key::Entity::update_many()
        .col_expr(billing_key::Column::Status, Expr::value("replaced"))
        .col_expr(billing_key::Column::UpdatedAt, Expr::value(now))
        .col_expr(billing_key::Column::DeletedAt, Expr::value(now))
        .col_expr(billing_key::Column::PgDeleteNextAt, Expr::value(now))
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.eq(customer_uid))
        .filter(billing_key::Column::Status.eq(PENDING))
        .filter(billing_key::Column::PaymentId.in_subquery(charges))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// The newest [`PENDING`] key of each of customers `customer_uids` whose key-in charge was
/// recorded paid (`paid_at` set, also if cancelled since, as `Gateway::settle_kept_card` goes by
/// it): a card the merchant was told is the customer's (`code 0, paid`) whose adoption is still to
/// be written (`Gateway::adopt_paid_kept_cards`). The newest, because a card issued later is a
/// later registration of the customer_uid, which stands over an earlier one. Found through the
/// customers' key-in charges (no `customer_uid_usage`), as [`drop_pending_keys_of`] finds them.
pub async fn paid_kept_cards(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uids: &[String],
) -> Result<Vec<billing_key::Model>, DbErr> {
    let paid_charges = payment::Entity::find()
        .select_only()
        .column(payment::Column::Id)
        .filter(payment::Column::MerchantId.eq(merchant_id))
        .filter(payment::Column::CustomerUid.is_in(customer_uids.to_vec()))
        .filter(payment::Column::CustomerUidUsage.is_null())
        .filter(payment::Column::PaidAt.is_not_null())
        .into_query();
    let mut keys = billing_key::Entity::find()
        .filter(billing_key::Column::MerchantId.eq(merchant_id))
        .filter(billing_key::Column::CustomerUid.is_in(customer_uids.to_vec()))
        .filter(billing_key::Column::Status.eq(PENDING))
        .filter(billing_key::Column::PaymentId.in_subquery(paid_charges))
        .order_by_desc(billing_key::Column::Id)
        .all(db)
        .await?;
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.customer_uid.clone()));
    Ok(keys)
}

/// How an active key is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// Replaced by a re-registration: its deletion at KCP is pending, due at once
    /// ([`claim_key_deletion`]).
    Replaced,
    /// Deleted by the merchant: no longer the customer's, and, as a replaced key, its deletion at
    /// KCP pending, due at once (`Gateway::delete_customer` tries it before it answers).
    Deleted,
}

/// Marks an active key `replaced` or `deleted`; false when it was not active any more.
pub async fn retire_key(
    db: &impl ConnectionTrait,
    id: i64,
    how: Retirement,
    now: i64,
) -> Result<bool, DbErr> {
    let update = billing_key::Entity::update_many()
        .col_expr(billing_key::Column::UpdatedAt, Expr::value(now))
        .col_expr(billing_key::Column::DeletedAt, Expr::value(now));
    let status = match how {
        Retirement::Replaced => "replaced",
        Retirement::Deleted => "deleted",
    };
    let res = update
        .col_expr(billing_key::Column::Status, Expr::value(status))
        .col_expr(billing_key::Column::PgDeleteNextAt, Expr::value(now))
        .col_expr(billing_key::Column::PgDeleteTries, Expr::value(0))
        .col_expr(billing_key::Column::PgDeleteLeaseUntil, Expr::value(0i64))
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.eq("active"))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The columns of a key KCP has deleted: nothing left to try, and the sealed key erased (a key KCP
/// no longer holds is only something to leak; `openport reseal` skips the empty value).
fn deleted_at_pg(
    update: sea_orm::UpdateMany<billing_key::Entity>,
    now: i64,
) -> sea_orm::UpdateMany<billing_key::Entity> {
    update
        .col_expr(billing_key::Column::PgDeletedAt, Expr::value(now))
        .col_expr(billing_key::Column::BatchKeySealed, Expr::value(""))
        .col_expr(
            billing_key::Column::PgDeleteNextAt,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(billing_key::Column::PgDeleteLeaseUntil, Expr::value(0i64))
}

/// Retired keys whose deletion at KCP is due at `now` and that no instance is trying, oldest due
/// first, of the merchants this instance serves (a live instance leaves the sandbox's keys to an
/// instance in test mode, as it leaves their schedules).
pub async fn due_key_deletions(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    now: i64,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    let mut due = billing_key::Entity::find()
        .select_only()
        .column(billing_key::Column::Id)
        .filter(billing_key::Column::PgDeleteNextAt.is_not_null())
        .filter(billing_key::Column::PgDeleteNextAt.lte(now))
        .filter(billing_key::Column::PgDeleteLeaseUntil.lt(now))
        .filter(billing_key::Column::PgDeletedAt.is_null());
    if let Some(ids) = served.merchant_ids() {
        due = due.filter(billing_key::Column::MerchantId.in_subquery(ids));
    }
    due.order_by_asc(billing_key::Column::PgDeleteNextAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// Takes the lease on a key's deletion due by `due_by` (the resolver's pass: now; a request's own
/// first try at a key it has just retired or whose charge it saw fail: whenever one is pending)
/// and counts the try: a conditional UPDATE, so across any number of instances exactly one calls
/// KCP for it at a time (the webhook outbox's claim, `store::webhooks::claim_delivery`), and no
/// transaction stays open during the call. The key as this UPDATE claimed it, read by the same
/// statement (`RETURNING`; its `pg_delete_lease_until` is the holder's token), or None.
///
/// Read by the statement that claims it, never after: a [`PENDING`] key may be made the
/// customer's ([`activate_pending_key`]) the moment the claim commits, and a claim that read the
/// row again took that active key for a retired one and deleted it at KCP under the customer. A
/// pending key the claim returns is settled by its payment (`Gateway::settle_kept_card`), which
/// deletes it only once it has dropped it ([`drop_pending_key`]): the adoption and the drop are
/// both conditional on the row still being pending, so exactly one of them happens, on either
/// database and in whichever order the two commit. An adoption that commits first cleared the due
/// time this UPDATE needs, so it claims nothing.
pub async fn claim_key_deletion(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    due_by: i64,
    lease_until: i64,
) -> Result<Option<billing_key::Model>, DbErr> {
    let mut claim = billing_key::Entity::update_many()
        .col_expr(
            billing_key::Column::PgDeleteLeaseUntil,
            Expr::value(lease_until),
        )
        .col_expr(
            billing_key::Column::PgDeleteTries,
            Expr::col(billing_key::Column::PgDeleteTries).add(1),
        )
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::PgDeleteNextAt.lte(due_by))
        .filter(billing_key::Column::PgDeleteLeaseUntil.lt(now))
        .filter(billing_key::Column::PgDeletedAt.is_null())
        .into_query();
    claim.returning_all();
    billing_key::Model::find_by_statement(db.get_database_backend().build(&claim))
        .one(db)
        .await
}

/// Whether the holder of lease `held_until` on key `id`'s deletion still holds it and the key is
/// still one to delete at KCP (retired: neither a customer's active key nor a [`PENDING`] one):
/// read right before KCP is called.
pub async fn deletion_held(
    db: &impl ConnectionTrait,
    id: i64,
    held_until: i64,
) -> Result<bool, DbErr> {
    Ok(billing_key::Entity::find_by_id(id)
        .filter(billing_key::Column::PgDeleteLeaseUntil.eq(held_until))
        .filter(billing_key::Column::PgDeletedAt.is_null())
        .filter(billing_key::Column::Status.is_not_in(["active", PENDING]))
        .count(db)
        .await?
        == 1)
}

/// Ends the pending deletion at KCP of key `id`, a customer's active key (which nothing may
/// delete there): no due time, no lease, no tries. With `held_until`, only while that is still the
/// lease. False when nothing was written.
pub async fn end_active_key_deletion(
    db: &impl ConnectionTrait,
    id: i64,
    held_until: Option<i64>,
) -> Result<bool, DbErr> {
    let mut update = billing_key::Entity::update_many()
        .col_expr(
            billing_key::Column::PgDeleteNextAt,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(billing_key::Column::PgDeleteTries, Expr::value(0))
        .col_expr(billing_key::Column::PgDeleteLeaseUntil, Expr::value(0i64))
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.eq("active"));
    if let Some(held_until) = held_until {
        update = update.filter(billing_key::Column::PgDeleteLeaseUntil.eq(held_until));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Records that KCP deleted the retired key `id` (or had deleted it): whoever holds its lease, as
/// this is KCP's word and no later try can undo it. False when it was recorded already.
pub async fn key_deleted_at_pg(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let res = deleted_at_pg(billing_key::Entity::update_many(), now)
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::Status.ne("active"))
        .filter(billing_key::Column::PgDeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Releases the lease on a deletion that did not go through, to be tried again at `next_at` (None:
/// no more tries). Only while `held_until` is still the lease, so a holder whose lease ran out
/// does not undo what the instance that took over wrote.
pub async fn key_deletion_failed(
    db: &impl ConnectionTrait,
    id: i64,
    held_until: i64,
    next_at: Option<i64>,
) -> Result<bool, DbErr> {
    release_key_deletion(
        db,
        billing_key::Entity::update_many(),
        id,
        held_until,
        next_at,
    )
    .await
}

/// Gives back a claimed deletion untried, due again at `next_at`: the claim's count of a try is
/// undone, since KCP was not called. False when the holder lost the claim.
pub async fn defer_key_deletion(
    db: &impl ConnectionTrait,
    id: i64,
    held_until: i64,
    next_at: i64,
) -> Result<bool, DbErr> {
    let untried = billing_key::Entity::update_many().col_expr(
        billing_key::Column::PgDeleteTries,
        Expr::col(billing_key::Column::PgDeleteTries).sub(1),
    );
    release_key_deletion(db, untried, id, held_until, Some(next_at)).await
}

/// `update` plus the release of deletion `id`'s lease, next due at `next_at`, while `held_until`
/// is still the lease and KCP has not deleted the key.
async fn release_key_deletion(
    db: &impl ConnectionTrait,
    update: sea_orm::UpdateMany<billing_key::Entity>,
    id: i64,
    held_until: i64,
    next_at: Option<i64>,
) -> Result<bool, DbErr> {
    let res = update
        .col_expr(billing_key::Column::PgDeleteNextAt, Expr::value(next_at))
        .col_expr(billing_key::Column::PgDeleteLeaseUntil, Expr::value(0i64))
        .filter(billing_key::Column::Id.eq(id))
        .filter(billing_key::Column::PgDeleteLeaseUntil.eq(held_until))
        .filter(billing_key::Column::PgDeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn insert_schedule(
    db: &impl ConnectionTrait,
    s: schedule::ActiveModel,
) -> Result<schedule::Model, DbErr> {
    s.insert(db).await
}

pub async fn schedule_by_uid(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    merchant_uid: &str,
) -> Result<Option<schedule::Model>, DbErr> {
    schedule::Entity::find()
        .filter(schedule::Column::MerchantId.eq(merchant_id))
        .filter(schedule::Column::MerchantUid.eq(merchant_uid))
        .one(db)
        .await
}

pub async fn schedule_by_id(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<schedule::Model>, DbErr> {
    schedule::Entity::find_by_id(id).one(db).await
}

/// Pending schedules of a customer, optionally only the given merchant_uids: those not yet run,
/// and those claimed by a run that has not opened a charge (see [`revocable`]).
pub async fn pending_schedules(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: Option<&str>,
    merchant_uids: Option<&[String]>,
) -> Result<Vec<schedule::Model>, DbErr> {
    schedules_of(db, merchant_id, customer_uid, merchant_uids, revocable()).await
}

/// The schedules of a customer (optionally only the given merchant_uids) whose charge is open at
/// KCP: claimed by a run that opened its charge (`imp_uid` set), not finished. No longer
/// [`revocable`], since that payment may yet be approved; what an unschedule of them answers
/// (service/schedules.rs `Gateway::unschedule`).
pub async fn schedules_charging(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: Option<&str>,
    merchant_uids: Option<&[String]>,
) -> Result<Vec<schedule::Model>, DbErr> {
    let charging = Condition::all()
        .add(schedule::Column::Status.eq("executing"))
        .add(schedule::Column::ImpUid.is_not_null());
    schedules_of(db, merchant_id, customer_uid, merchant_uids, charging).await
}

/// The schedules of merchant `merchant_id` matching `condition`, of a customer and/or with the
/// given merchant_uids, in the order they are due.
async fn schedules_of(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    customer_uid: Option<&str>,
    merchant_uids: Option<&[String]>,
    condition: Condition,
) -> Result<Vec<schedule::Model>, DbErr> {
    let mut q = schedule::Entity::find()
        .filter(schedule::Column::MerchantId.eq(merchant_id))
        .filter(condition);
    if let Some(uid) = customer_uid {
        q = q.filter(schedule::Column::CustomerUid.eq(uid));
    }
    if let Some(uids) = merchant_uids {
        q = q.filter(schedule::Column::MerchantUid.is_in(uids.to_vec()));
    }
    q.order_by_asc(schedule::Column::ScheduleAt)
        .order_by_asc(schedule::Column::Id)
        .all(db)
        .await
}

/// Revokes a schedule that is still pending ([`revocable`]); false when it already ran or its
/// charge is open.
pub async fn revoke_schedule(db: &impl ConnectionTrait, id: i64, now: i64) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("revoked"))
        .col_expr(schedule::Column::RevokedAt, Expr::value(now))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(revocable())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// What a merchant may still revoke: a schedule not yet run, or one a run has claimed but not
/// charged, whatever became of that run (an instance that died, a charge that could not start,
/// such as a KCP configuration error). A charge is opened only by a write conditional on the
/// claim still holding ([`record_schedule_charge`]), which a revoke ends, so no charge can start
/// after it. Once a charge is opened (`imp_uid` set) the schedule follows that payment, which may
/// yet be approved: it is no longer revocable.
fn revocable() -> Condition {
    Condition::any()
        .add(schedule::Column::Status.eq("scheduled"))
        .add(
            Condition::all()
                .add(schedule::Column::Status.eq("executing"))
                .add(schedule::Column::ImpUid.is_null()),
        )
}

/// Moves a pending schedule to another time: one not run yet, or one a run has claimed but not
/// charged ([`revocable`], shown as `scheduled`), whose claim the move ends: the schedule is
/// `scheduled` again, which no holder's write matches ([`held`]), so that run opens no charge,
/// and the schedule is claimed afresh, with a new token, when the new time comes.
pub async fn reschedule(
    db: &impl ConnectionTrait,
    id: i64,
    at: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::ScheduleAt, Expr::value(at))
        .col_expr(schedule::Column::Status, Expr::value("scheduled"))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(0))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(revocable())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Due at `now`: pending and time has come, or running on an instance whose lease ran out.
fn due(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(schedule::Column::Status.eq("scheduled"))
                .add(schedule::Column::ScheduleAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(schedule::Column::Status.eq("executing"))
                .add(schedule::Column::LeaseUntil.lt(now)),
        )
}

/// Claims up to `limit` due schedules for this instance in one statement and returns them,
/// oldest first, each with the claim's token (one fresh value for the batch: a token only has to
/// differ from the schedule's earlier ones, see [`held`]). On PostgreSQL the rows are picked
/// `FOR UPDATE SKIP LOCKED`, so instances claiming at the same moment take disjoint batches
/// instead of queuing on (and then losing) the same rows; a row another claim has committed
/// meanwhile is re-checked against [`due`] and dropped. SQLite has one writer and no row locks:
/// the UPDATE with its sub-select is atomic as it is.
pub async fn claim_due_schedules(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    now: i64,
    lease_until: i64,
    limit: u64,
) -> Result<Vec<schedule::Model>, DbErr> {
    let backend = db.get_database_backend();
    let mut claimed = schedule::Model::find_by_statement(claim_statement(
        backend,
        now,
        lease_until,
        new_claim_token(),
        due_batch(backend, served, now, limit),
    ))
    .all(db)
    .await?;
    // RETURNING comes in no particular order.
    claimed.sort_by_key(|s| (s.schedule_at, s.id));
    Ok(claimed)
}

/// Which rows a batch claim takes: the ids of the `limit` oldest due schedules, locked. The
/// outer UPDATE does not test [`due`] again: the sub-select re-checks each row it locks against the
/// row's latest version (and on SQLite the statement is atomic), and the lock holds until commit.
/// Testing it there only let PostgreSQL's plan read every due row once more per claim.
fn due_batch(backend: DbBackend, served: ServedMerchants, now: i64, limit: u64) -> SimpleExpr {
    let mut ids = schedule::Entity::find()
        .select_only()
        .column(schedule::Column::Id)
        .filter(due(now));
    if let Some(served) = served.merchant_ids() {
        ids = ids.filter(schedule::Column::MerchantId.in_subquery(served));
    }
    let ids = ids
        .order_by_asc(schedule::Column::ScheduleAt)
        .order_by_asc(schedule::Column::Id)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    super::one_of_the_ids(backend, schedule::Column::Id, ids)
}

/// The claim itself: a conditional UPDATE of the rows that `which` selects (due ones only, see
/// the callers), so exactly one instance wins each; RETURNING hands back the claimed rows without
/// a second read.
fn claim_statement(
    backend: DbBackend,
    now: i64,
    lease_until: i64,
    token: i64,
    which: impl IntoCondition,
) -> Statement {
    let mut update = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("executing"))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(lease_until))
        .col_expr(schedule::Column::ClaimToken, Expr::value(token))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(which)
        .into_query();
    update.returning_all();
    backend.build(&update)
}

/// Extends the lease of a schedule this instance still holds (`hold`). False when the lease ran
/// out and another instance claimed the schedule, or the claim was ended (revoked, moved).
pub async fn renew_lease(
    db: &impl ConnectionTrait,
    hold: HeldSchedule,
    lease_until: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::LeaseUntil, Expr::value(lease_until))
        .filter(held(hold.id, hold.token))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Records the outcomes of charged schedules in one statement (the scheduler finishes a batch's
/// schedules together, which saves a round trip and a commit per schedule). Each is recorded only
/// while this instance's claim (`token`) still holds it; returns the ids that were.
pub async fn finish_schedules(
    db: &impl ConnectionTrait,
    done: &[FinishedSchedule],
) -> Result<Vec<i64>, DbErr> {
    if done.is_empty() {
        return Ok(vec![]);
    }
    let by_id = |value: fn(&FinishedSchedule) -> sea_orm::Value| {
        done.iter().fold(CaseStatement::new(), |case, f| {
            case.case(schedule::Column::Id.eq(f.id), Expr::val(value(f)))
        })
    };
    let executed_at = by_id(|f| f.executed_at.into());
    let held_any = done
        .iter()
        .fold(Condition::any(), |any, f| any.add(held(f.id, f.token)));
    let mut update = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("executed"))
        .col_expr(
            schedule::Column::ImpUid,
            by_id(|f| f.imp_uid.clone().into()).into(),
        )
        // A cancel of the payment committed between its charge and this write (the outcomes of
        // a batch are written together, after the payments) has set `cancelled`: it stays.
        .col_expr(
            schedule::Column::PaymentStatus,
            unless_cancelled(by_id(|f| f.payment_status.into())),
        )
        .col_expr(
            schedule::Column::FailReason,
            by_id(|f| f.fail_reason.clone().into()).into(),
        )
        .col_expr(schedule::Column::ExecutedAt, executed_at.clone().into())
        .col_expr(schedule::Column::UpdatedAt, executed_at.into())
        .filter(held_any);
    QueryTrait::query(&mut update).returning_col(schedule::Column::Id);
    let rows = db
        .query_all(
            db.get_database_backend()
                .build(QueryTrait::query(&mut update)),
        )
        .await?;
    rows.iter().map(|r| r.try_get::<i64>("", "id")).collect()
}

/// A schedule's payment status becomes `status`, unless a cancel of the payment, committed
/// between its charge and the write recording it, has set `cancelled`: that stays.
fn unless_cancelled(status: impl Into<SimpleExpr>) -> SimpleExpr {
    CaseStatement::new()
        .case(
            schedule::Column::PaymentStatus.eq("cancelled"),
            Expr::val("cancelled"),
        )
        .finally(status)
        .into()
}

/// The schedule whose run made the payment `imp_uid`: one row, found through
/// `schedules_by_imp_uid` (these lookups run inside write transactions, where a scan of the
/// merchant's schedule history would hold the writer).
fn run_as(merchant_id: i64, imp_uid: &str) -> Condition {
    Condition::all()
        .add(schedule::Column::MerchantId.eq(merchant_id))
        .add(schedule::Column::ImpUid.eq(imp_uid))
}

/// Records on its schedule the outcome of a scheduled charge that the resolver settled after the
/// run that made it ended without knowing (its answer was lost, or the run stalled past its
/// lease). Without this the schedule showed `scheduled` and no payment until its next run, up to
/// 30 s after the merchant had the payment's webhook. Regardless of the lease: the payment's
/// outcome is final, and a run that holds the schedule would only record the same one (its own
/// write then affects no row). True when the schedule was still open.
pub async fn finish_schedule_of_payment(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    outcome: &ResolvedCharge<'_>,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value("executed"))
        .col_expr(
            schedule::Column::PaymentStatus,
            unless_cancelled(Expr::val(outcome.payment_status)),
        )
        .col_expr(
            schedule::Column::FailReason,
            Expr::value(outcome.fail_reason.map(str::to_owned)),
        )
        .col_expr(
            schedule::Column::ExecutedAt,
            Expr::value(outcome.executed_at),
        )
        .col_expr(schedule::Column::UpdatedAt, Expr::value(outcome.now))
        .filter(run_as(merchant_id, outcome.imp_uid))
        .filter(schedule::Column::Status.eq("executing"))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Of the schedules `(id, imp_uid)`, the ids of those executed with that payment.
pub async fn executed_naming(
    db: &impl ConnectionTrait,
    schedules: &[(i64, &str)],
) -> Result<Vec<i64>, DbErr> {
    if schedules.is_empty() {
        return Ok(vec![]);
    }
    let any = schedules
        .iter()
        .fold(Condition::any(), |any, (id, imp_uid)| {
            any.add(
                Condition::all()
                    .add(schedule::Column::Id.eq(*id))
                    .add(schedule::Column::ImpUid.eq(*imp_uid)),
            )
        });
    schedule::Entity::find()
        .select_only()
        .column(schedule::Column::Id)
        .filter(schedule::Column::Status.eq("executed"))
        .filter(any)
        .into_tuple()
        .all(db)
        .await
}

/// A scheduled charge's outcome as the resolver recorded it, for [`finish_schedule_of_payment`].
#[derive(Debug, Clone, Copy)]
pub struct ResolvedCharge<'a> {
    pub imp_uid: &'a str,
    /// `paid`, `failed` or `cancelled`, as [`FinishedSchedule::payment_status`].
    pub payment_status: &'static str,
    pub fail_reason: Option<&'a str>,
    /// When the charge started, as a run that finds the payment records it.
    pub executed_at: i64,
    pub now: i64,
}

/// What a claimed schedule's charge came to, for [`finish_schedules`].
#[derive(Debug, Clone)]
pub struct FinishedSchedule {
    pub id: i64,
    /// The token of the claim that made this instance the holder ([`held`]).
    pub token: i64,
    pub imp_uid: Option<String>,
    /// iamport's status of the payment: `paid` or `failed`, or that of a payment a takeover adopts.
    pub payment_status: &'static str,
    pub fail_reason: Option<String>,
    pub executed_at: i64,
}

/// Shows a cancel of a scheduled charge on its schedule.
pub async fn schedule_payment_cancelled(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    imp_uid: &str,
    now: i64,
) -> Result<(), DbErr> {
    schedule::Entity::update_many()
        .col_expr(schedule::Column::PaymentStatus, Expr::value("cancelled"))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(run_as(merchant_id, imp_uid))
        .exec(db)
        .await?;
    Ok(())
}

/// `SELECT 1` over the keys in `status` of the customer of the `schedules` row a statement is
/// on: the body of an `EXISTS` in that statement's conditions. `status` is one of the key
/// statuses (a constant), written as SQL text so the comparison is with the stored text.
fn keys_of_the_schedules_customer(status: &'static str) -> sea_orm::Select<billing_key::Entity> {
    billing_key::Entity::find()
        .select_only()
        .expr(Expr::val(1))
        .filter(
            Expr::col((billing_key::Entity, billing_key::Column::MerchantId))
                .equals((schedule::Entity, schedule::Column::MerchantId)),
        )
        .filter(
            Expr::col((billing_key::Entity, billing_key::Column::CustomerUid))
                .equals((schedule::Entity, schedule::Column::CustomerUid)),
        )
        .filter(Expr::cust(format!(
            r#""billing_keys"."status" = '{status}'"#
        )))
}

/// What [`hand_back_unsent`] did with the running schedule of a charge that never reached KCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// `scheduled` again: the next scheduler pass charges it.
    Scheduled,
    /// `revoked`: the merchant deleted its customer after the charge opened.
    Revoked,
    /// No running schedule named the charge.
    NotRunning,
}

/// Hands back the running schedule whose charge `imp_uid` never reached KCP (service/schedules.rs
/// `Gateway::settle_unsent_charge`): `scheduled` again and naming no payment, due as it was (its
/// time had come, or a retry ran it now), so the next scheduler pass of any instance claims it,
/// with a token of its own. Every claim on it ends, since no holder's write matches a schedule
/// that is not `executing` ([`held`]): a run that stalled holding it records nothing and opens
/// nothing.
///
/// Revoked instead, naming no payment either, when a key of its customer was deleted at or after
/// `opened_at`, the time the charge opened: the merchant's `DELETE /subscribe/customers` revokes
/// the customer's pending schedules, but not one whose charge had opened ([`revocable`]), which
/// followed its payment. Handed back, it was charged on the key of whoever registered the
/// customer_uid next (review r3 F1), or failed with a `failed` webhook for a customer the
/// merchant deleted. The delete is read in the same conditional write as the revoke; a delete
/// that commits between it and the hand-back's write is the one the hand-back's run meets
/// (`fail_unopened` when nobody registered the customer_uid again).
pub async fn hand_back_unsent(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    imp_uid: &str,
    opened_at: i64,
    now: i64,
) -> Result<HandBack, DbErr> {
    let deleted_since = keys_of_the_schedules_customer("deleted")
        .filter(Expr::col((billing_key::Entity, billing_key::Column::DeletedAt)).gte(opened_at))
        .into_query();
    // Either write leaves the run's schedule without its payment and lease: only the status differs.
    let unclaim = || {
        schedule::Entity::update_many()
            .col_expr(
                schedule::Column::ImpUid,
                Expr::value(Option::<String>::None),
            )
            .col_expr(schedule::Column::LeaseUntil, Expr::value(0))
            .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
            .filter(run_as(merchant_id, imp_uid))
            .filter(schedule::Column::Status.eq("executing"))
    };
    let revoked = unclaim()
        .col_expr(schedule::Column::Status, Expr::value("revoked"))
        .col_expr(schedule::Column::RevokedAt, Expr::value(now))
        .filter(Expr::exists(deleted_since))
        .exec(db)
        .await?;
    if revoked.rows_affected > 0 {
        return Ok(HandBack::Revoked);
    }
    let res = unclaim()
        .col_expr(schedule::Column::Status, Expr::value("scheduled"))
        .exec(db)
        .await?;
    Ok(if res.rows_affected > 0 {
        HandBack::Scheduled
    } else {
        HandBack::NotRunning
    })
}

/// Gives a claimed schedule back (its outcome is still open): another run picks it up at
/// `retry_at`. Like [`finish_schedules`], only while `hold` still holds it.
pub async fn release_schedule(
    db: &impl ConnectionTrait,
    hold: HeldSchedule,
    retry_at: i64,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::LeaseUntil, Expr::value(retry_at))
        .filter(held(hold.id, hold.token))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The schedule `id` while the claim whose token is `token` holds it: each claim writes a fresh
/// random token ([`new_claim_token`]), so no later claim (a takeover after the lease, a retry
/// after a revoke) leaves an earlier holder matching. The lease's end used to be the token, and
/// two claims in the same second wrote the same one: an instance whose claim the merchant revoked
/// and retried within that second could still open a charge the retry's run was making.
pub(super) fn held(id: i64, token: i64) -> Condition {
    Condition::all()
        .add(schedule::Column::Id.eq(id))
        .add(schedule::Column::Status.eq("executing"))
        .add(schedule::Column::ClaimToken.eq(token))
}

/// A claim's token: random and never 0 (a schedule never claimed).
pub fn new_claim_token() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1..=i64::MAX)
}

/// A schedule an instance has claimed: its id and its claim's token (see [`held`]). A scheduled
/// charge carries it so that the write opening the charge is conditional on it
/// ([`record_schedule_charge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldSchedule {
    pub id: i64,
    pub token: i64,
}

impl HeldSchedule {
    /// The hold of a schedule as its claim returned it.
    pub fn of(claimed: &schedule::Model) -> Self {
        Self {
            id: claimed.id,
            token: claimed.claim_token,
        }
    }
}

/// Gives up a claim whose run opened no charge, the schedule restored to `prior` (as it was
/// before the claim: failed or revoked, with its last run): for `…/retry`, which answers that the
/// retry failed, so nothing may run the schedule later. Only while `hold` holds it and it names no
/// payment; false otherwise (the claim ended, or its charge opened and the schedule follows that
/// payment).
pub async fn give_up_claim(
    db: &impl ConnectionTrait,
    hold: HeldSchedule,
    prior: &schedule::Model,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::Status, Expr::value(prior.status.as_str()))
        .col_expr(schedule::Column::ImpUid, Expr::value(prior.imp_uid.clone()))
        .col_expr(
            schedule::Column::PaymentStatus,
            Expr::value(prior.payment_status.clone()),
        )
        .col_expr(
            schedule::Column::FailReason,
            Expr::value(prior.fail_reason.clone()),
        )
        .col_expr(schedule::Column::ExecutedAt, Expr::value(prior.executed_at))
        .col_expr(schedule::Column::RevokedAt, Expr::value(prior.revoked_at))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(prior.lease_until))
        .col_expr(schedule::Column::UpdatedAt, Expr::value(prior.updated_at))
        .filter(held(hold.id, hold.token))
        .filter(schedule::Column::ImpUid.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Records on a held schedule the imp_uid of the charge being opened for it; false (nothing
/// written) when the holder lost the schedule (taken over after its lease, or revoked). Called
/// inside the write that opens the charge (`payments::open_charge`) or records a run that failed
/// before one could be opened (`payments::record_unopened_schedule_failure`), so a schedule and its
/// payment are written together: whoever claims the schedule next finds the payment and answers
/// with it, however the run that made it ended (its outcome never recorded on the schedule: the
/// process stopped, the write failed, the lease ran out), and never charges the schedule again.
pub async fn record_schedule_charge(
    db: &impl ConnectionTrait,
    hold: HeldSchedule,
    imp_uid: &str,
) -> Result<bool, DbErr> {
    let res = schedule::Entity::update_many()
        .col_expr(schedule::Column::ImpUid, Expr::value(imp_uid))
        .filter(held(hold.id, hold.token))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Whether the holder of `hold` still holds it.
pub async fn still_held(db: &impl ConnectionTrait, hold: HeldSchedule) -> Result<bool, DbErr> {
    Ok(schedule::Entity::find()
        .filter(held(hold.id, hold.token))
        .count(db)
        .await?
        == 1)
}

/// Filters of schedule lists.
#[derive(Debug, Clone, Default)]
pub struct ScheduleQuery {
    pub merchant_id: i64,
    pub customer_uid: Option<String>,
    /// `from ≤ schedule_at < to`.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub status: Option<ScheduleStatus>,
}

fn schedules_filtered(q: &ScheduleQuery) -> sea_orm::Select<schedule::Entity> {
    let mut s = schedule::Entity::find().filter(schedule::Column::MerchantId.eq(q.merchant_id));
    if let Some(c) = &q.customer_uid {
        s = s.filter(schedule::Column::CustomerUid.eq(c.clone()));
    }
    if let Some(f) = q.from {
        s = s.filter(schedule::Column::ScheduleAt.gte(f));
    }
    if let Some(t) = q.to {
        s = s.filter(schedule::Column::ScheduleAt.lt(t));
    }
    if let Some(status) = q.status {
        s = s.filter(schedule::Column::Status.is_in(status.db_statuses().iter().copied()));
    }
    s
}

pub async fn schedules_page(
    db: &impl ConnectionTrait,
    q: &ScheduleQuery,
    page: u64,
    limit: u64,
    desc: bool,
) -> Result<(u64, Vec<schedule::Model>), DbErr> {
    let total = schedules_filtered(q).count(db).await?;
    let s = schedules_filtered(q);
    let s = if desc {
        s.order_by_desc(schedule::Column::ScheduleAt)
            .order_by_desc(schedule::Column::Id)
    } else {
        s.order_by_asc(schedule::Column::ScheduleAt)
            .order_by_asc(schedule::Column::Id)
    };
    let list = s
        .offset(super::page_offset(page, limit))
        .limit(limit)
        .all(db)
        .await?;
    Ok((total, list))
}

pub async fn count_schedules_by_status(
    db: &impl ConnectionTrait,
    status: &str,
) -> Result<u64, DbErr> {
    schedule::Entity::find()
        .filter(schedule::Column::Status.eq(status))
        .count(db)
        .await
}

/// How many schedules of the merchants `served` are due at `now` ([`due`]): what a scheduler
/// would claim at once, which one started paused leaves alone (`jobs::scheduler`).
pub async fn count_due_schedules(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    now: i64,
) -> Result<u64, DbErr> {
    let mut q = schedule::Entity::find().filter(due(now));
    if let Some(ids) = served.merchant_ids() {
        q = q.filter(schedule::Column::MerchantId.in_subquery(ids));
    }
    q.count(db).await
}

/// Every merchant's schedules not run yet (`scheduled`, or `executing` with no outcome recorded),
/// oldest first, at most `limit`; with `due_at`, only those due then ([`due`]), which a scheduler
/// claims as soon as it runs. What an operator compares with KCP's admin before letting the
/// scheduler run on a restored backup (`openport schedule list`).
pub async fn unrun_schedules(
    db: &impl ConnectionTrait,
    due_at: Option<i64>,
    limit: u64,
) -> Result<Vec<schedule::Model>, DbErr> {
    let waiting = match due_at {
        Some(now) => due(now),
        None => Condition::any()
            .add(schedule::Column::Status.eq("scheduled"))
            .add(schedule::Column::Status.eq("executing")),
    };
    schedule::Entity::find()
        .filter(waiting)
        .order_by_asc(schedule::Column::ScheduleAt)
        .order_by_asc(schedule::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Puts an executed-but-failed (or revoked) schedule back in the queue at `at`, if its customer
/// still has an active key ([`rearm`]). False when not: the caller tells which.
pub async fn rearm_schedule(
    db: &impl ConnectionTrait,
    id: i64,
    at: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let res = rearm(db.get_database_backend(), id, now)
        .col_expr(schedule::Column::ScheduleAt, Expr::value(at))
        .col_expr(schedule::Column::Status, Expr::value("scheduled"))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(0))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Re-arms a failed or revoked schedule and claims it for this instance until `lease_until` with
/// the claim token `token` ([`new_claim_token`]: the caller knows its claim even when the answer
/// to this UPDATE is lost), in
/// one conditional UPDATE (`…/retry`): re-armed and then claimed in two steps, the schedule was
/// due in between, so the background scheduler could take it and the retry answered "not run".
/// Its `schedule_at` stays: a retry runs the schedule now (OpenAPI: "즉시 결제 재시도") without
/// scheduling it for another time as `…/reschedule` does, so it stays where range listings put it,
/// and `executed_at` tells when it ran; a claim needs no due time. None when the schedule is not
/// failed or revoked, or its customer has no active key ([`rearm`]).
pub async fn rearm_and_claim(
    db: &impl ConnectionTrait,
    id: i64,
    now: i64,
    lease_until: i64,
    token: i64,
) -> Result<Option<schedule::Model>, DbErr> {
    let mut update = rearm(db.get_database_backend(), id, now)
        .col_expr(schedule::Column::Status, Expr::value("executing"))
        .col_expr(schedule::Column::LeaseUntil, Expr::value(lease_until))
        .col_expr(schedule::Column::ClaimToken, Expr::value(token))
        .into_query();
    update.returning_all();
    schedule::Model::find_by_statement(db.get_database_backend().build(&update))
        .one(db)
        .await
}

/// The UPDATE that clears a failed or revoked schedule's last run; the caller sets its status, its
/// lease, and its time when it is scheduled again. (`service::schedules::rearmable` is the same
/// condition, read from a schedule the service holds.)
///
/// Only while the schedule's customer has an active key, in the same statement: the service's
/// check of the key before it (`refuse_unless_rearmable`) is a separate read, and a customer
/// deleted in between would have its schedule re-armed, to fail when run with a `failed` webhook
/// for a customer the merchant deleted. On PostgreSQL the key is read `FOR SHARE`, as
/// [`active_key_locked`] reads it: a delete that has retired the key but not committed is waited
/// for and the key then read as retired (a plain read would see it still active, and the delete,
/// having revoked the customer's pending schedules already, would leave this one armed). SQLite's
/// one writer runs the delete and this statement one after the other.
fn rearm(backend: DbBackend, id: i64, now: i64) -> sea_orm::UpdateMany<schedule::Entity> {
    let mut active_key = keys_of_the_schedules_customer("active").into_query();
    if backend == DbBackend::Postgres {
        active_key.lock_shared();
    }
    schedule::Entity::update_many()
        .col_expr(
            schedule::Column::ImpUid,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::PaymentStatus,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::FailReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            schedule::Column::ExecutedAt,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(
            schedule::Column::RevokedAt,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
        .filter(schedule::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(schedule::Column::Status.eq("executed"))
                        .add(schedule::Column::PaymentStatus.eq("failed")),
                )
                .add(schedule::Column::Status.eq("revoked")),
        )
        .filter(Expr::exists(active_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the shape that bounds a batch on PostgreSQL (see [`due_batch`]); the behaviour is
    /// tested against both databases in tests/api/schedules.rs.
    #[test]
    fn a_batch_claim_selects_its_rows_once_and_skips_locked_ones_on_postgres() {
        let sql = |backend| {
            claim_statement(
                backend,
                5,
                125,
                77,
                due_batch(backend, ServedMerchants::All, 5, 4),
            )
            .to_string()
        };
        let due = r#"("schedules"."status" = 'scheduled' AND "schedules"."schedule_at" <= 5) OR ("schedules"."status" = 'executing' AND "schedules"."lease_until" < 5)"#;
        assert_eq!(
            sql(DbBackend::Postgres),
            format!(
                r#"UPDATE "schedules" SET "status" = 'executing', "lease_until" = 125, "claim_token" = 77, "updated_at" = 5 WHERE "schedules"."id" = ANY(ARRAY (SELECT "schedules"."id" FROM "schedules" WHERE {due} ORDER BY "schedules"."schedule_at" ASC, "schedules"."id" ASC LIMIT 4 FOR UPDATE SKIP LOCKED)) RETURNING *"#
            )
        );
        assert_eq!(
            sql(DbBackend::Sqlite),
            format!(
                r#"UPDATE "schedules" SET "status" = 'executing', "lease_until" = 125, "claim_token" = 77, "updated_at" = 5 WHERE "schedules"."id" IN (SELECT "schedules"."id" FROM "schedules" WHERE {due} ORDER BY "schedules"."schedule_at" ASC, "schedules"."id" ASC LIMIT 4 ) RETURNING *"#
            )
        );
    }

    /// A merchant's schedule listing of a window reads the window through
    /// `schedules_by_schedule_at`, for its count and its page, not every schedule the merchant
    /// ever had (schedules are never deleted).
    #[tokio::test]
    async fn a_schedule_listing_reads_only_the_schedules_of_its_window() {
        use sea_orm::DbBackend;
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let q = ScheduleQuery {
            merchant_id: 1,
            from: Some(1_000),
            to: Some(2_000),
            ..ScheduleQuery::default()
        };
        let page = schedules_filtered(&q)
            .order_by_desc(schedule::Column::ScheduleAt)
            .order_by_desc(schedule::Column::Id)
            .limit(20)
            .build(DbBackend::Sqlite);
        let count = schedules_filtered(&q)
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "n")
            .build(DbBackend::Sqlite);
        for stmt in [count, page] {
            let plan = crate::store::sqlite_plan(&db, stmt).await;
            assert!(
                plan.contains(
                    "schedules_by_schedule_at (merchant_id=? AND schedule_at>? AND schedule_at<?)"
                ),
                "{plan}"
            );
        }
    }

    /// A cancel of a scheduled charge, and the resolver's settling of one, update the schedule
    /// through `schedules_by_imp_uid`: one row, not every schedule of the merchant.
    #[tokio::test]
    async fn cancelling_a_scheduled_payment_updates_its_schedule_through_an_index() {
        use sea_orm::DbBackend;
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let update = schedule::Entity::update_many()
            .col_expr(schedule::Column::PaymentStatus, Expr::value("cancelled"))
            .filter(run_as(1, "imp_000000000001"))
            .build(DbBackend::Sqlite);
        let plan = crate::store::sqlite_plan(&db, update).await;
        assert!(plan.contains("schedules_by_imp_uid (imp_uid=?)"), "{plan}");
    }
}
