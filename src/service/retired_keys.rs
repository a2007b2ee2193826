//! Deleting retired billing keys at KCP (`tx_type 10005010`, spec/kcp.md §2.6), durably.
//!
//! A key replaced by a re-registration is retired in the write that stores the new one, with its
//! deletion at KCP pending (`store::billing::Retirement::Replaced`); a key the merchant deleted is
//! retired the same way, before KCP is called (`Retirement::Deleted`, `Gateway::delete_customer`). The request then tries the
//! deletion once; a failure, or an answer that never arrives, leaves it pending, and the resolver
//! tries again with backoff ([`Gateway::retry_key_deletions`]) until KCP confirms it, or gives up
//! after [`KEY_DELETE_TRIES`] calls with an ERROR naming the key's row (`key_id`), for an operator to
//! delete the key in KCP's admin. Without this one failed call left the old card chargeable at
//! KCP under a key nobody would delete again. Each try is claimed with a lease, as webhook
//! deliveries are, so two instances do not call KCP for one key at once (a second delete would
//! only meet "already deleted", which counts as deleted).
//!
//! A key issued for a key-in charge's card (`pending`, service/kept_cards.rs) is in the same pass
//! once the request's hold on its charge has run out (the request settles it before that): it
//! waits while its payment is open, becomes the customer's once the payment is found paid, and is
//! deleted like a replaced key once it is found failed.
//!
//! The pass never calls KCP for a key that is a customer's active key, or may still become one:
//! the claim reads the key in the statement that claims it (`store::billing::claim_key_deletion`),
//! a pending key is deleted only once dropped (dropping and adopting it are both conditional on
//! the row being pending: only one of them happens), and the claim is looked at once more, under
//! its lease, right before KCP is called. An active
//! key met with a deletion pending (an earlier openport could leave one so, and delete it at KCP
//! under the customer) has its deletion ended with an ERROR instead.
use secrecy::{ExposeSecret, SecretString};

use super::kept_cards::KeptCard;
use super::{Gateway, ServiceError, ServiceResult};
use crate::pg::{DeclineReason, Pg, PgError};
use crate::store::entity::{billing_key, merchant};
use crate::store::{billing, payments};

/// Calls made to delete one retired key before giving up: with [`retry_backoff`], the last one
/// comes about 8.5 hours after the first, which outlasts an ordinary KCP outage.
pub const KEY_DELETE_TRIES: i32 = 10;

/// What KCP made of a deletion.
#[derive(Debug)]
pub(crate) enum KcpDeletion {
    /// KCP holds the key deleted: by this call, or by an earlier one whose answer was lost (KCP
    /// answers "already deleted", 8303), or KCP holds no such key at all (8302, see
    /// [`Gateway::delete_sealed_at_kcp`]).
    Deleted,
    /// KCP refused, with its message.
    Refused(String),
    /// No usable answer: KCP may or may not have deleted it.
    Unknown(String),
}

/// Seconds before the try after the `tries`-th: one minute, doubling to about four hours.
pub fn retry_backoff(tries: i32) -> i64 {
    60i64 << (tries - 1).clamp(0, 8)
}

impl Gateway {
    /// Asks KCP to delete `key`. The batch key is opened here, at the point of use, and never
    /// leaves this call.
    pub(crate) async fn delete_at_kcp(
        &self,
        connector: &dyn Pg,
        key: &billing_key::Model,
    ) -> ServiceResult<KcpDeletion> {
        self.delete_sealed_at_kcp(
            connector,
            &key.batch_key_sealed,
            &key.group_id,
            key.merchant_id,
            Some(key.id),
        )
        .await
    }

    /// [`Self::delete_at_kcp`] for a key known by its sealed form and group alone (one that was
    /// never stored has no `key_id`). Logs name the key by `merchant_id` and `key_id`, never the
    /// customer_uid: merchants choose it, often an email or a phone number (design.md §4).
    pub(crate) async fn delete_sealed_at_kcp(
        &self,
        connector: &dyn Pg,
        batch_key_sealed: &str,
        group_id: &str,
        merchant_id: i64,
        key_id: Option<i64>,
    ) -> ServiceResult<KcpDeletion> {
        let batch_key = SecretString::from(
            self.secrets
                .open_string(batch_key_sealed)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
        Ok(
            match connector
                .delete_batch_key(batch_key.expose_secret(), group_id)
                .await
            {
                Ok(()) => KcpDeletion::Deleted,
                Err(PgError::Declined {
                    reason: DeclineReason::BatchKeyDeleted,
                    ..
                }) => {
                    tracing::info!(merchant_id, key_id, "batch key was already deleted at KCP");
                    KcpDeletion::Deleted
                }
                // KCP issued this key in this group, to this site: "no such key" there means it
                // no longer exists, so nothing can be charged with it, which is all a deletion
                // is for. Taken as deleted; otherwise the customer could never be deleted (every
                // retry meets the same answer) and a replaced key would be retried for hours.
                // The sandbox forgets its keys when it restarts without a state file
                // (docs/sandbox.md §7). A WARN, since a merchant whose KCP site code changed
                // under its keys gets the same answer for keys its old site still holds.
                Err(PgError::Declined {
                    reason: DeclineReason::BatchKeyNotFound,
                    ..
                }) => {
                    tracing::warn!(
                        merchant_id,
                        key_id,
                        "KCP holds no such batch key (8302); recorded as deleted at KCP"
                    );
                    KcpDeletion::Deleted
                }
                Err(PgError::Declined { message, .. }) => KcpDeletion::Refused(message),
                Err(e) => KcpDeletion::Unknown(e.to_string()),
            },
        )
    }

    /// The first try at deleting a key this request has just replaced (`key_id`, retired as
    /// `replaced`). Whatever happens is recorded on the key, and what is left the resolver retries:
    /// nothing is answered to the merchant, whose new key is stored.
    pub(crate) async fn delete_replaced_key(&self, m: &merchant::Model, key_id: i64) {
        if let Err(e) = self.try_key_deletion(Some(m), key_id, i64::MAX).await {
            tracing::warn!(
                key_id,
                "retired billing key (replaced or deleted): deletion at KCP left to the resolver: {e}"
            );
        }
    }

    /// [`Self::delete_replaced_key`] for a key whose merchant is not at hand.
    pub(crate) async fn delete_retired_key(&self, key_id: i64) {
        if let Err(e) = self.try_key_deletion(None, key_id, i64::MAX).await {
            tracing::warn!(
                key_id,
                "retired billing key: deletion at KCP left to the resolver: {e}"
            );
        }
    }

    /// The resolver's pass over retired keys whose deletion at KCP is due: each is tried once by
    /// the instance that claims it. Returns how many were looked at.
    pub async fn retry_key_deletions(&self, limit: u64) -> ServiceResult<usize> {
        // Judged by a clock that is off, another instance's lease could look run out. Nothing
        // either while a newer openport owns the database (service/schema_check.rs).
        if self.clock_is_skewed() || self.is_outdated() {
            return Ok(0);
        }
        let now = self.clock.unix();
        let due =
            billing::due_key_deletions(&self.db.read, self.served_merchants(), now, limit).await?;
        for id in &due {
            if let Err(e) = self.try_key_deletion(None, *id, now).await {
                tracing::error!(key_id = id, "retired billing key deletion: {e}");
            }
        }
        Ok(due.len())
    }

    /// Claims the deletion of retired key `id`, if due by `due_by` (a request's own first try
    /// passes `i64::MAX`: the key it has just retired, or the card of its charge that failed,
    /// before the resolver's due time), and, if this instance won it, calls KCP and records the
    /// outcome: deleted (the sealed key erased), or another try after [`retry_backoff`], or,
    /// after [`KEY_DELETE_TRIES`] calls, none (logged as an ERROR for an operator). Every write
    /// after the claim is conditional on the claim's own lease.
    async fn try_key_deletion(
        &self,
        m: Option<&merchant::Model>,
        id: i64,
        due_by: i64,
    ) -> ServiceResult<()> {
        if self.clock_is_skewed() {
            return Ok(());
        }
        let now = self.clock.unix();
        let lease = self.lease_from(now);
        let Some(key) = billing::claim_key_deletion(&self.db.write, id, now, due_by, lease).await?
        else {
            return Ok(());
        };
        // A customer's active key is never deleted at KCP by this pass. Only an earlier openport
        // could leave one with a deletion pending (its claim read the row after an adoption
        // committed), and may have deleted it at KCP already.
        if key.status == "active" {
            billing::end_active_key_deletion(&self.db.write, id, Some(lease)).await?;
            tracing::error!(
                key_id = id,
                merchant_id = key.merchant_id,
                "a customer's active billing key had its deletion at KCP pending: not deleted, \
                 the deletion ended; an earlier openport may have deleted it at KCP already: if \
                 its charges are refused as deleted (8303), the customer must register the card \
                 again"
            );
            return Ok(());
        }
        let customer_uid = key.customer_uid.as_str();
        // A key issued for a key-in charge is deleted only once that charge is known not to
        // keep it (service/kept_cards.rs); one whose charge was paid becomes the customer's here.
        // An adoption committing after the claim (the request that recorded the charge paid) is
        // found by that too: the key is then no longer pending, and is left alone.
        let kept_card = key.status == billing::PENDING;
        if kept_card {
            match self.settle_kept_card(&key).await? {
                KeptCard::Waiting => {
                    let next = now + self.settings.lease_secs;
                    billing::defer_key_deletion(&self.db.write, id, lease, next).await?;
                    return Ok(());
                }
                KeptCard::Adopted { .. } | KeptCard::Settled => return Ok(()),
                KeptCard::Dropped => {}
            }
        }
        // A charge of this customer opened before the key was retired may be on its way to KCP
        // with it (a scheduled run, an `again`): deleted now, that charge would be refused and
        // announced failed although the customer has a valid key. The deletion waits for the
        // charge to settle (the key is retired here, so nothing new is charged with it). A charge
        // still being written when the key was retired is seen too: on PostgreSQL it holds the
        // key's row locked (`FOR SHARE`, store::payments::open_charge) until it commits, so the
        // retirement, and this check after it, come after it. A key the merchant deleted waits the
        // same way: a charge opened before the delete goes on. A kept card that was never the
        // customer's was never charged with.
        if !kept_card
            && payments::customer_charge_open(&self.db.write, key.merchant_id, customer_uid).await?
        {
            let next = now + self.settings.lease_secs;
            billing::defer_key_deletion(&self.db.write, id, lease, next).await?;
            tracing::info!(
                key_id = id,
                merchant_id = key.merchant_id,
                "retired billing key (replaced or deleted): deletion at KCP waits for a charge in flight"
            );
            return Ok(());
        }
        let outcome = if key.pg_delete_tries > KEY_DELETE_TRIES {
            // Claimed again after an instance died during the last try.
            KcpDeletion::Unknown("the last try did not record its outcome".into())
        } else {
            // Still this claim's, and still a retired key: nothing can make a retired key active
            // again, so what this finds holds through the call.
            if !billing::deletion_held(&self.db.write, id, lease).await? {
                return Ok(());
            }
            let loaded;
            let merchant = match m {
                Some(m) => m,
                None => {
                    loaded = self.merchant(key.merchant_id).await?;
                    loaded.as_ref()
                }
            };
            let connector = self.connectors.for_merchant(merchant, &self.secrets)?;
            self.delete_at_kcp(connector.as_ref(), &key).await?
        };
        let now = self.clock.unix();
        let why = match outcome {
            KcpDeletion::Deleted => {
                if !billing::key_deleted_at_pg(&self.db.write, id, now).await? {
                    self.deleted_unrecorded(id).await?;
                }
                return Ok(());
            }
            KcpDeletion::Refused(message) => format!("KCP refused: {message}"),
            KcpDeletion::Unknown(error) => error,
        };
        let tries = key.pg_delete_tries;
        if tries >= KEY_DELETE_TRIES {
            tracing::error!(
                key_id = id,
                merchant_id = key.merchant_id,
                tries,
                "gave up deleting a retired billing key at KCP; it may still be chargeable there: \
                 delete it in KCP's admin (docs/operations.md): {why}"
            );
            billing::key_deletion_failed(&self.db.write, id, lease, None).await?;
        } else {
            let next = now + retry_backoff(tries);
            tracing::warn!(
                key_id = id,
                merchant_id = key.merchant_id,
                tries,
                retry_at = next,
                "could not delete a retired billing key at KCP, will retry: {why}"
            );
            billing::key_deletion_failed(&self.db.write, id, lease, Some(next)).await?;
        }
        Ok(())
    }

    /// KCP holds key `id` deleted, but that could not be recorded on it: another holder recorded
    /// it already, or the key is a customer's active key, which this pass never asks KCP to
    /// delete (see the module docs). That customer's charges are refused (8303) until its card is
    /// registered again: an ERROR for the operator, and the key's deletion ended, not retried.
    async fn deleted_unrecorded(&self, id: i64) -> ServiceResult<()> {
        let Some(key) = billing::key_by_id(&self.db.write, id).await? else {
            return Ok(());
        };
        if key.status == "active" {
            billing::end_active_key_deletion(&self.db.write, id, None).await?;
            tracing::error!(
                key_id = id,
                merchant_id = key.merchant_id,
                "KCP has deleted a billing key that is a customer's active key: its charges are \
                 refused (8303) until the customer registers the card again"
            );
        }
        Ok(())
    }
}
