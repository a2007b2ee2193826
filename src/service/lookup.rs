//! Read side: the lookups of spec/iamport-v1.md §4.1.
use sea_orm::ConnectionTrait;

use super::auth::Principal;
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::payment::{PaymentStatus, StatusFilter};
use crate::domain::LAST_UNIX_SECS;
use crate::store::entity::payment;
use crate::store::payments::{self, PaymentQuery, Sorting, TimeColumn};

pub const NOT_FOUND: &str = "존재하지 않는 결제정보입니다.";
/// The operator's merchant_uid lookup that names no merchant.
pub const MERCHANT_UID_NEEDS_MERCHANT: &str =
    "운영자 토큰으로 merchant_uid를 조회할 때는 merchant_id(GET /admin/merchants의 id)가 필요합니다.";
/// Default window of `/payments/status`: 90 days back from `to` or now, whichever is earlier.
const DEFAULT_RANGE_SECS: i64 = 90 * 24 * 3600;
/// The latest time a `/payments/status` range reaches: [`LAST_UNIX_SECS`], the bound `vbank_due`
/// and `logis.sent_at` have too. No payment has a time past it, so a larger `from` or `to`
/// (Java's `Long.MAX_VALUE` for "no upper bound") is answered as it would be unclamped, and the
/// paid listing's margin, added to `to` in SQL (`store::payments::paid_between`), stays far from
/// PostgreSQL's `bigint out of range`, which was an HTTP 500.
const MAX_UNIX_SECS: i64 = LAST_UNIX_SECS;

/// A page of iamport's paged shape: previous/next are page numbers, 0 when none.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub total: u64,
    pub previous: u64,
    pub next: u64,
    pub list: Vec<T>,
}

impl<T> Page<T> {
    /// Page `paging.page` of `total` rows: `previous` is 0 on the first page and the last page
    /// when asked past the end; `next` is 0 on the last page.
    pub fn new(total: u64, paging: Paging, list: Vec<T>) -> Self {
        let last_page = total.div_ceil(paging.limit);
        Self {
            total,
            previous: if paging.page > 1 {
                (paging.page - 1).min(last_page.max(1))
            } else {
                0
            },
            next: if paging.page < last_page {
                paging.page + 1
            } else {
                0
            },
            list,
        }
    }
}

/// Whose payments a lookup reads. A merchant's token reads its own payments only; the operator's
/// reads every merchant's, or those of the one merchant it names (`merchant_id`, the `id` of
/// `GET /admin/merchants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    merchant_id: Option<i64>,
}

impl Scope {
    /// `named` counts for the operator only: a merchant's token never reads another merchant's
    /// payments, whatever it names.
    pub fn of(who: &Principal, named: Option<i64>) -> Self {
        let merchant_id = match who {
            Principal::Merchant(m) => Some(m.id),
            Principal::Admin => named,
        };
        Self { merchant_id }
    }

    /// The merchant a merchant_uid lookup searches. A merchant_uid is the merchant's own order
    /// number (two merchants may both have an `order-1`), so across every merchant it names no
    /// payment: the operator has to say whose.
    fn of_merchant_uid(self) -> ServiceResult<i64> {
        self.merchant_id
            .ok_or_else(|| ServiceError::BadRequest(MERCHANT_UID_NEEDS_MERCHANT.into()))
    }
}

/// What a multi-get found.
#[derive(Debug, Clone)]
pub struct FoundPayments {
    pub records: Vec<PaymentRecord>,
    /// How many of the requested ids matched no payment. Not `requested − records`: an imp_uid
    /// and a merchant_uid may name the same payment, which is listed once (spec §2: 207 means
    /// some ids were not found).
    pub unmatched: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u64,
    pub limit: u64,
}

impl Paging {
    /// 1-based page; limit defaults to 20 and is capped at `max`. A limit of 0 is the default,
    /// not one row a page: the official Java client always sends `limit`, and 0 there means
    /// "not set" (as a page of 0 reads as page 1).
    pub fn new(page: Option<u64>, limit: Option<u64>, max: u64) -> Self {
        Self {
            page: page.unwrap_or(1).max(1),
            limit: limit.filter(|l| *l >= 1).unwrap_or(20).min(max),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StatusQuery {
    pub filter: StatusFilter,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub sorting: Sorting,
    pub paging: Paging,
}

impl Gateway {
    /// The payment `p` with its cancel history. A payment never cancelled has none, and is
    /// answered as read (the lookup's one statement: most payments). One that was is read again
    /// with its cancellations in one snapshot, so that its `cancel_amount` and status are those
    /// of the history beside it: read one after the other, a partial cancel committing in between
    /// showed `cancel_amount` 3000 over a history of 5000.
    pub async fn payment_record(&self, p: payment::Model) -> ServiceResult<PaymentRecord> {
        if p.cancel_amount == 0 {
            return Ok(PaymentRecord {
                payment: p,
                cancellations: vec![],
            });
        }
        let snapshot = self.db.read_snapshot().await?;
        let p = payments::by_id(&snapshot, p.id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(NOT_FOUND.into()))?;
        let mut records = Self::records(&snapshot, vec![p]).await?;
        snapshot.end().await?;
        Ok(records.remove(0))
    }

    /// `list` with their cancel histories, read on `db`: a snapshot the list was read on too.
    async fn records(
        db: &impl ConnectionTrait,
        list: Vec<payment::Model>,
    ) -> ServiceResult<Vec<PaymentRecord>> {
        let ids: Vec<i64> = list
            .iter()
            .filter(|p| p.cancel_amount > 0)
            .map(|p| p.id)
            .collect();
        let mut cancels = payments::cancellations_of(db, &ids).await?;
        Ok(list
            .into_iter()
            .map(|p| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut cancels)
                    .into_iter()
                    .partition(|c| c.payment_id == p.id);
                cancels = rest;
                PaymentRecord {
                    payment: p,
                    cancellations: mine,
                }
            })
            .collect())
    }

    pub async fn payment_by_imp_uid(
        &self,
        scope: Scope,
        imp_uid: &str,
        include_sandbox: bool,
    ) -> ServiceResult<PaymentRecord> {
        let p = payments::by_imp_uid(&self.db.read, scope.merchant_id, imp_uid)
            .await?
            .filter(|p| include_sandbox || !p.sandbox)
            .ok_or_else(|| ServiceError::NotFound(NOT_FOUND.into()))?;
        self.payment_record(p).await
    }

    /// Multi-get: found records in the order asked, and how many ids matched nothing.
    pub async fn payments_by_ids(
        &self,
        scope: Scope,
        imp_uids: &[String],
        merchant_uids: &[String],
    ) -> ServiceResult<FoundPayments> {
        if !merchant_uids.is_empty() {
            scope.of_merchant_uid()?;
        }
        let snapshot = self.db.read_snapshot().await?;
        let found =
            payments::by_imp_uids(&snapshot, scope.merchant_id, imp_uids, merchant_uids).await?;
        let mut ordered: Vec<payment::Model> = Vec::new();
        let mut unmatched = 0;
        for id in imp_uids {
            match found.iter().find(|p| &p.imp_uid == id) {
                Some(p) => ordered.push(p.clone()),
                None => unmatched += 1,
            }
        }
        // A merchant_uid names its newest attempt, as /payments/find does.
        for uid in merchant_uids {
            match found.iter().find(|p| &p.merchant_uid == uid) {
                Some(p) if !ordered.iter().any(|o| o.id == p.id) => ordered.push(p.clone()),
                Some(_) => {}
                None => unmatched += 1,
            }
        }
        let records = Self::records(&snapshot, ordered).await?;
        snapshot.end().await?;
        Ok(FoundPayments { records, unmatched })
    }

    fn merchant_uid_query(
        scope: Scope,
        merchant_uid: &str,
        status: StatusFilter,
    ) -> ServiceResult<PaymentQuery> {
        Ok(PaymentQuery {
            merchant_id: Some(scope.of_merchant_uid()?),
            merchant_uid: Some(merchant_uid.to_string()),
            customer_uid: None,
            statuses: status.db_statuses(),
            time_range: None,
            include_sandbox: true,
        })
    }

    pub async fn find_payment(
        &self,
        scope: Scope,
        merchant_uid: &str,
        status: StatusFilter,
        sorting: Sorting,
    ) -> ServiceResult<PaymentRecord> {
        // spec §4.1: "the first by sort order; with a status, the latest with that status"
        // (iamport's OpenAPI: "해당 status에 해당하는 가장 최신 데이터").
        let sorting = match status {
            StatusFilter::All => sorting,
            StatusFilter::Only(_) => Sorting::Started { desc: true },
        };
        let q = Self::merchant_uid_query(scope, merchant_uid, status)?;
        let p = payments::first(&self.db.read, &q, sorting)
            .await?
            .ok_or_else(|| ServiceError::NotFound(NOT_FOUND.into()))?;
        self.payment_record(p).await
    }

    pub async fn find_all_payments(
        &self,
        scope: Scope,
        merchant_uid: &str,
        status: StatusFilter,
        sorting: Sorting,
        paging: Paging,
    ) -> ServiceResult<Page<PaymentRecord>> {
        let q = Self::merchant_uid_query(scope, merchant_uid, status)?;
        let page = self.page(&q, sorting, paging).await?;
        if page.total == 0 {
            return Err(ServiceError::NotFound(NOT_FOUND.into()));
        }
        Ok(page)
    }

    pub async fn payments_by_status(
        &self,
        scope: Scope,
        sq: StatusQuery,
    ) -> ServiceResult<Page<PaymentRecord>> {
        let now = self.clock.unix();
        let to = sq.to.filter(|t| *t > 0).unwrap_or(now).min(MAX_UNIX_SECS);
        // The default window ends at `to` or now, whichever is earlier: a `to` in the future
        // ("no upper bound") with no `from` lists the last 90 days, as no `to` does, not 90 days
        // of 9999 (nothing).
        let from = sq
            .from
            .filter(|f| *f > 0)
            .unwrap_or(to.min(now) - DEFAULT_RANGE_SECS)
            .min(MAX_UNIX_SECS);
        let column = match sq.filter {
            StatusFilter::All => TimeColumn::OfStatus,
            StatusFilter::Only(PaymentStatus::Ready | PaymentStatus::Pending) => {
                TimeColumn::Started
            }
            StatusFilter::Only(PaymentStatus::Paid) => TimeColumn::Paid,
            StatusFilter::Only(PaymentStatus::Failed) => TimeColumn::Failed,
            StatusFilter::Only(PaymentStatus::Cancelled) => TimeColumn::Cancelled,
        };
        let q = PaymentQuery {
            merchant_id: scope.merchant_id,
            merchant_uid: None,
            customer_uid: None,
            statuses: sq.filter.db_statuses(),
            time_range: Some((column, from, to)),
            include_sandbox: true,
        };
        let page = self.page(&q, sq.sorting, sq.paging).await?;
        // iamport's OpenAPI: `400 … 데이터 범위를 넘어선 page인 경우`. The first page of nothing
        // is an empty page.
        if sq.paging.page > 1 && page.list.is_empty() {
            return Err(ServiceError::BadRequest(format!(
                "데이터 범위를 넘어선 page입니다. (전체 {}건)",
                page.total
            )));
        }
        Ok(page)
    }

    /// Payments made with a customer's billing key, newest first.
    pub async fn customer_payments(
        &self,
        m: &crate::store::entity::merchant::Model,
        customer_uid: &str,
        paging: Paging,
    ) -> ServiceResult<Page<PaymentRecord>> {
        let q = PaymentQuery {
            merchant_id: Some(m.id),
            customer_uid: Some(customer_uid.to_string()),
            include_sandbox: true,
            ..PaymentQuery::default()
        };
        let page = self
            .page(&q, Sorting::Started { desc: true }, paging)
            .await?;
        // iamport's OpenAPI: `404 유효하지 않은 customer_uid`. A customer whose key was deleted
        // still lists the payments made with it.
        if page.total == 0
            && !crate::store::billing::customer_known(&self.db.read, m.id, customer_uid).await?
        {
            return Err(ServiceError::NotFound(
                "유효하지 않은 customer_uid입니다.".into(),
            ));
        }
        Ok(page)
    }

    /// A page, its total and its cancel histories, read in one snapshot so that they agree.
    async fn page(
        &self,
        q: &PaymentQuery,
        sorting: Sorting,
        paging: Paging,
    ) -> ServiceResult<Page<PaymentRecord>> {
        let snapshot = self.db.read_snapshot().await?;
        let (total, list) =
            payments::page(&snapshot, q, sorting, paging.page, paging.limit).await?;
        let records = Self::records(&snapshot, list).await?;
        snapshot.end().await?;
        Ok(Page::new(total, paging, records))
    }
}
