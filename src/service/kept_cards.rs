//! The card of a key-in charge kept as the customer's billing key (`POST /subscribe/payments/
//! onetime` with `customer_uid`, spec/iamport-v1.md §4.4).
//!
//! iamport stores the key only once the first payment succeeds (seed 004: "빌링키 발급과 최초
//! 결제가 성공하면 빌링키는 전달된 `customer_uid` 와 1:1 매칭되어 아임포트에 저장됩니다"): a
//! declined charge must leave the customer's card as it was. The key is still issued before the
//! charge, so that a card KCP will not keep is refused before anything is charged; it is recorded
//! at once as `pending`, naming the payment (`store::billing::insert_pending_key`), so that it can
//! be deleted at KCP whatever happens next, and then:
//!
//! - the payment recorded paid (by the request, or by the resolver after a lost answer): the key
//!   becomes the customer's and the key it replaces is retired and deleted at KCP
//!   ([`Gateway::adopt_kept_card`]). The adoption is its own transaction after the paid record,
//!   which it must never put at risk; until it is done the pending row says what is left, and the
//!   resolver's pass over retired keys finishes it.
//! - the payment failed (declined, net-cancelled, never sent): the key is retired and deleted at
//!   KCP as a replaced key is (service/retired_keys.rs).
//! - the payment still open (an answer lost): both wait, the deletion deferred while it is.
//!
//! A customer_uid registered after the card was issued (a key stored later than it) keeps that
//! later registration: the kept card is dropped then, whatever its payment became. A customer
//! deleted after the card was recorded stays deleted: the delete drops the customer's pending
//! keys in its own transaction (`Gateway::delete_customer`). The adoption writes only rows as it
//! read them (the pending row while still pending, the current key while still active), so on
//! PostgreSQL a delete committing between its reads and its writes makes it read again and find
//! the card dropped; an adoption that committed first made the card the customer's key, which the
//! delete then retires. A card recorded after the delete's drop (its pending row not seen by it)
//! is a new registration, as one taken after the delete answered.
use sea_orm::Set;

use super::billing::{keep_unset_details, CustomerCommand};
use super::key_issuances::IssuanceKind;
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::payment::PaymentStatus;
use crate::store::billing::{self, Retirement};
use crate::store::entity::{billing_key, merchant, payment};
use crate::store::{is_unique_violation, key_issuances, payments};

/// What became of a pending key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeptCard {
    /// The customer's key now; the key it replaced (if any), retired, is to be deleted at KCP.
    Adopted { replaced: Option<i64> },
    /// Its payment is still open: nothing decided.
    Waiting,
    /// Retired, to be deleted at KCP: its payment was not paid, or the customer_uid was
    /// registered again after this card was issued.
    Dropped,
    /// Not pending any more: someone else adopted or dropped it meanwhile.
    Settled,
}

/// How often an adoption is tried again when registrations of the same customer_uid race it.
const ADOPT_TRIES: usize = 3;

/// Whether `p` is a key-in charge that kept its card (`onetime` with `customer_uid`): one with a
/// customer_uid whose usage is not a charge on a key (`payment`, `payment.scheduled`) or the
/// billing-key window's `issue`. Only these have a pending key to look for.
fn keeps_its_card(p: &payment::Model) -> bool {
    p.customer_uid.is_some() && p.customer_uid_usage.is_none()
}

impl Gateway {
    /// Issues a batch key for the card of key-in charge `payment` and records it as pending
    /// (module docs). A key KCP refuses is the refusal; a key that cannot be recorded is
    /// deleted at KCP (`discard_key`) and the charge is refused, so that no key is left at
    /// KCP that nothing here knows of.
    pub(super) async fn issue_kept_card(
        &self,
        m: &merchant::Model,
        customer: &CustomerCommand,
        payment: &payment::Model,
    ) -> ServiceResult<billing_key::Model> {
        let issued = self.issue_key(m, customer, IssuanceKind::Onetime).await?;
        let now = self.clock.unix();
        // The key and the close of its issuance, together or neither. Found closed already, the
        // issuance was an operator's word (`reconciled`, accepted once the settle delay passed
        // while this request stalled with KCP's key in hand): they were told to delete the key
        // found under its order number at KCP, so it is not kept (a key KCP deleted, adopted
        // once the charge is paid) but discarded, and the charge, not sent yet, is refused.
        let recorded = async {
            let txn = self.db.write.begin().await?;
            // Not due for the resolver's deletion pass before this request's hold on the
            // charge has run out: by then it has recorded the charge's outcome and settled the
            // key, or lost the charge to the resolver (store::billing::insert_pending_key).
            let due_at = self.lease_from(now);
            let key =
                billing::insert_pending_key(&txn, issued.row.clone(), payment.id, due_at).await?;
            if !key_issuances::record(&txn, issued.issuance.id, "issued", None, now).await? {
                txn.rollback().await?;
                return Ok(None);
            }
            txn.commit().await?;
            Ok::<_, sea_orm::DbErr>(Some(key))
        }
        .await;
        match recorded {
            Ok(Some(key)) => Ok(key),
            Ok(None) => {
                tracing::warn!(imp_uid = %payment.imp_uid, issuance_id = issued.issuance.id, "an operator reconciled the billing-key issuance of this charge before its key was kept: the key is not kept but deleted at KCP, and the charge is not sent");
                self.discard_key(m, issued.row, Some(&issued.issuance), now)
                    .await;
                Err(ServiceError::Refused(
                    super::billing::RECONCILED_BEFORE_STORED.into(),
                ))
            }
            Err(e) => {
                // If the insert did land after all (its answer lost), its payment fails below and
                // the pending row's deletion meets "already deleted" (8303), which counts.
                tracing::error!(imp_uid = %payment.imp_uid, "cannot record the card's billing key: {e}");
                self.discard_key(m, issued.row, Some(&issued.issuance), now)
                    .await;
                Err(e.into())
            }
        }
    }

    /// After `paid` was recorded: makes the pending key of key-in charge `paid` the customer's
    /// (module docs), and tries the deletion of the key it replaced at once. Never fails the
    /// caller, whose payment is paid whatever happens here: what is left undone stays pending and
    /// the resolver's pass over retired keys finishes it.
    pub(crate) async fn adopt_kept_card(&self, paid: &payment::Model) {
        if !keeps_its_card(paid) {
            return;
        }
        let key = match billing::pending_key_of(&self.db.write, paid.id).await {
            Ok(Some(key)) => key,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(imp_uid = %paid.imp_uid, "kept card left to the resolver: {e}");
                return;
            }
        };
        match self.adopt_pending_key(&key).await {
            Ok(KeptCard::Adopted {
                replaced: Some(old),
            }) => self.delete_retired_key(old).await,
            Ok(KeptCard::Dropped) => self.delete_retired_key(key.id).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(imp_uid = %paid.imp_uid, "kept card left to the resolver: {e}")
            }
        }
    }

    /// Settles pending key `key` by its payment, for the deletion pass that claimed it
    /// (`try_key_deletion`): adopted once the payment was paid, dropped once it cannot be any
    /// more, left waiting while it is open. A payment once paid (even if cancelled since) kept
    /// its card, as it would have had the request adopted it.
    pub(super) async fn settle_kept_card(
        &self,
        key: &billing_key::Model,
    ) -> ServiceResult<KeptCard> {
        let payment = match key.payment_id {
            Some(id) => payments::by_id(&self.db.write, id).await?,
            None => None,
        };
        match payment {
            Some(p) if p.paid_at.is_some() => self.adopt_pending_key(key).await,
            Some(p) if PaymentStatus::from_db(&p.status) == PaymentStatus::Pending => {
                Ok(KeptCard::Waiting)
            }
            // Failed (final: a failed charge is never paid later), or gone.
            _ => {
                let now = self.clock.unix();
                Ok(
                    if billing::drop_pending_key(&self.db.write, key.id, now).await? {
                        KeptCard::Dropped
                    } else {
                        self.after_settled(key.id).await?
                    },
                )
            }
        }
    }

    /// Makes pending key `key`, whose payment is paid, the customer's: the customer's current key
    /// retired (`replaced`) and this one active in one transaction, taking the customer fields it
    /// leaves unset (a onetime has no `customer_id`, and its `buyer_*` are optional) and the
    /// registration time from the key it replaces, as a re-registration does. A current key stored
    /// after this card was issued (a higher id) is a later registration, which stands: this one is
    /// dropped.
    async fn adopt_pending_key(&self, key: &billing_key::Model) -> ServiceResult<KeptCard> {
        for _ in 0..ADOPT_TRIES {
            let now = self.clock.unix();
            let txn = self.db.write.begin().await?;
            if billing::pending_key(&txn, key.id).await?.is_none() {
                drop(txn);
                return self.after_settled(key.id).await;
            }
            let current = billing::active_key(&txn, key.merchant_id, &key.customer_uid).await?;
            let mut changes = billing_key::ActiveModel {
                customer_id: Set(key.customer_id.clone()),
                customer_name: Set(key.customer_name.clone()),
                customer_tel: Set(key.customer_tel.clone()),
                customer_email: Set(key.customer_email.clone()),
                customer_addr: Set(key.customer_addr.clone()),
                customer_postcode: Set(key.customer_postcode.clone()),
                ..Default::default()
            };
            if let Some(current) = &current {
                if current.id > key.id {
                    billing::drop_pending_key(&txn, key.id, now).await?;
                    txn.commit().await?;
                    tracing::info!(
                        key_id = key.id,
                        "a key-in charge's card was not kept: the customer registered another since"
                    );
                    return Ok(KeptCard::Dropped);
                }
                // Replaced meanwhile by a registration that read it first: try again.
                if !billing::retire_key(&txn, current.id, Retirement::Replaced, now).await? {
                    continue;
                }
                changes.inserted_at = Set(current.inserted_at);
                keep_unset_details(&mut changes, current);
            }
            match billing::activate_pending_key(&txn, key.id, changes, now).await {
                Ok(true) => {
                    txn.commit().await?;
                    return Ok(KeptCard::Adopted {
                        replaced: current.map(|c| c.id),
                    });
                }
                Ok(false) => {
                    drop(txn);
                    return self.after_settled(key.id).await;
                }
                // A registration stored a key meanwhile (PostgreSQL): read again.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Refused(
            "같은 customer_uid로 동시에 등록 중이어서 카드를 빌링키로 저장하지 못했습니다.".into(),
        ))
    }

    /// What key `id` became when it was found no longer pending: the customer's (someone adopted
    /// it), or retired (someone dropped it).
    async fn after_settled(&self, id: i64) -> ServiceResult<KeptCard> {
        Ok(match billing::key_by_id(&self.db.write, id).await? {
            Some(k) if k.status == "active" => KeptCard::Settled,
            _ => KeptCard::Dropped,
        })
    }
}
