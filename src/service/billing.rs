//! Billing keys (`/subscribe/customers`) and charges on them (`/subscribe/payments/again`):
//! spec/iamport-v1.md §4.4–4.5, KCP §2.5–2.6.
use futures::future::{BoxFuture, FutureExt};
use sea_orm::Set;

use super::key_issuances::{Issuance, IssuanceEnd, IssuanceKind};
use super::pay::{ApprovalOutcome, ChargeCall, ChargeOrder};
use super::retired_keys::KcpDeletion;
use super::{Gateway, PaymentRecord, ServiceError, ServiceResult};
use crate::domain::card::{iamport_card_code, CardAuth, CardNumber, Expiry};
use crate::domain::ids::random_hex;
use crate::pg::{quoted_refusal, BatchKeyRequest, BatchPaymentRequest, DeclineReason, PgError};
use crate::store::billing::{self, Retirement};
use crate::store::entity::{billing_key, merchant};
use crate::store::{is_unique_violation, key_issuances};

/// Card data and customer fields of `POST /subscribe/customers/{customer_uid}`.
#[derive(Debug, Clone)]
pub struct CustomerCommand {
    pub customer_uid: String,
    pub card_number: CardNumber,
    pub expiry: Expiry,
    pub auth: Option<CardAuth>,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_tel: Option<String>,
    pub customer_email: Option<String>,
    pub customer_addr: Option<String>,
    pub customer_postcode: Option<String>,
}

/// `POST /subscribe/payments/again` (and a schedule's run).
#[derive(Debug, Clone)]
pub struct AgainCommand {
    pub customer_uid: String,
    pub order: ChargeOrder,
}

/// A key KCP just issued, not stored yet.
#[derive(Debug, Clone)]
pub(super) struct IssuedKey {
    /// The row that records it (sealed, as `active`), written by the caller.
    pub row: billing_key::ActiveModel,
    /// The issuance recorded before KCP was called (service/key_issuances.rs): closed as
    /// `issued` in the transaction that stores the key, or `discarded` with its deletion.
    pub issuance: Issuance,
}

/// Why a key KCP just issued is not known to be stored as a customer's.
#[derive(Debug)]
pub(super) enum KeyNotStored {
    /// Nothing was committed: the key is nobody's, so it is discarded
    /// ([`Gateway::discard_issued_key`]) and the merchant told it was not registered.
    Certainly(ServiceError),
    /// The `COMMIT` that stored it failed and the database could not be asked whether it took
    /// effect: the key is neither deleted at KCP (it may be the customer's now) nor reported as
    /// stored, and an ERROR names the customer_uid for an operator.
    Unknown(ServiceError),
}

/// A failure before the `COMMIT`: the transaction is rolled back, nothing stored.
impl From<sea_orm::DbErr> for KeyNotStored {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Certainly(e.into())
    }
}

/// What [`Gateway::store_issued_key`] did with a key KCP issued.
pub(super) enum Storing<R> {
    /// Stored as the customer's, replacing `replaced` (to be deleted at KCP).
    Stored {
        stored: Box<billing_key::Model>,
        replaced: Option<Box<billing_key::Model>>,
    },
    /// Refused by the caller's part of the transaction, and nothing written.
    Refused(R),
}

/// How often a new key is stored again when registrations of the same customer_uid keep
/// changing its key under it ([`Gateway::store_issued_key`]).
const STORE_TRIES: usize = 3;

/// The refusal once they did: the new key is not registered (and deleted at KCP).
const RE_REGISTERED_DURING_STORE: &str =
    "같은 customer_uid로 동시에 등록 중입니다. 다시 시도해 주세요.";

/// An issuance found closed when its key was about to be stored ([`Gateway::register_customer`]):
/// an operator reconciled it meanwhile, their word that its key is deleted at KCP or to be.
struct IssuanceClosed;

/// The refusal then: the key is not registered (and deleted at KCP).
pub(super) const RECONCILED_BEFORE_STORED: &str =
    "빌링키 발급 응답이 지연되는 동안 해당 발급 건이 정리되어 빌링키를 등록하지 않았습니다. 다시 시도해 주세요.";

/// The note of an issuance whose key could not be stored ([`Gateway::discard_key`]).
const DISCARDED: &str =
    "not stored; recorded for its deletion at KCP (billing_keys, status replaced)";

/// How often a delete reads the customer's key again when re-registrations keep replacing it
/// under it.
const DELETE_TRIES: usize = 3;

/// The refusal once they did: the customer is not deleted.
const RE_REGISTERED_DURING_DELETE: &str =
    "같은 customer_uid로 동시에 등록 중이어서 빌링키를 삭제하지 못했습니다. 다시 시도해 주세요.";

/// A live merchant's billing key asked for before its KCP batch group id is set
/// ([`Gateway::group_id`]): the operator's command is named.
pub(super) const GROUP_ID_MISSING: &str =
    "KCP 배치키 그룹아이디가 설정되지 않았습니다 (openport merchant set-group-id).";

/// KCP's refusal of a batch key's issuance. A refusal of the card (its data, or the issuer's
/// decline) is iamport's `code -1` "카드정보 인증에 실패하였습니다."; any other (the group id,
/// 8301; a system or request error) says nothing about the card, and telling the merchant to
/// check the buyer's card data would send them looking in the wrong place: it is `code 1` with
/// KCP's code and message, as a key-in charge answers only a card refusal with -1
/// (`Gateway::pay_onetime`).
fn issuance_refused(code: &str, message: &str, reason: DeclineReason) -> ServiceError {
    let refusal = quoted_refusal(code, message);
    match reason {
        DeclineReason::CardRejected | DeclineReason::CardDeclined => {
            ServiceError::CardRejected(format!("카드정보 인증에 실패하였습니다. {refusal}"))
        }
        _ => ServiceError::Refused(format!("빌링키 발급에 실패하였습니다. {refusal}")),
    }
}

pub fn customer_not_found(uid: &str) -> ServiceError {
    ServiceError::Refused(format!(
        "요청하신 customer_uid({uid})로 등록된 정보를 찾을 수 없습니다."
    ))
}

/// The customer fields a new key leaves unset, taken from the key it replaces.
pub(super) fn keep_unset_details(row: &mut billing_key::ActiveModel, old: &billing_key::Model) {
    let keep = |field: &mut sea_orm::ActiveValue<Option<String>>, registered: &Option<String>| {
        if matches!(field, sea_orm::ActiveValue::Set(None)) {
            *field = Set(registered.clone());
        }
    };
    keep(&mut row.customer_id, &old.customer_id);
    keep(&mut row.customer_name, &old.customer_name);
    keep(&mut row.customer_tel, &old.customer_tel);
    keep(&mut row.customer_email, &old.customer_email);
    keep(&mut row.customer_addr, &old.customer_addr);
    keep(&mut row.customer_postcode, &old.customer_postcode);
}

impl Gateway {
    /// The group a new batch key of merchant `m` is issued under (`group_id`, spec/kcp.md §2.5;
    /// stored with the key, it is the `bt_group_id` of its charges and the `group_id` of its
    /// deletion, §2.6). KCP assigns each merchant its group with the batch contract (test site
    /// `A52Q7`: `A52Q71000489`, §1), so it is the merchant's configured one. Without one, an
    /// instance in test mode uses the sandbox's `{site_cd}1000001`: it is the instance, not the
    /// merchant, that decides which KCP is called, and in test mode that is never KCP's
    /// production (a live merchant's issuance is refused there, `Connectors::for_merchant`).
    /// Outside test mode the issuance is refused before KCP is called: a made-up group is one the
    /// merchant does not have at KCP.
    pub(super) fn group_id(&self, m: &merchant::Model) -> ServiceResult<String> {
        match &m.kcp_group_id {
            Some(group_id) => Ok(group_id.clone()),
            None if self.settings.test_mode => Ok(format!("{}1000001", m.site_cd)),
            None => Err(ServiceError::Refused(GROUP_ID_MISSING.into())),
        }
    }

    /// Issues a KCP batch key for the card and makes it the customer_uid's key; a previous key is
    /// replaced, and deleted at KCP once the new one is stored (service/retired_keys.rs: retried
    /// by the resolver until KCP confirms it).
    pub async fn register_customer(
        &self,
        m: &merchant::Model,
        cmd: CustomerCommand,
    ) -> ServiceResult<billing_key::Model> {
        self.register_customer_as(m, cmd, IssuanceKind::Customer)
            .await
    }

    /// [`Self::register_customer`], its issuance recorded as asked for by `kind`.
    pub(super) async fn register_customer_as(
        &self,
        m: &merchant::Model,
        cmd: CustomerCommand,
        kind: IssuanceKind,
    ) -> ServiceResult<billing_key::Model> {
        let issued = self.issue_key(m, &cmd, kind).await?;
        let now = self.clock.unix();
        let issuance = issued.issuance.id;
        let (stored, old) = match self
            .store_issued_key(
                m.id,
                &cmd.customer_uid,
                issued.row.clone(),
                now,
                move |txn, _| {
                    // Closed with the key: both commit, or neither. Found closed already, it was
                    // an operator's word (`reconciled`, accepted once the settle delay passed
                    // while this request stalled): they were told to delete the key found at KCP
                    // under its order number, so it is not stored (a key KCP deleted, every
                    // charge on it refused) but discarded below, as a key that could not be stored.
                    async move {
                        let closed =
                            !key_issuances::record(txn, issuance, "issued", None, now).await?;
                        Ok(closed.then_some(IssuanceClosed))
                    }
                    .boxed()
                },
            )
            .await
        {
            Ok(Storing::Stored { stored, replaced }) => (*stored, replaced),
            Ok(Storing::Refused(IssuanceClosed)) => {
                tracing::warn!(
                    issuance_id = issuance,
                    "an operator reconciled this billing-key issuance before its key was stored: \
                     the key is not stored but deleted at KCP"
                );
                self.discard_key(m, issued.row, Some(&issued.issuance), now)
                    .await;
                return Err(ServiceError::Refused(RECONCILED_BEFORE_STORED.into()));
            }
            Err(KeyNotStored::Certainly(e)) => {
                self.discard_key(m, issued.row, Some(&issued.issuance), now)
                    .await;
                return Err(e);
            }
            Err(KeyNotStored::Unknown(e)) => {
                // The key was stored with its issuance closed, or neither: this write, conditional
                // on the issuance being open, changes only one whose key is not stored.
                self.end_issuance(
                    &issued.issuance,
                    IssuanceEnd::Unknown,
                    "the COMMIT storing the issued key failed, so it is not stored here (it would \
                     have closed this issuance): delete it in KCP's admin",
                )
                .await;
                return Err(e);
            }
        };
        if let Some(old) = old {
            self.delete_replaced_key(m, old.id).await;
        }
        Ok(stored)
    }

    /// Asks KCP for a batch key of the card, the issuance recorded first and committed (as `kind`,
    /// service/key_issuances.rs): KCP has no inquiry for an issuance, so that row is all that
    /// tells an operator a key may exist at KCP when the answer is lost or this process dies
    /// before the key is stored. A refusal, or nothing sent, closes it here; a lost answer leaves
    /// it open (`unknown`); an issued key returns it open, for the caller to close with the key.
    pub(super) async fn issue_key(
        &self,
        m: &merchant::Model,
        cmd: &CustomerCommand,
        kind: IssuanceKind,
    ) -> ServiceResult<IssuedKey> {
        let group_id = self.group_id(m)?;
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let req = BatchKeyRequest {
            order_no: format!("BK{}", random_hex(8)),
            group_id: group_id.clone(),
            card: super::pay::card_secret(&cmd.card_number, cmd.expiry, cmd.auth.as_ref()),
            buyer_name: crate::domain::text::for_kcp(
                "customer_name",
                cmd.customer_name.as_deref().unwrap_or(""),
                30,
            )
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?,
        };
        let issuance = self
            .record_issuance(m, &cmd.customer_uid, kind, &req.order_no)
            .await?;
        let key = match connector.issue_batch_key(&req).await {
            Ok(k) => k,
            Err(PgError::Declined {
                code,
                message,
                reason,
            }) => {
                let refusal = quoted_refusal(&code, &message);
                self.end_issuance(&issuance, IssuanceEnd::Refused, &refusal)
                    .await;
                return Err(issuance_refused(&code, &message, reason));
            }
            Err(e) => {
                if matches!(e, PgError::NotSent(_) | PgError::Config(_)) {
                    tracing::warn!(merchant_id = m.id, ordr_idxx = %req.order_no, "batch key issuance not sent: {e}");
                    self.end_issuance(&issuance, IssuanceEnd::NotSent, &e.to_string())
                        .await;
                } else {
                    // KCP has no inquiry for an issuance: a key it issued here is unknown to
                    // openport, which can neither store nor delete it; only the order number
                    // finds it in KCP's admin. The issuance stays open, listed for an operator
                    // (docs/operations.md, "Unknown outcomes").
                    tracing::error!(
                        merchant_id = m.id,
                        ordr_idxx = %req.order_no,
                        issuance_id = issuance.id,
                        error = %e,
                        "billing key issuance outcome unknown: KCP may have issued a billing key; \
                         look it up in KCP's admin by this order number (ordr_idxx) and delete it \
                         (openport attempt list --issuances)"
                    );
                    self.end_issuance(&issuance, IssuanceEnd::Unknown, &e.to_string())
                        .await;
                }
                return Err(ServiceError::Refused(
                    "PG사 응답을 확인하지 못해 빌링키를 발급하지 못했습니다. 다시 시도해 주세요."
                        .into(),
                ));
            }
        };
        let now = self.clock.unix();
        let row = billing_key::ActiveModel {
            merchant_id: Set(m.id),
            customer_uid: Set(cmd.customer_uid.clone()),
            status: Set("active".into()),
            batch_key_sealed: Set(self.secrets.seal(key.batch_key.as_bytes())),
            group_id: Set(group_id.clone()),
            pg_id: Set(m.site_cd.clone()),
            card_code: Set(iamport_card_code(&key.issuer_code).map(str::to_string)),
            card_name: Set(Some(key.issuer_name.clone())),
            card_number: Set(Some(key.masked_card_number.clone())),
            card_type: Set(Some(i32::from(key.is_check_card))),
            customer_id: Set(cmd.customer_id.clone()),
            customer_name: Set(cmd.customer_name.clone()),
            customer_tel: Set(cmd.customer_tel.clone()),
            customer_email: Set(cmd.customer_email.clone()),
            customer_addr: Set(cmd.customer_addr.clone()),
            customer_postcode: Set(cmd.customer_postcode.clone()),
            // The instance's mode decides which KCP approves (the sandbox in test mode), not the
            // merchant's flag (`Connectors::for_merchant` keeps the two in line).
            sandbox: Set(self.settings.test_mode),
            inserted_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            ..Default::default()
        };
        Ok(IssuedKey { row, issuance })
    }

    /// Stores `row`, a key KCP just issued, as customer `customer_uid`'s, retiring the key it
    /// replaces (whose registration time it keeps: the customer was registered then, only
    /// `updated` moves, spec §4.5), in one transaction with what `alongside` writes. Both ways a
    /// key is issued store it here: `POST /subscribe/customers` (its issuance closed alongside,
    /// service/key_issuances.rs) and the billing-key window (its attempt and its `issue` payment,
    /// `Gateway::store_window_key`).
    /// `alongside` runs first in each try, given the active key about to be replaced; `Some`
    /// refuses the key, and nothing is written.
    ///
    /// Another registration of the customer_uid (REST or a window, here or on another instance)
    /// may commit between this transaction's read of the active key and its writes: the key read
    /// is then no longer active when retired (on PostgreSQL the retirement waits for the other
    /// transaction, then finds the row replaced), or the key it inserted makes the one-active-key
    /// index refuse this one. Either way this transaction is rolled back and tried again, reading
    /// the key the customer has now and asking `alongside` again (a window may replace only a key
    /// its merchant let it): told as a storage failure, it would have deleted a good key at KCP
    /// and failed the buyer's window over timing alone.
    pub(super) async fn store_issued_key<R, F>(
        &self,
        merchant_id: i64,
        customer_uid: &str,
        row: billing_key::ActiveModel,
        now: i64,
        mut alongside: F,
    ) -> Result<Storing<R>, KeyNotStored>
    where
        F: for<'t> FnMut(
            &'t crate::store::WriteTransaction,
            Option<&'t billing_key::Model>,
        ) -> BoxFuture<'t, Result<Option<R>, sea_orm::DbErr>>,
    {
        for _ in 0..STORE_TRIES {
            let txn = self.db.write.begin().await?;
            let old = billing::active_key(&txn, merchant_id, customer_uid).await?;
            if let Some(refusal) = alongside(&txn, old.as_ref()).await? {
                txn.rollback().await?;
                return Ok(Storing::Refused(refusal));
            }
            let mut row = row.clone();
            if let Some(o) = &old {
                if !billing::retire_key(&txn, o.id, Retirement::Replaced, now).await? {
                    txn.rollback().await?;
                    continue;
                }
                row.inserted_at = Set(o.inserted_at);
            }
            match billing::insert_key(&txn, row).await {
                Ok(stored) => {
                    self.commit_storing(txn, &stored).await?;
                    return Ok(Storing::Stored {
                        stored: Box::new(stored),
                        replaced: old.map(Box::new),
                    });
                }
                Err(e) if is_unique_violation(&e) => {
                    txn.rollback().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(KeyNotStored::Certainly(ServiceError::Refused(
            RE_REGISTERED_DURING_STORE.into(),
        )))
    }

    /// Commits `txn`, which inserted the issued key `stored`. A failed `COMMIT` may have taken
    /// effect all the same (its answer lost with the connection, or an I/O error after the
    /// commit record was written): the key is read back before anyone deletes it at KCP as
    /// nobody's, which would leave the customer with a key KCP no longer charges.
    pub(super) async fn commit_storing(
        &self,
        txn: crate::store::WriteTransaction,
        stored: &billing_key::Model,
    ) -> Result<(), KeyNotStored> {
        let Err(failed) = txn.commit().await else {
            return Ok(());
        };
        match billing::key_stored(&self.db.write, stored).await {
            Ok(true) => {
                tracing::warn!(
                    key_id = stored.id,
                    merchant_id = stored.merchant_id,
                    "a billing key's COMMIT failed ({failed}) but the key is stored"
                );
                Ok(())
            }
            Ok(false) => Err(KeyNotStored::Certainly(failed.into())),
            Err(read) => {
                tracing::error!(
                    key_id = stored.id,
                    merchant_id = stored.merchant_id,
                    "a billing key's COMMIT failed ({failed}) and whether it took effect cannot be \
                     read ({read}): if the customer has no key with this card, delete it in KCP's admin"
                );
                Err(KeyNotStored::Unknown(failed.into()))
            }
        }
    }

    /// A key KCP issued that could not be stored as the customer's (registrations of the same
    /// customer_uid kept racing it, the database failed, or a billing-key window that another
    /// holder settled or whose customer_uid got a key the merchant did not let it replace): the
    /// merchant is told it was not registered, so KCP must not keep it chargeable under a key
    /// nobody holds. It is recorded as retired, its deletion at KCP tried now and retried by the
    /// resolver (service/retired_keys.rs); when even that write fails, KCP is asked once now and
    /// a failure is logged as an ERROR for an operator (the merchant and issuance, never the key).
    pub(super) async fn discard_issued_key(
        &self,
        m: &merchant::Model,
        row: billing_key::ActiveModel,
        now: i64,
    ) {
        self.discard_key(m, row, None, now).await;
    }

    /// [`Self::discard_issued_key`] of a key whose `issuance` was recorded (service/key_issuances.rs):
    /// closed as `discarded` in the transaction that records the key for its deletion at KCP, or
    /// once KCP deleted it; left open (`unknown`) when neither could be done, for an operator.
    pub(super) async fn discard_key(
        &self,
        m: &merchant::Model,
        row: billing_key::ActiveModel,
        issuance: Option<&Issuance>,
        now: i64,
    ) {
        let recorded = async {
            let txn = self.db.write.begin().await?;
            let retired = billing::insert_retired_key(&txn, row.clone(), now).await?;
            if let Some(issuance) = issuance {
                key_issuances::record(&txn, issuance.id, "discarded", Some(DISCARDED), now).await?;
            }
            txn.commit().await?;
            Ok::<_, sea_orm::DbErr>(retired)
        }
        .await;
        match recorded {
            Ok(retired) => {
                tracing::warn!(
                    key_id = retired.id,
                    merchant_id = m.id,
                    "an issued batch key could not be stored; it is being deleted at KCP"
                );
                self.delete_replaced_key(m, retired.id).await;
            }
            Err(e) => {
                let deleted = async {
                    let connector = self.connectors.for_merchant(m, &self.secrets)?;
                    let (Some(sealed), Some(group_id)) =
                        (row.batch_key_sealed.try_as_ref(), row.group_id.try_as_ref())
                    else {
                        return Err(ServiceError::Internal("unstored batch key: no key".into()));
                    };
                    self.delete_sealed_at_kcp(connector.as_ref(), sealed, group_id, m.id, None)
                        .await
                }
                .await;
                let end = match deleted {
                    Ok(KcpDeletion::Deleted) => {
                        tracing::warn!(
                            merchant_id = m.id,
                            issuance_id = ?issuance.map(|i| i.id),
                            "an issued batch key could not be stored ({e}); KCP deleted it"
                        );
                        IssuanceEnd::Discarded
                    }
                    Ok(other) => {
                        tracing::error!(
                            merchant_id = m.id,
                            issuance_id = ?issuance.map(|i| i.id),
                            "an issued batch key could not be stored ({e}) nor deleted at KCP \
                             ({other:?}); delete it in KCP's admin"
                        );
                        IssuanceEnd::Unknown
                    }
                    Err(other) => {
                        tracing::error!(
                            merchant_id = m.id,
                            issuance_id = ?issuance.map(|i| i.id),
                            "an issued batch key could not be stored ({e}) nor deleted at KCP \
                             ({other}); delete it in KCP's admin"
                        );
                        IssuanceEnd::Unknown
                    }
                };
                if let Some(issuance) = issuance {
                    let note = match end {
                        IssuanceEnd::Discarded => "not stored; KCP deleted the key",
                        _ => {
                            "KCP issued a key that could be neither stored nor deleted at KCP: \
                              delete it in KCP's admin"
                        }
                    };
                    self.end_issuance(issuance, end, note).await;
                }
            }
        }
    }

    /// The customer's key. A customer found without one, whose card a paid `onetime` kept but
    /// has not been made its key yet, gets it now (service/kept_cards.rs): the merchant was told
    /// the payment is paid, so the card is the customer's. An adoption that cannot be written
    /// (the primary failing, registrations racing it) does not fail the lookup
    /// ([`Self::adopted_for_lookup`]).
    pub async fn customer(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
    ) -> ServiceResult<billing_key::Model> {
        if let Some(key) = billing::active_key(&self.db.read, m.id, customer_uid).await? {
            return Ok(key);
        }
        if !self
            .adopted_for_lookup(m.id, &[customer_uid.to_string()])
            .await
        {
            return Err(customer_not_found(customer_uid));
        }
        billing::active_key(&self.db.write, m.id, customer_uid)
            .await?
            .ok_or_else(|| customer_not_found(customer_uid))
    }

    /// The keys of those of `uids` that have one, in the order asked; those found without one get
    /// a paid `onetime`'s kept card first, as in [`Self::customer`].
    pub async fn customers(
        &self,
        m: &merchant::Model,
        uids: &[String],
    ) -> ServiceResult<Vec<billing_key::Model>> {
        let mut found = billing::active_keys(&self.db.read, m.id, uids).await?;
        let missing: Vec<String> = uids
            .iter()
            .filter(|u| !found.iter().any(|k| &k.customer_uid == *u))
            .cloned()
            .collect();
        if !missing.is_empty() && self.adopted_for_lookup(m.id, &missing).await {
            found.extend(billing::active_keys(&self.db.write, m.id, &missing).await?);
        }
        Ok(uids
            .iter()
            .filter_map(|u| found.iter().find(|k| &k.customer_uid == u).cloned())
            .collect())
    }

    /// [`Self::adopt_paid_kept_cards`] for a read (`GET /subscribe/customers`, and the
    /// registration check of `POST /subscribe/payments/schedule`): whether it ran, so that the
    /// caller reads the keys again on the primary. One that fails (the primary failing, or the
    /// refusal of registrations racing it) is logged and the lookup answered from what the
    /// replica found, as before adoptions were looked for: a read is not turned into HTTP 500, nor
    /// answered with a registration's refusal, because a write it tries on the side failed. The
    /// card stays pending, and the next lookup or the resolver's pass over retired keys adopts
    /// it. What acts on the customer's key (`again`, a scheduled charge, `DELETE`) keeps the
    /// error: acting on a view without the card would charge, or delete, the wrong key.
    async fn adopted_for_lookup(&self, merchant_id: i64, customer_uids: &[String]) -> bool {
        match self.adopt_paid_kept_cards(merchant_id, customer_uids).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    merchant_id,
                    "a lookup could not adopt the customers' paid kept cards, answered from what \
                     was found (the resolver adopts them later): {e}"
                );
                false
            }
        }
    }

    /// Deletes the customer: its key retired here (`deleted`) and its pending schedules revoked,
    /// in one transaction, and only then the key deleted at KCP (`tx_type 10005010`). Once the
    /// transaction commits nothing of the customer is charged, scheduled or kept (no card a key-in
    /// charge in flight was keeping for it becomes its key, service/kept_cards.rs): a charge opens
    /// only with an active key, a schedule is written only while the key is active (both read it
    /// locked on PostgreSQL, so they either commit before the retirement, and a schedule is then
    /// revoked with the others, or see the key retired), and a schedule whose run has not opened
    /// its charge is revoked. Had KCP been called first, a schedule could fall due and be charged
    /// while KCP deleted the key, and one written beside the delete could survive it.
    ///
    /// The deletion at KCP is then durable as a replaced key's (service/retired_keys.rs): tried
    /// now, and if KCP fails or its answer is lost (or a charge opened before the delete is still
    /// in flight with the key), retried by the resolver until KCP confirms it. The customer stays
    /// deleted meanwhile, its schedules revoked: what the merchant asked for holds here at once,
    /// and only KCP's copy of a key nothing will charge is left to go.
    pub async fn delete_customer(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
    ) -> ServiceResult<billing_key::Model> {
        // A merchant whose KCP configuration is unusable gets the error, with nothing retired.
        self.connectors.for_merchant(m, &self.secrets)?;
        let key = self.retire_customer(m, customer_uid).await?;
        self.delete_replaced_key(m, key.id).await;
        let key = billing::key_by_id(&self.db.write, key.id)
            .await?
            .unwrap_or(key);
        if key.pg_deleted_at.is_none() {
            tracing::warn!(
                key_id = key.id,
                merchant_id = m.id,
                "customer deleted; its billing key's deletion at KCP is left to the resolver"
            );
        }
        Ok(billing_key::Model {
            batch_key_sealed: String::new(),
            ..key
        })
    }

    /// The transaction of [`Self::delete_customer`]: the customer's active key retired as
    /// `deleted` (its deletion at KCP pending), the cards key-in charges in flight are keeping for
    /// it dropped (service/kept_cards.rs: their deletion at KCP waits for their charge, as a
    /// replaced key's does, and a charge paid later keeps nothing), and its pending schedules
    /// revoked. The key as retired; refused as unknown when the customer has no active key
    /// (iamport's answer to a customer deleted already, too), its pending keys dropped all the
    /// same. That answer stands when a card was dropped: the customer never had a key (iamport
    /// stores one only once the first payment succeeds, and answers "not found" until then), so
    /// there is no customer record to answer with, and "not found" is what the lookups answer
    /// from then on, the charge paid or not.
    async fn retire_customer(
        &self,
        m: &merchant::Model,
        customer_uid: &str,
    ) -> ServiceResult<billing_key::Model> {
        // A card a paid `onetime` kept for the customer and that is not its key yet is its key
        // all the same (service/kept_cards.rs): adopted first, so that it is deleted with the
        // customer, not refused as unknown here and adopted by the resolver after the delete.
        let uid = [customer_uid.to_string()];
        let mut adopted = false;
        let mut tries = 0;
        while tries < DELETE_TRIES {
            tries += 1;
            let now = self.clock.unix();
            let txn = self.db.write.begin().await?;
            let Some(key) = billing::active_key(&txn, m.id, customer_uid).await? else {
                if !adopted {
                    drop(txn);
                    self.adopt_paid_kept_cards(m.id, &uid).await?;
                    adopted = true;
                    tries -= 1; // not a try of the delete's own write
                    continue;
                }
                // No key, but maybe a card a key-in charge in flight keeps for the customer (its
                // first `onetime`, not paid yet): dropped, or once paid it would become the key
                // of a customer the merchant deleted. The answer stays "not found" (below).
                let dropped = billing::drop_pending_keys_of(&txn, m.id, customer_uid, now).await?;
                // An adoption committed between the read above and the drop (PostgreSQL, whose
                // drop skips the card adopted meanwhile) made the card the key: retired with the
                // customer on the next try.
                let adopted_meanwhile = billing::active_key(&txn, m.id, customer_uid)
                    .await?
                    .is_some();
                txn.commit().await?;
                if dropped > 0 {
                    tracing::info!(
                        merchant_id = m.id,
                        dropped,
                        "customer without a key deleted: the card its first key-in charge in \
                         flight was keeping is not kept"
                    );
                }
                if adopted_meanwhile {
                    continue;
                }
                return Err(customer_not_found(customer_uid));
            };
            // Replaced meanwhile by a registration that read it first: the new key goes.
            if !billing::retire_key(&txn, key.id, Retirement::Deleted, now).await? {
                continue;
            }
            // A card a key-in charge in flight is keeping for the customer (`onetime` with its
            // customer_uid) would become its key once paid, bringing the customer back.
            let dropped = billing::drop_pending_keys_of(&txn, m.id, customer_uid, now).await?;
            for s in billing::pending_schedules(&txn, m.id, Some(customer_uid), None).await? {
                billing::revoke_schedule(&txn, s.id, now).await?;
            }
            txn.commit().await?;
            if dropped > 0 {
                tracing::info!(
                    merchant_id = m.id,
                    dropped,
                    "customer deleted: the card a key-in charge in flight was keeping is not kept"
                );
            }
            return Ok(billing_key::Model {
                status: "deleted".into(),
                deleted_at: Some(now),
                updated_at: now,
                pg_delete_next_at: Some(now),
                pg_delete_tries: 0,
                pg_delete_lease_until: 0,
                ..key
            });
        }
        tracing::warn!(
            merchant_id = m.id,
            "customer kept being re-registered during its delete"
        );
        Err(ServiceError::Refused(RE_REGISTERED_DURING_DELETE.into()))
    }

    /// A charge on the customer's billing key. A decline is a normal answer (code 0, `failed`).
    pub async fn pay_again(
        &self,
        m: &merchant::Model,
        cmd: AgainCommand,
    ) -> ServiceResult<PaymentRecord> {
        let outcome = self.charge_billing_key(m, cmd).await?;
        Self::answer(outcome)
    }

    pub(crate) async fn charge_billing_key(
        &self,
        m: &merchant::Model,
        cmd: AgainCommand,
    ) -> ServiceResult<ApprovalOutcome> {
        let mut order = cmd.order;
        order.customer_uid = Some(cmd.customer_uid.clone());
        order.customer_uid_usage = order.customer_uid_usage.or(Some("payment"));
        let text = order.kcp_text()?;
        // The key is read, and its card fields recorded, by the write that opens the charge
        // (`store::payments::open_charge`); `charge` fills in the batch key and group.
        let call = ChargeCall::Batch {
            customer_uid: cmd.customer_uid,
            request: BatchPaymentRequest {
                order_no: String::new(),
                amount: order.amount,
                good_name: text.good_name,
                buyer_name: text.buyer_name,
                buyer_email: text.buyer_email,
                buyer_tel: text.buyer_tel,
                batch_key: String::new(),
                group_id: String::new(),
                quota: order.card_quota,
            },
        };
        self.charge(m, &order, call).await
    }
}
