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
use super::write_retry::{retry_write, RECORD_TRIES};
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
    /// What an operator does with an issuance that ended so but stays open, recorded under
    /// `order_no` (docs/operations.md, "Unknown outcomes").
    fn operator_action(self, order_no: &str) -> String {
        let (found, note) = match self {
            Self::Refused | Self::NotSent => (
                "KCP issued no key under it",
                format!("{}: no key issued", self.as_db()),
            ),
            Self::Discarded => (
                "KCP deleted the key it issued under it",
                "discarded: KCP deleted the key".to_string(),
            ),
            Self::Unknown => {
                return format!(
                    "KCP may hold a key under it: look order number {order_no} up in KCP's admin, \
                     delete a key found there, then run `openport attempt reconciled --order-no \
                     {order_no} --note \"what was found\"`"
                )
            }
        };
        format!(
            "{found}, nothing to do at KCP: close it with `openport attempt reconciled --order-no \
             {order_no} --note \"{note}\"`"
        )
    }

    fn as_db(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::NotSent => "not_sent",
            Self::Unknown => "unknown",
            Self::Discarded => "discarded",
        }
    }
}

/// An issuance recorded open, as the request that asked KCP for its key holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issuance {
    pub id: i64,
    /// The order number KCP is asked under (`ordr_idxx`): what an operator looks the issuance up
    /// under in KCP's admin and closes it with (`openport attempt reconciled --order-no`).
    pub order_no: String,
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
    /// before KCP is called. Nothing is asked of KCP when this fails.
    pub(crate) async fn record_issuance(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
        kind: IssuanceKind,
        order_no: &str,
    ) -> ServiceResult<Issuance> {
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
        Ok(Issuance {
            id: row.id,
            order_no: row.order_no,
        })
    }

    /// Records how open `issuance` ended, `note` saying why; best effort (module docs), but tried
    /// again as an approval's record is (service/write_retry.rs): under a database failing for a
    /// moment (its backends killed, its pool exhausted) one failed write left issuances whose key
    /// KCP had already deleted `pending`, each an alarm for an operator to check by hand. When
    /// every try fails the row stays open and the WARN says what the operator does with it.
    pub(crate) async fn end_issuance(&self, issuance: &Issuance, end: IssuanceEnd, note: &str) {
        let id = issuance.id;
        let order_no = issuance.order_no.as_str();
        let ((), written) = retry_write(
            (),
            |(), _| async move {
                let now = self.clock.unix();
                let written =
                    key_issuances::record(&self.db.write, id, end.as_db(), Some(note), now).await;
                ((), written)
            },
            |try_no, e| {
                tracing::warn!(
                    issuance_id = id,
                    ordr_idxx = %order_no,
                    state = end.as_db(),
                    try_no,
                    "cannot record a billing-key issuance's outcome, trying again: {e}"
                )
            },
        )
        .await;
        match written {
            Ok(true) => {}
            // An operator's word, or an earlier try whose write landed though its answer was lost.
            Ok(false) => tracing::warn!(
                issuance_id = id,
                ordr_idxx = %order_no,
                state = end.as_db(),
                "billing-key issuance found closed already; left as it is"
            ),
            Err(e) => tracing::warn!(
                issuance_id = id,
                ordr_idxx = %order_no,
                state = end.as_db(),
                tries = RECORD_TRIES,
                "cannot record a billing-key issuance's outcome, left open: {e}; {}",
                end.operator_action(order_no)
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
