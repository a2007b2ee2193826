//! Batch (billing) keys on `POST /gw/hub/v1/payment`: issuance without a window (`pay_method`
//! CARD, `card_tx_type` 12100000), deletion (`pay_method` BATCH, `tx_type` 10005010), and charges
//! with a key (`pay_method` CARD, `card_tx_type` 11511000) (spec/kcp.md §2.5, §2.6).
//!
//! Assumption (docs/sandbox.md §6): KCP's REST form of a key-in issuance was not found; as spec
//! §2.5 asks, it is the key-in hub call with the batch-issuance `card_tx_type` (12100000, with
//! `sign_txtype` 0001 and `group_id`, as KCP's PayPlus module sends them) and no amount. The
//! answer has §2.5's shape plus `card_mask_no`.
//!
//! The sandbox keeps a key's HMAC-SHA256 under a random pepper ([`Pepper`]), never the key: a
//! charge finds its key by that digest.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::kcp_time;
use crate::codes;
use crate::hub;
use crate::pepper::Pepper;
use crate::test_cards::{self, Issuer, IssuerDecision};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

/// `card_tx_type` of a charge with a batch key (spec §2.6).
pub(crate) const BATCH_PAYMENT: &str = "11511000";
/// `card_tx_type` of a batch key issuance without a window (assumption, docs/sandbox.md §6).
pub(crate) const BATCH_ISSUE: &str = "12100000";
/// `sign_txtype` of a batch key issuance: an auth-key request.
const ISSUE_SIGN_TXTYPE: &str = "0001";
/// `tx_type` of a batch key deletion (spec §2.6).
const DELETE: &str = "10005010";

/// Where a batch key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKeyState {
    Active,
    /// Deleted with `tx_type` 10005010: charges are refused with 8303.
    Deleted,
}

/// What the sandbox shows of a batch key: its card (masked) and state, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchKey {
    /// A random handle given at issuance (16 hex digits), which the sandbox's logs and
    /// `/_sandbox/batch-keys` name the key by. Not derived from the key: a key is 10 random digits
    /// after its date, so any digest of it shown in a log could be reversed by trying them all.
    /// Keys kept by an older sandbox show the digest prefix they were shown by then.
    #[serde(alias = "key_sha256_prefix")]
    pub id: String,
    pub site_cd: String,
    pub group_id: String,
    /// The `ordr_idxx` the key was issued under: what KCP's admin finds an issuance by (KCP has no
    /// inquiry for one). Empty for keys kept by an older sandbox.
    #[serde(default)]
    pub order_no: String,
    /// `411111******1111`.
    pub masked_card_no: String,
    pub card_cd: String,
    pub card_name: String,
    pub card_bank_cd: String,
    pub card_bin_type_02: String,
    pub state: BatchKeyState,
    /// `yyyyMMddHHmmss` KST.
    pub issued_at: String,
    pub deleted_at: Option<String>,
}

/// The plain SHA-256 (hex) a sandbox before the pepper found a key by (state file version 1).
fn plain_digest(batch_key: &str) -> String {
    hex::encode(Sha256::digest(batch_key.as_bytes()))
}

/// How the book finds a key: by its HMAC under the book's pepper, or, for a key kept by a sandbox
/// before the pepper, by its plain SHA-256 until the key is next presented (then it is re-keyed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Lookup {
    Keyed(String),
    Plain(String),
}

/// A key the sandbox issued, keyed by its digest.
struct StoredKey {
    shown: BatchKey,
    /// Decides the key's charges (billing refusals, limits).
    issuer: Issuer,
}

/// A batch key as the state file keeps it: what the book holds, never the key (docs/sandbox.md
/// §7). The issuer is kept by what it decides on charges; the card facts are in `key`, and both
/// find the issuer again among the test cards' when the file is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeptKey {
    /// HMAC-SHA256 of the key under the pepper beside the state file (hex): how a charge finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hmac: Option<String>,
    /// The plain SHA-256 of the key (hex), as a state file of version 1 keeps every key: searchable
    /// offline, so replaced by `key_hmac` as soon as the key is presented again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_sha256: Option<String>,
    key: BatchKey,
    decision: IssuerDecision,
    billing: bool,
}

/// Every batch key issued, in issuance order.
#[derive(Default)]
pub(crate) struct BatchKeyBook {
    /// What a key's digest is keyed with: random in memory, the key file's with a state file.
    pepper: Pepper,
    by_digest: BTreeMap<Lookup, StoredKey>,
    order: Vec<Lookup>,
}

impl BatchKeyBook {
    /// An empty book whose keys are found by their HMAC under `pepper`.
    pub fn new(pepper: Pepper) -> Self {
        Self {
            pepper,
            by_digest: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// Every key as the state file keeps it, in issuance order.
    pub fn kept(&self) -> Vec<KeptKey> {
        self.order
            .iter()
            .filter_map(|digest| self.by_digest.get_key_value(digest))
            .map(|(digest, stored)| KeptKey {
                key_hmac: match digest {
                    Lookup::Keyed(hmac) => Some(hmac.clone()),
                    Lookup::Plain(_) => None,
                },
                key_sha256: match digest {
                    Lookup::Plain(sha256) => Some(sha256.clone()),
                    Lookup::Keyed(_) => None,
                },
                key: stored.shown.clone(),
                decision: stored.issuer.decision,
                billing: stored.issuer.billing,
            })
            .collect()
    }

    /// Whether some key in `kept` is found by its HMAC, so only the pepper it was made with finds it.
    pub fn needs_pepper(kept: &[KeptKey]) -> bool {
        kept.iter().any(|kept| kept.key_hmac.is_some())
    }

    /// The book of a state file's keys, found by their HMAC under `pepper` (or, kept by an older
    /// sandbox, by their plain SHA-256). Refused: a key with no digest, or two, or one that is not a
    /// digest, or the same twice; an issuer this sandbox does not have (a file of another version
    /// of the test cards).
    pub fn restore(kept: Vec<KeptKey>, pepper: Pepper) -> Result<Self, String> {
        let mut book = Self::new(pepper);
        for KeptKey {
            key_hmac,
            key_sha256,
            key,
            decision,
            billing,
        } in kept
        {
            let prefix = &key.id;
            let (digest, lookup) = match (key_hmac, key_sha256) {
                (Some(hmac), None) => (hmac.clone(), Lookup::Keyed(hmac)),
                (None, Some(sha256)) => (sha256.clone(), Lookup::Plain(sha256)),
                _ => {
                    return Err(format!(
                        "batch key {prefix}: not one of key_hmac and key_sha256"
                    ))
                }
            };
            let well_formed = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
            if !well_formed {
                return Err(format!("batch key {prefix}: its digest is not a SHA-256"));
            }
            if book.by_digest.contains_key(&lookup) {
                return Err(format!("batch key {prefix} appears twice"));
            }
            let issuer = test_cards::issuers()
                .find(|issuer| {
                    issuer.card_cd == key.card_cd
                        && issuer.card_name == key.card_name
                        && issuer.bank_cd == key.card_bank_cd
                        && issuer.bin_type_02 == key.card_bin_type_02
                        && issuer.decision == decision
                        && issuer.billing == billing
                })
                .ok_or_else(|| {
                    format!(
                        "batch key {prefix}: no test card issuer {} ({decision:?}) in this sandbox",
                        key.card_cd
                    )
                })?;
            book.order.push(lookup.clone());
            book.by_digest
                .insert(lookup, StoredKey { shown: key, issuer });
        }
        Ok(book)
    }

    /// Where `batch_key` is in the book, if it is: by its HMAC, or by the plain SHA-256 an older
    /// sandbox kept it by.
    fn locate(&self, batch_key: &str) -> Option<Lookup> {
        [
            Lookup::Keyed(self.pepper.digest(batch_key)),
            Lookup::Plain(plain_digest(batch_key)),
        ]
        .into_iter()
        .find(|lookup| self.by_digest.contains_key(lookup))
    }

    /// The key `batch_key`, found by its digest, as the sandbox shows it.
    pub fn shown(&self, batch_key: &str) -> Option<BatchKey> {
        self.locate(batch_key)
            .and_then(|lookup| self.by_digest.get(&lookup))
            .map(|stored| stored.shown.clone())
    }

    pub fn snapshot(&self) -> Vec<BatchKey> {
        self.order
            .iter()
            .filter_map(|digest| self.by_digest.get(digest))
            .map(|stored| stored.shown.clone())
            .collect()
    }

    /// The key `batch_key` of (site_cd, group_id); another site's or group's key is not found.
    fn find(
        &mut self,
        site_cd: &str,
        group_id: &str,
        batch_key: &str,
    ) -> Result<&mut StoredKey, Refusal> {
        let keyed = Lookup::Keyed(self.pepper.digest(batch_key));
        if let Some(plain @ Lookup::Plain(_)) = self.locate(batch_key) {
            // Kept by an older sandbox: its presenter knows the key, so it is re-keyed now.
            let stored = self.by_digest.remove(&plain).expect("located");
            self.by_digest.insert(keyed.clone(), stored);
            for slot in self.order.iter_mut().filter(|slot| **slot == plain) {
                *slot = keyed.clone();
            }
        }
        let stored = self
            .by_digest
            .get_mut(&keyed)
            .filter(|stored| stored.shown.site_cd == site_cd && stored.shown.group_id == group_id)
            .ok_or_else(|| {
                Refusal::new(codes::BATCH_KEY_NOT_FOUND, "유효하지 않은 배치키입니다.")
            })?;
        if stored.shown.state == BatchKeyState::Deleted {
            return Err(Refusal::new(
                codes::BATCH_KEY_DELETED,
                "삭제된 배치키입니다.",
            ));
        }
        Ok(stored)
    }

    /// A fresh 16-digit key: KST `yyMMdd` + 10 random digits, like KCP's `2304051168518034` (§2.5).
    fn new_key(&self, app_time: &str) -> String {
        let mut rng = rand::thread_rng();
        loop {
            let key = format!(
                "{}{:010}",
                &app_time[2..8],
                rng.gen_range(0..10_000_000_000_u64)
            );
            if self.locate(&key).is_none() {
                return key;
            }
        }
    }
}

/// `pay_method` BATCH: the deletion of a key (`tx_type` 10005010, spec §2.6).
pub(crate) fn manage(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    match fields.required("tx_type")? {
        DELETE => delete(shared, fields, site_cd),
        other => Err(Refusal::new(
            codes::TX_TYPE_ERROR,
            format!("샌드박스가 지원하지 않는 tx_type 입니다: {other}"),
        )),
    }
}

/// Whether `group_id` is a group of `site_cd`: the site code followed by 7 digits, e.g.
/// `A52Q71000489` (spec §2.6). The hub's batch calls and the batch window check it alike.
pub(crate) fn is_group_id(site_cd: &str, group_id: &str) -> bool {
    group_id
        .strip_prefix(site_cd)
        .is_some_and(|rest| rest.len() == 7 && wire::is_digits(rest))
}

/// The group id field `name`, required and of `site_cd` ([`is_group_id`]), else `8301`.
fn check_group_id<'a>(fields: &'a Fields, name: &str, site_cd: &str) -> Result<&'a str, Refusal> {
    let group_id = fields.required(name)?;
    if !is_group_id(site_cd, group_id) {
        return Err(Refusal::new(
            codes::BATCH_GROUP_ERROR,
            format!("{name} 는 사이트코드({site_cd})와 숫자 7자리입니다."),
        ));
    }
    Ok(group_id)
}

/// `pay_method` CARD with `card_tx_type` 12100000: a key from card data, no money moves.
pub(crate) fn issue(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let sign_txtype = fields.required("sign_txtype")?;
    if sign_txtype != ISSUE_SIGN_TXTYPE {
        return Err(Refusal::new(
            codes::TX_TYPE_ERROR,
            format!("배치키 발급의 sign_txtype 은 {ISSUE_SIGN_TXTYPE} 입니다: {sign_txtype}"),
        ));
    }
    for name in ["amount", "card_mny"] {
        if fields
            .optional(name)
            .is_some_and(|v| !v.is_empty() && v != "0")
        {
            return Err(Refusal::new(
                codes::AMOUNT_ERROR,
                format!("배치키 발급에는 금액({name})이 없습니다."),
            ));
        }
    }
    let group_id = check_group_id(fields, "group_id", site_cd)?;
    let order_no = fields.required("ordr_idxx")?;
    wire::check_order_no("ordr_idxx", order_no)?;
    if let Some(buyr_name) = fields.optional("buyr_name") {
        wire::check_text("buyr_name", buyr_name, 30)?;
    }
    let card_no = fields.required("card_no")?;
    hub::check_card_number(card_no)?;
    hub::check_expiry(shared, fields.required("card_expiry")?)?;
    // Birth date alone, or birth date and PIN prefix, or neither; a PIN alone is refused.
    match (fields.optional("card_taxno"), fields.optional("card_pwd")) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(Refusal::new(
                codes::AUTHENTICATION_ERROR,
                "card_pwd 는 card_taxno 와 함께 보내야 합니다.",
            ))
        }
        (Some(taxno), None) => {
            hub::check_taxno(taxno)?;
            hub::check_birth(taxno)?;
        }
        (Some(taxno), Some(pin_prefix)) => {
            hub::parse_holder_proof(taxno, pin_prefix)?;
            hub::check_pin_prefix(pin_prefix)?;
            hub::check_birth(taxno)?;
        }
    }

    let (batch_key, shown) = store_key(shared, site_cd, group_id, order_no, card_no);
    let issuer = test_cards::issuer(card_no);
    let mut reply = Reply::ok();
    reply
        .set("batch_key", batch_key.as_str())
        .set("card_cd", issuer.card_cd)
        .set("card_name", issuer.card_name)
        .set("card_bank_cd", issuer.bank_cd)
        .set("card_bin_type_01", "0")
        .set("card_bin_type_02", issuer.bin_type_02)
        .set("card_mask_no", shown.masked_card_no.as_str());
    tracing::info!(site_cd, group_id, order_no, key = %shown.id, "kcp sandbox issued batch key");
    Ok(reply)
}

fn delete(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let batch_key = fields.required("batch_key")?;
    let group_id = check_group_id(fields, "group_id", site_cd)?;
    let deleted_at = kcp_time(shared.now());
    let mut book = shared.batch_keys();
    let stored = book.find(site_cd, group_id, batch_key)?;
    stored.shown.state = BatchKeyState::Deleted;
    stored.shown.deleted_at = Some(deleted_at);
    tracing::info!(site_cd, group_id, key = %stored.shown.id, "kcp sandbox deleted batch key");
    Ok(Reply::ok())
}

/// A charge with a batch key: the key-in order checks, then the key, then the issuer; the
/// answer is the card approval of key-in (spec §2.6).
pub(crate) fn pay(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let order = hub::parse_card_order(fields)?;
    let group_id = check_group_id(fields, "bt_group_id", site_cd)?;
    let batch_key = fields.required("bt_batch_key")?;

    // Held until the approval is recorded, so a concurrent delete cannot slip in between.
    let mut book = shared.batch_keys();
    let stored = book.find(site_cd, group_id, batch_key)?;
    let issuer = stored.issuer;
    if !issuer.billing {
        return Err(Refusal::new(
            codes::CARD_NOT_ALLOWED,
            format!(
                "{}는 비인증(빌링) 결제가 불가능한 카드사입니다.",
                issuer.card_name
            ),
        ));
    }
    hub::issuer_decides(shared, &issuer)?;
    let card = hub::card_summary(&issuer, stored.shown.masked_card_no.clone(), order.quota);
    let key = stored.shown.id.clone();
    let mut ledger = shared.ledger();
    let approval = hub::approve(shared, &mut ledger, site_cd, &order, card, &issuer)?;
    drop(ledger);
    drop(book);
    tracing::info!(tno = %approval.tno, site_cd, order_no = %order.order_no, amount = order.amount, %key, "kcp sandbox approved batch payment");
    Ok(approval.reply)
}

/// A key issued through the batch window (`AUTH`, spec §2.5): the same book and the same rules
/// for its charges as a key-in issuance. Returns the key and what the sandbox shows of it.
pub(crate) fn issue_from_window(
    shared: &Shared,
    site_cd: &str,
    group_id: &str,
    order_no: &str,
    card_no: &str,
) -> (String, BatchKey) {
    store_key(shared, site_cd, group_id, order_no, card_no)
}

/// Issues and books a fresh key for `card_no`, asked under `order_no`; returns the key and what
/// the sandbox shows of it. Every issuer issues keys; KB, NH, Kakao Bank and the limit cards
/// refuse the charges.
fn store_key(
    shared: &Shared,
    site_cd: &str,
    group_id: &str,
    order_no: &str,
    card_no: &str,
) -> (String, BatchKey) {
    let issuer = test_cards::issuer(card_no);
    let issued_at = kcp_time(shared.now());
    let mut book = shared.batch_keys();
    let batch_key = book.new_key(&issued_at);
    let digest = Lookup::Keyed(book.pepper.digest(&batch_key));
    let shown = BatchKey {
        id: hex::encode(rand::random::<[u8; 8]>()),
        site_cd: site_cd.to_owned(),
        group_id: group_id.to_owned(),
        order_no: order_no.to_owned(),
        masked_card_no: test_cards::mask(card_no),
        card_cd: issuer.card_cd.to_owned(),
        card_name: issuer.card_name.to_owned(),
        card_bank_cd: issuer.bank_cd.to_owned(),
        card_bin_type_02: issuer.bin_type_02.to_owned(),
        state: BatchKeyState::Active,
        issued_at,
        deleted_at: None,
    };
    book.order.push(digest.clone());
    book.by_digest.insert(
        digest,
        StoredKey {
            shown: shown.clone(),
            issuer,
        },
    );
    (batch_key, shown)
}
