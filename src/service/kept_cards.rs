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
//!   which it must never put at risk, tried again as the paid record is (service/write_retry.rs):
//!   under a database failing for a moment (its backends killed) one failed try left the card
//!   unadopted for the rest of the attempt lease. Until it is done the pending row says what is
//!   left: the merchant was told `paid`, so the customer has the card by then, and what looks the
//!   customer's key up and finds none (`again`, a scheduled charge, a schedule request, `GET` and
//!   `DELETE /subscribe/customers/{uid}`) adopts it first ([`Gateway::adopt_paid_kept_cards`])
//!   instead of answering "등록되지 않은 구매자입니다" for up to a lease; the resolver's pass
//!   over retired keys finishes whatever nothing looked up. A lookup that only reads (`GET`)
//!   answers from what it found when that adoption fails (`Gateway::customer`): the card waits
//!   for the next lookup or the resolver, and the read is not failed by a write on the side.
//! - the payment failed (declined, net-cancelled, never sent): the key is retired and deleted at
//!   KCP as a replaced key is (service/retired_keys.rs).
//! - the payment still open (an answer lost): both wait, the deletion deferred while it is.
//!
//! A customer_uid registered after the card was issued (a key stored later than it) keeps that
//! later registration: the kept card is dropped then, whatever its payment became. A customer
//! deleted after the card was recorded stays deleted: the delete drops the customer's pending
//! keys in its own transaction (`Gateway::delete_customer`), also when the customer has no key
//! yet (the card of its first `onetime`), whose delete still answers "not found". The adoption writes only rows as it
//! read them (the pending row while still pending, the current key while still active), so on
//! PostgreSQL a delete committing between its reads and its writes makes it read again and find
//! the card dropped; an adoption that committed first made the card the customer's key, which the
//! delete then retires. A card recorded after the delete's drop (its pending row not seen by it)
//! is a new registration, as one taken after the delete answered.
use sea_orm::Set;

use super::billing::{keep_unset_details, CustomerCommand};
use super::key_issuances::IssuanceKind;
use super::write_retry::{retry_write, RECORD_TRIES};
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
    /// (module docs), tried up to [`RECORD_TRIES`] times a second apart, and tries the deletion
    /// of the key it replaced at once. Trying again is safe whatever a failed try did: a try
    /// whose commit landed left the key no longer pending, which the next one finds. Never fails
    /// the caller, whose payment is paid whatever happens here: what is left undone stays pending,
    /// for the customer's next lookup ([`Self::adopt_paid_kept_cards`]) or the resolver's pass
    /// over retired keys.
    pub(crate) async fn adopt_kept_card(&self, paid: &payment::Model) {
        if !keeps_its_card(paid) {
            return;
        }
        let ((), settled) = retry_write(
            (),
            |(), _| async move {
                let settled = match billing::pending_key_of(&self.db.write, paid.id).await {
                    Ok(Some(key)) => self
                        .adopt_pending_key(&key)
                        .await
                        .map(|settled| Some((key.id, settled))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(ServiceError::from(e)),
                };
                ((), settled)
            },
            |try_no, e| {
                tracing::warn!(imp_uid = %paid.imp_uid, try_no, "cannot make the kept card the customer's billing key, trying again: {e}")
            },
        )
        .await;
        match settled {
            Ok(Some((
                _,
                KeptCard::Adopted {
                    replaced: Some(old),
                },
            ))) => self.delete_retired_key(old).await,
            Ok(Some((id, KeptCard::Dropped))) => self.delete_retired_key(id).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(imp_uid = %paid.imp_uid, tries = RECORD_TRIES, "kept card left to the customer's next lookup or the resolver: {e}")
            }
        }
    }

    /// Makes the card a paid key-in charge kept for each of customers `customer_uids` its key
    /// now, for a lookup that found them without an active key (module docs): the newest such
    /// card of each ([`billing::paid_kept_cards`]), adopted by the conditional write the request
    /// and the resolver use ([`Self::adopt_pending_key`]), so that two lookups at once, or a
    /// lookup and the request's own retry, adopt it once, and a key stored for the customer_uid
    /// after the card was issued still stands (the card is dropped then). Never a card whose
    /// charge is open or failed: that one waits for its outcome, or goes. The caller then reads
    /// the customers' keys again, whatever this found: a card another caller adopted after the
    /// caller's first read is no longer pending here, but is the key. A key it retired or dropped
    /// is left to the resolver's deletion pass, due at once: a lookup does not wait for KCP.
    pub(crate) async fn adopt_paid_kept_cards(
        &self,
        merchant_id: i64,
        customer_uids: &[String],
    ) -> ServiceResult<()> {
        let cards = billing::paid_kept_cards(&self.db.write, merchant_id, customer_uids).await?;
        for key in &cards {
            let settled = self.adopt_pending_key(key).await?;
            tracing::info!(
                key_id = key.id,
                merchant_id,
                ?settled,
                "a paid key-in charge's card not adopted yet was settled by a lookup of its customer"
            );
        }
        Ok(())
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
