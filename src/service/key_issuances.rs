//! A billing-key issuance is recorded before KCP is called (migration 000033), as every KCP call
//! with an effect is: KCP has no inquiry for an issuance (spec/kcp.md §2.5), so a key it issued
//! whose answer was lost, or whose request died before storing it, would otherwise be known to
//! nobody here, chargeable at KCP under a key no customer holds.
//!
//! The request that asks ([`Gateway::issue_key`]) writes the row `pending` and commits it before
//! the call, then closes it: `issued` in the transaction that stores the key (as the customer's,
//! or as a key-in charge's pending card), `refused` or `not_sent` when KCP issued nothing,
//! `discarded` when an issued key could not be stored and was recorded for its deletion at KCP
//! (service/retired_keys.rs) in the same transaction, or deleted there. A lost answer leaves it
//! `unknown`, a request that died leaves it `pending`: both stay open. Nothing settles them by
//! itself (there is nothing to inquire): they are listed for an operator (`openport attempt list
//! --issuances`, counted by `GET /admin/status`), who looks the order number up in KCP's admin,
//! deletes a key found there, and marks the issuance reconciled ([`Gateway::reconcile_issuance`]).
//!
//! A write that closes a row is best effort where the answer to the merchant does not depend on
//! it (a refusal, nothing sent): when it fails, the row stays open and an operator finds nothing
//! under its order number, which is the safe side.
use super::{Gateway, ServiceError, ServiceResult};
use crate::store::entity::merchant;
use crate::store::key_issuances;

/// What asked for a billing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceKind {
    /// `POST /subscribe/customers/{customer_uid}`.
    Customer,
    /// `POST /subscribe/payments/schedule` with card data, for a customer_uid without a key.
    Schedule,
    /// `POST /subscribe/payments/onetime` with a customer_uid: the key-in charge keeps its card.
    Onetime,
}

impl IssuanceKind {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Schedule => "schedule",
            Self::Onetime => "onetime",
        }
    }
}

/// How an issuance ended, when the request knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuanceEnd {
    /// KCP refused it: no key.
    Refused,
    /// Not sent to KCP (unreachable, the merchant's KCP configuration unusable): no key.
    NotSent,
    /// Its answer was lost: KCP may hold a key. Stays open.
    Unknown,
    /// The key KCP issued could not be stored, and is recorded for its deletion at KCP or was
    /// deleted there.
    Discarded,
}

impl IssuanceEnd {
    fn as_db(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::NotSent => "not_sent",
            Self::Unknown => "unknown",
            Self::Discarded => "discarded",
        }
    }
}

/// An open issuance as an operator sees it (`openport attempt list --issuances`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpenIssuance {
    pub id: i64,
    /// `customer`, `schedule` or `onetime` ([`IssuanceKind`]).
    pub kind: String,
    /// `pending` (its request is still waiting on KCP, or died), `unknown` (its answer was lost).
    pub state: String,
    /// The merchant's imp_code and the KCP site whose admin holds the key, if KCP issued one.
    pub imp_code: String,
    pub site_cd: String,
    pub customer_uid: String,
    /// The order number KCP was asked under (`ordr_idxx`): what to search KCP's admin for.
    pub order_no: String,
    pub created_at: i64,
    pub note: Option<String>,
}

impl Gateway {
    /// Records an issuance of `kind` for `customer_uid` of merchant `m` under `order_no`, committed
    /// before KCP is called: its id. Nothing is asked of KCP when this fails.
    pub(crate) async fn record_issuance(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
        kind: IssuanceKind,
        order_no: &str,
    ) -> ServiceResult<i64> {
        let now = self.clock.unix();
        let row = key_issuances::insert(
            &self.db.write,
            m.id,
            customer_uid,
            kind.as_db(),
            order_no,
            now,
        )
        .await?;
        Ok(row.id)
    }

    /// Records how open issuance `id` ended, `note` saying why; best effort (module docs): a
    /// failed write is logged and the row stays open.
    pub(crate) async fn end_issuance(&self, id: i64, end: IssuanceEnd, note: &str) {
        let now = self.clock.unix();
        match key_issuances::record(&self.db.write, id, end.as_db(), Some(note), now).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                issuance_id = id,
                state = end.as_db(),
                "billing-key issuance found closed already; left as it is"
            ),
            Err(e) => tracing::warn!(
                issuance_id = id,
                state = end.as_db(),
                "cannot record a billing-key issuance's outcome, left open: {e}"
            ),
        }
    }

    /// Open issuances, oldest first: the ones whose key, if KCP issued it, nothing here holds.
    pub async fn open_key_issuances(&self, limit: u64) -> ServiceResult<Vec<OpenIssuance>> {
        let rows = key_issuances::open(&self.db.read, limit).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let m = self.merchant(r.merchant_id).await.map_err(|_| {
                ServiceError::Internal(format!("issuance {}: merchant unreadable", r.id))
            })?;
            out.push(OpenIssuance {
                id: r.id,
                kind: r.kind,
                state: r.state,
                imp_code: m.imp_code.clone(),
                site_cd: m.site_cd.clone(),
                customer_uid: r.customer_uid,
                order_no: r.order_no,
                created_at: r.created_at,
                note: r.note,
            });
        }
        Ok(out)
    }

    /// An operator looked the open issuance asked under `order_no` up in KCP's admin and deleted a
    /// key found there (an open issuance never names a key stored here: its close commits with
    /// the key): it is closed as `reconciled` with `note`. Refused for an order number no open issuance has, and before the settle
    /// delay (its request may still be waiting on KCP, which could issue the key after the look).
    /// A registration (`customer`, `schedule`) that stalled past the delay and gets its key
    /// afterwards finds the issuance closed and stores nothing: the key is deleted at KCP, as
    /// the operator's word has it (`Gateway::register_customer`).
    pub async fn reconcile_issuance(&self, order_no: &str, note: &str) -> ServiceResult<()> {
        if note.trim().is_empty() {
            return Err(ServiceError::BadRequest(
                "--note must say what was found".into(),
            ));
        }
        let Some(open) = key_issuances::open_by_order_no(&self.db.write, order_no).await? else {
            return Err(ServiceError::NotFound(format!(
                "no open billing-key issuance has order number {order_no} (see `openport attempt list --issuances`)"
            )));
        };
        let now = self.clock.unix();
        // From the row's creation: an issuance is one call, sent right after the row commits
        // (`Gateway::issue_key`), never again under it, so `created_at` is when it was sent.
        if now < open.created_at + self.settings.settle_secs {
            return Err(ServiceError::Refused(format!(
                "billing-key issuance {order_no} is younger than the settle delay ({} s): its request may still be waiting on KCP, try again later",
                self.settings.settle_secs
            )));
        }
        let note = format!("reconciled by operator: {note}");
        if !key_issuances::record(&self.db.write, open.id, "reconciled", Some(&note), now).await? {
            return Err(ServiceError::Refused(format!(
                "billing-key issuance {order_no} was settled otherwise meanwhile"
            )));
        }
        tracing::warn!(issuance_id = open.id, %order_no, "operator reconciled a billing-key issuance");
        Ok(())
    }
}
