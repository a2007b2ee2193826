//! KCP common notifications (`kcp_notifications`): one row per `noti_id`, as first received, with
//! what verifying it found.
use sea_orm::sea_query::{Condition, Expr, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use super::billing::ServedMerchants;
use super::entity::{kcp_notification, merchant, payment, pg_attempt};
use super::is_unique_violation;
use crate::domain::payment::PaymentStatus;

/// `payments.pay_method` of a virtual account (`service::vbanks::VBANK`).
const VBANK: &str = "vbank";

/// What [`record`] found.
#[derive(Debug)]
pub enum Recorded {
    /// The first time this `noti_id` arrives.
    New(kcp_notification::Model),
    /// A re-send, or another notification reusing the `noti_id`: the row as first recorded.
    Existing(kcp_notification::Model),
}

/// Inserts the notification, or returns the row already holding its `noti_id` (unique).
pub async fn record(
    db: &impl ConnectionTrait,
    row: kcp_notification::ActiveModel,
) -> Result<Recorded, DbErr> {
    let noti_id = row.noti_id.clone().take().unwrap_or_default();
    match row.insert(db).await {
        Ok(m) => Ok(Recorded::New(m)),
        Err(e) if is_unique_violation(&e) => kcp_notification::Entity::find()
            .filter(kcp_notification::Column::NotiId.eq(noti_id))
            .one(db)
            .await?
            .map(Recorded::Existing)
            .ok_or(e),
        Err(e) => Err(e),
    }
}

/// The id of the newest notification recorded for virtual account `tno` (index
/// `kcp_notifications_by_tno`).
pub async fn newest_for(db: &impl ConnectionTrait, tno: &str) -> Result<Option<i64>, DbErr> {
    kcp_notification::Entity::find()
        .select_only()
        .column(kcp_notification::Column::Id)
        .filter(kcp_notification::Column::Tno.eq(tno))
        .order_by_desc(kcp_notification::Column::Id)
        .into_tuple()
        .one(db)
        .await
}

/// `tx_cd` of a deposit notification, a reversal too (`service::notifications::TX_DEPOSIT`).
const TX_DEPOSIT: &str = "TX00";

/// The outcome of a notification naming another site than its payment's
/// (`service::notifications::Verdict::Refused`): it says nothing of the account.
pub const REFUSED: &str = "refused";

/// The deposit notifications (`TX00`, reversals too) that may tell what KCP counts on virtual
/// account `tno` of site `site_cd`: those of the site (another site's say nothing of this
/// account), not [`REFUSED`] (read through index `kcp_notifications_by_tno`; an account has a
/// few).
fn deposits_of(tno: &str, site_cd: &str) -> Select<kcp_notification::Entity> {
    kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Tno.eq(tno))
        .filter(kcp_notification::Column::TxCd.eq(TX_DEPOSIT))
        .filter(kcp_notification::Column::SiteCd.eq(site_cd))
        .filter(
            Condition::any()
                .add(kcp_notification::Column::Outcome.is_null())
                .add(kcp_notification::Column::Outcome.ne(REFUSED)),
        )
}

/// A deposit notification's place in KCP's order: the deposit time notified (`ipgm_time`,
/// `deposited_at`), but never after openport received it (`received_at`): no deposit is notified
/// before it is made, and a notice dated ahead (forged, or a clock gone wrong) must not stay the
/// newest over every deposit after it. Null when the deposit time is unknown.
fn kcp_order() -> SimpleExpr {
    let at = || Expr::col(kcp_notification::Column::DepositedAt);
    let received = || Expr::col(kcp_notification::Column::ReceivedAt);
    Expr::case(at().gt(received()), received())
        .finally(at())
        .into()
}

/// [`kcp_order`] of a row read.
fn kcp_order_of(row: &kcp_notification::Model) -> Option<i64> {
    row.deposited_at.map(|at| at.min(row.received_at))
}

/// The newest deposit notification of virtual account `tno` of site `site_cd` ([`deposits_of`])
/// in KCP's order, not in the order openport received them: the latest deposit time notified
/// ([`kcp_order`]), then the last received. KCP re-sends a notification until it is acknowledged,
/// so a deposit's re-send can arrive after the reversal that took it back (docs/kcp.md §10.2);
/// its `totl_mnyx` is older. One without a readable deposit time comes only when no other has
/// one. Ties within a second are not KCP's order: `noti_id` is only unique (spec/kcp.md §2.12),
/// and the receipt order is a guess; [`newest_deposits`] keeps them all.
pub async fn newest_deposit(
    db: &impl ConnectionTrait,
    tno: &str,
    site_cd: &str,
) -> Result<Option<kcp_notification::Model>, DbErr> {
    deposits_of(tno, site_cd)
        .order_by_asc(Expr::expr(kcp_order()).is_null())
        .order_by_desc(kcp_order())
        .order_by_desc(kcp_notification::Column::Id)
        .one(db)
        .await
}

/// Every deposit notification of virtual account `tno` of site `site_cd` that may be its newest
/// in KCP's order ([`newest_deposit`]): those at the latest deposit time ([`kcp_order`]; KCP's
/// order within a second is not known), and those whose deposit time is unknown (they could be
/// anywhere in it). What a revocation reads to know whether money may be on the account
/// (`service::vbanks`): any of them showing money keeps the close from being sent.
pub async fn newest_deposits(
    db: &impl ConnectionTrait,
    tno: &str,
    site_cd: &str,
) -> Result<Vec<kcp_notification::Model>, DbErr> {
    let Some(newest) = newest_deposit(db, tno, site_cd).await? else {
        return Ok(Vec::new());
    };
    let mut at_its_time = Condition::any().add(kcp_notification::Column::DepositedAt.is_null());
    if let Some(at) = kcp_order_of(&newest) {
        at_its_time = at_its_time.add(Expr::expr(kcp_order()).eq(at));
    }
    deposits_of(tno, site_cd)
        .filter(at_its_time)
        .order_by_desc(kcp_notification::Column::Id)
        .all(db)
        .await
}

/// The newest deposit notification (`TX00`, a reversal too) of `row`'s account and site recorded
/// after it, up to id `up_to` (the newest when KCP was asked), whose outcome is one of `decided`:
/// what may supersede `row` (`service::notifications`, `Verdict::Superseded`). Read through index
/// `kcp_notifications_by_tno` from `up_to` down, so it stops at the first one decided.
pub async fn newest_decided_after(
    db: &impl ConnectionTrait,
    row: &kcp_notification::Model,
    up_to: i64,
    decided: &[&str],
) -> Result<Option<kcp_notification::Model>, DbErr> {
    kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Tno.eq(row.tno.as_str()))
        .filter(kcp_notification::Column::Id.gt(row.id))
        .filter(kcp_notification::Column::Id.lte(up_to))
        .filter(kcp_notification::Column::SiteCd.eq(row.site_cd.as_str()))
        .filter(kcp_notification::Column::TxCd.eq(row.tx_cd.as_str()))
        .filter(kcp_notification::Column::Outcome.is_in(decided.iter().copied()))
        .order_by_desc(kcp_notification::Column::Id)
        .one(db)
        .await
}

/// Records what verifying notification `id` found, unless it is recorded `applied` already: two
/// instances may verify one notification at once (KCP re-sends it while the first is being
/// verified), and the one that reads the payment paid after the other applied the deposit
/// answers `unchanged`; the row must keep saying which notification made the payment paid (the
/// operator reconciles with it, and re-sends are answered from it).
pub async fn set_outcome(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: &str,
    now: i64,
) -> Result<(), DbErr> {
    kcp_notification::Entity::update_many()
        .col_expr(kcp_notification::Column::Outcome, Expr::value(outcome))
        .col_expr(kcp_notification::Column::VerifiedAt, Expr::value(now))
        .filter(kcp_notification::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(kcp_notification::Column::Outcome.is_null())
                .add(kcp_notification::Column::Outcome.ne(APPLIED)),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// The outcome of a notification that changed its payment (`service::notifications::Verdict`
/// writes it), which [`set_outcome`] never overwrites.
pub const APPLIED: &str = "applied";

/// Deposit notifications (`tx_cd`) still unverified, received in `received` (inclusive), not
/// checked since `checked_before`, of every merchant: oldest first, at most `limit`
/// ([`served_unverified`] with `ServedMerchants::All`, for tools and tests).
pub async fn unverified(
    db: &impl ConnectionTrait,
    tx_cd: &str,
    received: (i64, i64),
    checked_before: i64,
    limit: u64,
) -> Result<Vec<kcp_notification::Model>, DbErr> {
    served_unverified(
        db,
        ServedMerchants::All,
        tx_cd,
        received,
        checked_before,
        limit,
    )
    .await
}

/// [`unverified`]'s select ([`served_unverified_query`] of every merchant).
pub fn unverified_query(
    tx_cd: &str,
    received: (i64, i64),
    checked_before: i64,
    limit: u64,
) -> Select<kcp_notification::Entity> {
    served_unverified_query(ServedMerchants::All, tx_cd, received, checked_before, limit)
}

/// [`unverified`] of the merchants `served` only: what an instance's re-verify sweep reads
/// ([`served_unverified_query`]).
pub async fn served_unverified(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    tx_cd: &str,
    received: (i64, i64),
    checked_before: i64,
    limit: u64,
) -> Result<Vec<kcp_notification::Model>, DbErr> {
    served_unverified_query(served, tx_cd, received, checked_before, limit)
        .all(db)
        .await
}

/// [`served_unverified`]'s select. Every instance's resolver runs it every minute: `outcome IS NULL`
/// written out (never bound) is what lets it read `kcp_notifications_undecided`, the undecided
/// rows alone in `received_at` order, rather than the whole table (migration 000032).
///
/// Only the rows an instance serving `served` decides ([`served_notification`]): the other mode's
/// are left out, not read and skipped. Skipped rows are not marked checked (that would push back
/// the other mode's instances), so on a database shared by live and test instances a hundred of
/// the other mode's undecided rows filled every batch and an instance never reached its own.
///
/// Oldest first: a deposit notified lately still has KCP's re-sends, an old one only this sweep,
/// and it leaves the window at its end; newest first, more rows due than a few sweeps take kept
/// the oldest out until then.
pub fn served_unverified_query(
    served: ServedMerchants,
    tx_cd: &str,
    received: (i64, i64),
    checked_before: i64,
    limit: u64,
) -> Select<kcp_notification::Entity> {
    let mut query = kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Outcome.is_null())
        .filter(kcp_notification::Column::TxCd.eq(tx_cd))
        .filter(kcp_notification::Column::ReceivedAt.between(received.0, received.1))
        .filter(
            Condition::any()
                .add(kcp_notification::Column::VerifiedAt.is_null())
                .add(kcp_notification::Column::VerifiedAt.lt(checked_before)),
        );
    if let Some(served) = served_notification(served) {
        query = query.filter(served);
    }
    query
        .order_by_asc(kcp_notification::Column::ReceivedAt)
        .limit(limit)
}

/// Deposit notifications (`tx_cd`) received before `received_before` (the start of the sweep's
/// window) that nothing ever looked at (`outcome` and `verified_at` both empty) and that an
/// instance serving `served` decides: oldest first, at most `limit` ([`served_never_looked_query`]).
pub async fn served_never_looked(
    db: &impl ConnectionTrait,
    served: ServedMerchants,
    tx_cd: &str,
    received_before: i64,
    limit: u64,
) -> Result<Vec<kcp_notification::Model>, DbErr> {
    served_never_looked_query(served, tx_cd, received_before, limit)
        .all(db)
        .await
}

/// [`served_never_looked`]'s select: what the re-verify sweep reads besides its window
/// (`Gateway::reverify_notifications`). Such a row was recorded by a release from before
/// `outcome` and `verified_at` existed (migration 000010: it applied the deposit, or not, and
/// recorded nothing of it), or arrived while no instance ran for longer than the window: it left
/// the window unseen, so neither the sweep nor the prune (which keeps undecided rows) ever took
/// it, and `count_for_operator` counted it for good, with no WARN naming it. A row the sweep looked
/// at has `verified_at` set (taken, given up on, or [`leave_to_operator`]), so it is read here
/// once at most.
///
/// Read through `kcp_notifications_undecided (received_at) WHERE outcome IS NULL` from its
/// oldest entry up to `received_before`, as [`served_unverified_query`] reads its window
/// (`outcome IS NULL` written out): the index holds the undecided rows only, and those it passes
/// over here (looked at, left to the operator) are the few an operator has to look at anyway.
/// No index of its own (migration 000032 is enough): once the rows an upgrade brought are
/// decided, this reads none but the operator's.
pub fn served_never_looked_query(
    served: ServedMerchants,
    tx_cd: &str,
    received_before: i64,
    limit: u64,
) -> Select<kcp_notification::Entity> {
    let mut query = kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Outcome.is_null())
        .filter(kcp_notification::Column::TxCd.eq(tx_cd))
        .filter(kcp_notification::Column::ReceivedAt.lt(received_before))
        .filter(kcp_notification::Column::VerifiedAt.is_null());
    if let Some(served) = served_notification(served) {
        query = query.filter(served);
    }
    query
        .order_by_asc(kcp_notification::Column::ReceivedAt)
        .limit(limit)
}

/// Whether an instance serving `served` decides the deposit notification of the row being
/// filtered, as `service::notifications` would find out only when verifying it (`OtherMode`):
/// - the virtual account holding its `tno` (found as `payments::vbank_by_tno` finds it, through
///   `pg_attempts_by_tno`, each payment by its key) is of a merchant served;
/// - no account holds it (a trade the sweep asks KCP about with a connector of the site named):
///   no merchant the instance does not serve has the site, or, outside test mode, one it serves
///   does (`Gateway::unknown_trade_at_kcp`: a test-mode instance's "not found" must not decide a
///   site a live merchant has). A site no merchant has is anyone's (decided unknown).
///
/// None for `All`. The account's merchant is a scalar sub-select, which neither database turns
/// into a join (`ServedMerchants::payment_served`).
fn served_notification(served: ServedMerchants) -> Option<Condition> {
    let ids = served.merchant_ids()?;
    let n = |c: kcp_notification::Column| (kcp_notification::Entity, c);
    let attempts_with_tno = Query::select()
        .column((pg_attempt::Entity, pg_attempt::Column::PaymentId))
        .from(pg_attempt::Entity)
        .and_where(
            Expr::col((pg_attempt::Entity, pg_attempt::Column::Tno))
                .equals(n(kcp_notification::Column::Tno)),
        )
        .to_owned();
    let owner = || {
        let q = Query::select()
            .column((payment::Entity, payment::Column::MerchantId))
            .from(payment::Entity)
            .and_where(
                Expr::col((payment::Entity, payment::Column::Id))
                    .in_subquery(attempts_with_tno.clone()),
            )
            .and_where(
                Expr::col((payment::Entity, payment::Column::PgTid))
                    .equals(n(kcp_notification::Column::Tno)),
            )
            .and_where(Expr::col((payment::Entity, payment::Column::PayMethod)).eq(VBANK))
            .limit(1)
            .to_owned();
        Expr::expr(SimpleExpr::SubQuery(
            None,
            Box::new(q.into_sub_query_statement()),
        ))
    };
    let merchants_of_site = |of_served: bool| {
        let id = Expr::col((merchant::Entity, merchant::Column::Id));
        Query::select()
            .expr(Expr::val(1))
            .from(merchant::Entity)
            .and_where(
                Expr::col((merchant::Entity, merchant::Column::SiteCd))
                    .equals(n(kcp_notification::Column::SiteCd)),
            )
            .and_where(if of_served {
                id.in_subquery(ids.clone())
            } else {
                id.not_in_subquery(ids.clone())
            })
            .to_owned()
    };
    let mut site_served = Condition::any().add(Expr::exists(merchants_of_site(false)).not());
    if matches!(served, ServedMerchants::LiveOnly { .. }) {
        site_served = site_served.add(Expr::exists(merchants_of_site(true)));
    }
    let served_account = owner().in_subquery(ids.clone());
    let unheld_trade_of_a_site_served = Condition::all().add(owner().is_null()).add(site_served);
    Some(
        Condition::any()
            .add(served_account)
            .add(unheld_trade_of_a_site_served),
    )
}

/// Takes notifications `rows` (as the re-verify sweep read them) for one instance's inquiry: moves
/// each one's `verified_at` to `now`, only where it still holds the value read and the row is still
/// undecided, in one statement (a compare-and-swap, alike on SQLite and PostgreSQL). Returns how
/// many moved: none when another instance's sweep took them since they were read, which then asks
/// KCP alone (every instance's sweep reads the same rows, and each asked KCP about them). Moved,
/// the rows count as checked at `now` whatever KCP answers: the next sweeps wait before asking
/// again.
pub async fn take(
    db: &impl ConnectionTrait,
    rows: &[&kcp_notification::Model],
    now: i64,
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let res = kcp_notification::Entity::update_many()
        .col_expr(kcp_notification::Column::VerifiedAt, Expr::value(now))
        .filter(as_read(rows))
        .filter(kcp_notification::Column::Outcome.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Gives back notifications `rows` [`take`]n at `taken_at` and not asked about: each one's
/// `verified_at` becomes the value read again, where the take left it and the row is still
/// undecided, so the instances that do ask (the other mode's) are not kept waiting.
pub async fn give_back(
    db: &impl ConnectionTrait,
    rows: &[&kcp_notification::Model],
    taken_at: i64,
) -> Result<(), DbErr> {
    for (read, ids) in by_read(rows) {
        kcp_notification::Entity::update_many()
            .col_expr(kcp_notification::Column::VerifiedAt, Expr::value(read))
            .filter(kcp_notification::Column::Id.is_in(ids))
            .filter(kcp_notification::Column::VerifiedAt.eq(taken_at))
            .filter(kcp_notification::Column::Outcome.is_null())
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Rows `rows` whose `verified_at` still holds the value read: one `id IN (..)` for the rows read
/// alike (a trade's rows were mostly checked together), so the statement stays small.
fn as_read(rows: &[&kcp_notification::Model]) -> Condition {
    by_read(rows)
        .into_iter()
        .fold(Condition::any(), |any, (read, ids)| {
            let checked = match read {
                Some(at) => kcp_notification::Column::VerifiedAt.eq(at),
                None => kcp_notification::Column::VerifiedAt.is_null(),
            };
            any.add(
                Condition::all()
                    .add(kcp_notification::Column::Id.is_in(ids))
                    .add(checked),
            )
        })
}

/// The ids of `rows` by the `verified_at` each was read with.
fn by_read(rows: &[&kcp_notification::Model]) -> std::collections::BTreeMap<Option<i64>, Vec<i64>> {
    let mut by_read = std::collections::BTreeMap::<_, Vec<i64>>::new();
    for row in rows {
        by_read.entry(row.verified_at).or_default().push(row.id);
    }
    by_read
}

/// How many notifications wait for an operator: undecided and out of the re-verify sweep for good,
/// received more than `window` (the sweep's) before `now`, or left to the operator at once
/// ([`leave_to_operator`], which dates their check at `received_at + window`). A row received
/// before the window that nothing ever looked at ([`served_never_looked`]) counts too until the
/// sweep's one look at it decides it: the sweep works through them a batch a minute, so after an
/// upgrade that brought many the count falls by itself; one no instance of its mode is left to
/// look at stays counted rather than hidden. Read through `kcp_notifications_undecided`
/// (`outcome IS NULL` written out, as [`served_unverified_query`] says), so it costs the
/// undecided rows, never the table.
pub async fn count_for_operator(
    db: &impl ConnectionTrait,
    now: i64,
    window: i64,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Outcome.is_null())
        .filter(
            Condition::any()
                .add(kcp_notification::Column::ReceivedAt.lt(now - window))
                .add(
                    Expr::col(kcp_notification::Column::VerifiedAt)
                        .gte(Expr::col(kcp_notification::Column::ReceivedAt).add(window)),
                ),
        )
        .count(db)
        .await
}

/// Takes undecided notifications `ids` out of the re-verify sweep for good, their `outcome` left
/// empty for an operator: each one's `verified_at` becomes `received_at + window` (`window` the
/// sweep's, from receipt), which the sweep, reading only rows received within `window` and not
/// checked within its interval, never selects again. For a deposit naming a trade KCP holds and
/// openport does not (`Gateway::reverify_notifications`): asking KCP again would find the same,
/// and only an operator can tell why openport lacks the account.
pub async fn leave_to_operator(
    db: &impl ConnectionTrait,
    ids: &[i64],
    window: i64,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    kcp_notification::Entity::update_many()
        .col_expr(
            kcp_notification::Column::VerifiedAt,
            Expr::col(kcp_notification::Column::ReceivedAt).add(window),
        )
        .filter(kcp_notification::Column::Id.is_in(ids.iter().copied()))
        .filter(kcp_notification::Column::Outcome.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes up to `limit` notifications received before `before`; returns how many went. Kept
/// whatever their age:
/// - a notification still undecided (empty `outcome`): a deposit KCP's inquiry never confirmed,
///   or one naming a trade openport does not hold but KCP does (an account issued after the
///   backup a database was restored from). An operator has to compare it with KCP's admin
///   (docs/operations.md "KCP notifications"). One naming a trade KCP does not know either
///   (forged, or another site's) is decided `unknown` and goes like any decided one;
/// - every notification of a trade whose payment is still `ready`, an account awaiting its
///   deposit above all: its newest deposit notification is what keeps a revocation from closing
///   the account over a partial deposit (`service::vbanks`, docs/kcp.md §10.2), which KCP's
///   inquiry does not show.
///
/// The payment is found as `payments::by_tno_query` finds it, through the attempt that named the
/// trade (`pg_attempts_by_tno`): `payments.pg_tid` has no index.
pub async fn prune(db: &impl ConnectionTrait, before: i64, limit: u64) -> Result<u64, DbErr> {
    let ids: Vec<i64> = prune_query(before, limit).into_tuple().all(db).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let res = kcp_notification::Entity::delete_many()
        .filter(kcp_notification::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// [`prune`]'s select: the ids of up to `limit` notifications it may delete, oldest first. It
/// runs on the writer, so it reads `kcp_notifications_by_received (received_at, id)` in its order
/// (migration 000032): the rows past the cutoff only, up to the batch. Read in id order, it would
/// walk every row of the table, the recent ones and those it keeps, looking for a full batch.
pub fn prune_query(before: i64, limit: u64) -> Select<kcp_notification::Entity> {
    let open_payment_of_the_trade = Query::select()
        .expr(Expr::val(1))
        .from(pg_attempt::Entity)
        .inner_join(
            payment::Entity,
            Expr::col((payment::Entity, payment::Column::Id))
                .equals((pg_attempt::Entity, pg_attempt::Column::PaymentId)),
        )
        .and_where(
            Expr::col((pg_attempt::Entity, pg_attempt::Column::Tno))
                .equals((kcp_notification::Entity, kcp_notification::Column::Tno)),
        )
        .and_where(
            Expr::col((payment::Entity, payment::Column::Status)).eq(PaymentStatus::Ready.as_db()),
        )
        .to_owned();
    kcp_notification::Entity::find()
        .select_only()
        .column(kcp_notification::Column::Id)
        .filter(kcp_notification::Column::ReceivedAt.lt(before))
        .filter(kcp_notification::Column::Outcome.is_not_null())
        .filter(kcp_notification::Column::Outcome.ne(""))
        .filter(Expr::exists(open_payment_of_the_trade).not())
        .order_by_asc(kcp_notification::Column::ReceivedAt)
        .order_by_asc(kcp_notification::Column::Id)
        .limit(limit)
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    use super::*;

    /// Whether a plan line reads a whole table, or sorts what it read.
    fn reads_whole_or_sorts(line: &str) -> bool {
        line.trim_start().starts_with("SCAN") || line.contains("TEMP B-TREE")
    }

    /// Every instance's resolver asks every minute for the undecided deposits of its window and of
    /// its mode: it reads them oldest first in the index of the undecided notifications, never
    /// the table, each row's account looked up by index and its payment by key; only the few
    /// merchants are read whole.
    #[tokio::test]
    async fn the_re_verify_sweep_reads_the_undecided_notifications_of_its_window_in_their_index() {
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let demo_imp_key = "imp_demo";
        for served in [
            ServedMerchants::All,
            ServedMerchants::TestOnly { demo_imp_key },
            ServedMerchants::LiveOnly { demo_imp_key },
        ] {
            let stmt = served_unverified_query(served, "TX00", (100, 200), 150, 100)
                .build(DbBackend::Sqlite);
            let plan = crate::store::sqlite_plan(&db, stmt).await;
            assert!(
                plan.contains(
                    "kcp_notifications USING INDEX kcp_notifications_undecided \
                     (received_at>? AND received_at<?)"
                ),
                "{plan}"
            );
            let reads_whole = |l: &str| reads_whole_or_sorts(l) && l.trim() != "SCAN merchants";
            assert!(!plan.lines().any(reads_whole), "{plan}");
            if !matches!(served, ServedMerchants::All) {
                assert!(
                    plan.contains("pg_attempts USING INDEX pg_attempts_by_tno"),
                    "{plan}"
                );
                assert!(
                    plan.contains("payments USING INTEGER PRIMARY KEY"),
                    "{plan}"
                );
            }
            assert!(
                served_unverified(&db.read, served, "TX00", (100, 200), 150, 100)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    /// The sweep's list of the rows before its window that nothing looked at reads the same
    /// index, from its start up to the window, in its order: no new index needed.
    #[tokio::test]
    async fn the_never_looked_at_notifications_are_read_in_the_index_of_the_undecided_ones() {
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let stmt = served_never_looked_query(ServedMerchants::All, "TX00", 100, 100)
            .build(DbBackend::Sqlite);
        let plan = crate::store::sqlite_plan(&db, stmt).await;
        assert!(
            plan.contains(
                "kcp_notifications USING INDEX kcp_notifications_undecided (received_at<?)"
            ),
            "{plan}"
        );
        assert!(!plan.lines().any(reads_whole_or_sorts), "{plan}");
    }

    /// Two instances' sweeps read a trade's rows alike (one never checked, one checked before):
    /// the first to take them moves both, the second finds none as read and moves nothing; rows
    /// given back hold what was read again, so another instance's sweep takes them.
    #[tokio::test]
    async fn a_trades_rows_are_taken_once_and_given_back_as_read() {
        use sea_orm::ActiveValue::Set;
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let mut read = Vec::new();
        for (noti_id, verified_at) in [("never", None), ("before", Some(100))] {
            let row = kcp_notification::ActiveModel {
                noti_id: Set(noti_id.into()),
                site_cd: Set("T0000".into()),
                tno: Set("20991231000009".into()),
                tx_cd: Set("TX00".into()),
                amount: Set(7000),
                total: Set(7000),
                received_at: Set(50),
                verified_at: Set(verified_at),
                ..Default::default()
            };
            read.push(row.insert(&db.write).await.unwrap());
        }
        let rows: Vec<_> = read.iter().collect();
        let verified_at = || async {
            kcp_notification::Entity::find()
                .order_by_asc(kcp_notification::Column::Id)
                .all(&db.read)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.verified_at)
                .collect::<Vec<_>>()
        };

        assert_eq!(take(&db.write, &rows, 500).await.unwrap(), 2);
        assert_eq!(verified_at().await, [Some(500), Some(500)]);
        assert_eq!(take(&db.write, &rows, 501).await.unwrap(), 0, "taken");
        assert_eq!(verified_at().await, [Some(500), Some(500)]);

        give_back(&db.write, &rows, 500).await.unwrap();
        assert_eq!(verified_at().await, [None, Some(100)]);
        assert_eq!(take(&db.write, &rows, 502).await.unwrap(), 2, "free again");
    }

    /// The hourly prune runs on the writer (on SQLite, every other write waits for it): it reads
    /// only the notifications older than the cutoff, oldest first, and stops at the cutoff; the
    /// trade's open payment is looked up by index for each.
    #[tokio::test]
    async fn the_prune_reads_only_the_notifications_older_than_its_cutoff_in_their_order() {
        let db = crate::store::Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let stmt = prune_query(100, 1000).build(DbBackend::Sqlite);
        let plan = crate::store::sqlite_plan(&db, stmt).await;
        assert!(
            plan.contains(
                "kcp_notifications USING INDEX kcp_notifications_by_received (received_at<?)"
            ),
            "{plan}"
        );
        assert!(
            plan.contains("pg_attempts USING INDEX pg_attempts_by_tno"),
            "{plan}"
        );
        assert!(!plan.lines().any(reads_whole_or_sorts), "{plan}");
        assert_eq!(prune(&db.write, 100, 1000).await.unwrap(), 0);
    }
}
