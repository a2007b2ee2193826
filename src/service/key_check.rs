//! Refusing to start with master keys that do not open what the database holds.
//!
//! A mistyped `OPENPORT_MASTER_KEY`, or an old key dropped from `OPENPORT_PREVIOUS_MASTER_KEYS`
//! too early, used to start without a word: every merchant then got 401 from getToken and no KCP
//! key could be opened. Every sealed value and imp_secret hash names the key that made it
//! (service/secrets.rs), so a start compares those ids with the configured keys' and names the
//! missing ones (ids are digests: never key material).
//!
//! Outside test mode only what can serve is checked: merchants made in test mode get no token
//! there ([`serves_in_mode`]), so their values (often under the public test-mode key) do not stop
//! a live start on a database that was tried out in test mode first. Access tokens are not
//! checked either: getToken replaces one it cannot open.
//!
//! The same look tells which configured keys the database uses ([`StoredKeys::in_use`]): a start
//! warns when nothing is under the current key yet while a previous one holds values (a rotation
//! not applied yet), and an instance upgrades imp_secret hashes only from previous keys in use
//! (service/secrets.rs, [`MasterKey::upgrading_hashes_only_from`]).
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::merchants::{sealed_columns, serves_in_mode};
use super::secrets::{hash_key_id, sealed_key_id, MasterKey};
use super::{Gateway, ServiceResult};
use crate::store::{key_ids, merchants};

/// Merchants named in full before the rest are only counted.
const NAMED_MERCHANTS: usize = 10;

/// What the database holds under keys that are not configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKeys {
    /// Key id (or `v1` for values that name none and that no configured key opens) → what was
    /// made with it.
    pub keys: BTreeMap<String, UnderKey>,
    /// The current key's id, then the previous keys' ids.
    pub current: String,
    pub previous: Vec<String>,
}

/// What one missing key made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnderKey {
    /// imp_code → the merchant's values under this key (`KCP private key`, `imp_secret hash`…).
    pub merchants: BTreeMap<String, Vec<&'static str>>,
    pub billing_keys: i64,
}

impl UnknownKeys {
    /// True when the missing keys made nothing but imp_secret hashes: the sealed values were
    /// resealed, and only merchants that have not called getToken since hold on to the old key.
    pub fn only_hashes(&self) -> bool {
        self.keys.values().all(|k| {
            k.billing_keys == 0
                && k.merchants
                    .values()
                    .all(|what| what.iter().all(|w| *w == IMP_SECRET_HASH))
        })
    }
}

const IMP_SECRET_HASH: &str = "imp_secret hash";

impl fmt::Display for UnknownKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let test_key = MasterKey::test_mode_key_id();
        f.write_str(
            "the database holds secrets made with a master key that is not configured, which \
             would fail every merchant's getToken (401) and every KCP call:",
        )?;
        for (id, under) in &self.keys {
            if id == "v1" {
                write!(f, " values without a key id that no configured key opens (")?;
            } else if *id == test_key {
                write!(f, " key id {id}, openport's public test-mode key (")?;
            } else {
                write!(f, " key id {id} (")?;
            }
            let mut parts: Vec<String> = under
                .merchants
                .iter()
                .take(NAMED_MERCHANTS)
                .map(|(code, what)| format!("merchant {code}: {}", what.join(", ")))
                .collect();
            if under.merchants.len() > NAMED_MERCHANTS {
                parts.push(format!(
                    "{} more merchants",
                    under.merchants.len() - NAMED_MERCHANTS
                ));
            }
            if under.billing_keys > 0 {
                parts.push(format!("{} billing keys", under.billing_keys));
            }
            write!(f, "{});", parts.join("; "))?;
        }
        write!(f, " configured: OPENPORT_MASTER_KEY id {}", self.current)?;
        if self.current == test_key {
            f.write_str(" (unset: the public test-mode key)")?;
        }
        if self.previous.is_empty() {
            f.write_str(", no OPENPORT_PREVIOUS_MASTER_KEYS.")?;
        } else {
            write!(
                f,
                ", OPENPORT_PREVIOUS_MASTER_KEYS ids {}.",
                self.previous.join(", ")
            )?;
        }
        f.write_str(
            " Set OPENPORT_MASTER_KEY to the key these were made with, or, during a rotation, \
             keep the old key in OPENPORT_PREVIOUS_MASTER_KEYS until `openport reseal` reports \
             nothing left under it (docs/operations.md \"Rotating the master key\").",
        )?;
        if self.keys.contains_key(&test_key) {
            f.write_str(
                " The public test-mode key (the one used without OPENPORT_MASTER_KEY) can be listed \
                 as a previous key like any other; its base64 is in docs/operations.md.",
            )?;
        }
        if self.only_hashes() {
            f.write_str(
                " Only imp_secret hashes are left under it: a merchant that cannot log in \
                 before the key goes gets a new imp_secret with `openport merchant new-secret \
                 --imp-code CODE`.",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownKeys {}

/// What a start found stored under which master keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeys {
    /// What no configured key opens; None when every stored value opens.
    pub unknown: Option<UnknownKeys>,
    /// The ids of the configured keys (current or previous) that stored values name: a serving
    /// merchant's sealed values and imp_secret hash, billing keys. v1 values, which name no key,
    /// are not counted.
    pub in_use: BTreeSet<String>,
}

impl StoredKeys {
    /// The previous keys the database holds values under while it holds none under the current
    /// key: the current key is a new one whose rotation has not been applied yet (an operator
    /// who rotated should know it). Empty otherwise, and on an empty database.
    pub fn rotation_pending(&self, keys: &MasterKey) -> Vec<String> {
        if self.in_use.contains(keys.key_id()) {
            return Vec::new();
        }
        keys.previous_ids()
            .filter(|id| self.in_use.contains(*id))
            .map(str::to_string)
            .collect()
    }

    /// Logs [`Self::rotation_pending`], naming key ids (digests), never a key.
    pub fn warn_of_pending_rotation(&self, keys: &MasterKey) {
        let previous = self.rotation_pending(keys);
        if previous.is_empty() {
            return;
        }
        tracing::warn!(
            current_key_id = %keys.key_id(),
            previous_key_ids = %previous.join(", "),
            "master-key rotation not applied yet: nothing stored is under OPENPORT_MASTER_KEY, and \
             values are under OPENPORT_PREVIOUS_MASTER_KEYS. New values are written under the \
             current key from now on; once every instance runs it as current, run `openport \
             reseal` (imp_secret hashes move at each merchant's next getToken). If no rotation \
             was meant, OPENPORT_MASTER_KEY is not the key this database was made with \
             (docs/operations.md \"Rotating the master key\")"
        );
    }
}

impl Gateway {
    /// The stored secrets no configured master key opens, by key id; None when every one opens.
    pub async fn unknown_master_keys(&self) -> ServiceResult<Option<UnknownKeys>> {
        Ok(self.stored_master_keys().await?.unknown)
    }

    /// Which master keys the stored secrets name: those not configured ([`StoredKeys::unknown`])
    /// and the configured ones in use.
    pub async fn stored_master_keys(&self) -> ServiceResult<StoredKeys> {
        let test_mode = self.settings.test_mode;
        let keys = &self.secrets;
        let mut unknown: BTreeMap<String, UnderKey> = BTreeMap::new();
        let mut in_use = BTreeSet::new();
        let now = self.clock.unix();
        for m in merchants::all(&self.db.read).await? {
            if !serves_in_mode(test_mode, &m) {
                continue;
            }
            for (_, what, value) in sealed_columns(&m, now) {
                let Some(value) = value else { continue };
                let missing = match sealed_key_id(value) {
                    Some(id) if keys.has_key(id) => {
                        in_use.insert(id.to_string());
                        None
                    }
                    Some(id) => Some(id.to_string()),
                    None if keys.open(value).is_ok() => None,
                    None => Some("v1".to_string()),
                };
                if let Some(id) = missing {
                    let under = unknown.entry(id).or_default();
                    under
                        .merchants
                        .entry(m.imp_code.clone())
                        .or_default()
                        .push(what);
                }
            }
            // A hash without a key id cannot be checked without the secret.
            match hash_key_id(&m.imp_secret_hash) {
                Some(id) if keys.has_key(id) => {
                    in_use.insert(id.to_string());
                }
                Some(id) => {
                    let under = unknown.entry(id.to_string()).or_default();
                    under
                        .merchants
                        .entry(m.imp_code.clone())
                        .or_default()
                        .push(IMP_SECRET_HASH);
                }
                None => {}
            }
        }
        let live_only = !test_mode;
        for (id, rows) in key_ids::billing_keys_by_key_id(&self.db.read, live_only).await? {
            if keys.has_key(&id) {
                in_use.insert(id);
            } else {
                unknown.entry(id).or_default().billing_keys += rows;
            }
        }
        if let Some(v1) = key_ids::a_v1_billing_key(&self.db.read, live_only).await? {
            if keys.open(&v1).is_err() {
                unknown.entry("v1".into()).or_default().billing_keys += 1;
            }
        }
        let unknown = (!unknown.is_empty()).then(|| UnknownKeys {
            keys: unknown,
            current: keys.key_id().to_string(),
            previous: keys.previous_ids().map(str::to_string).collect(),
        });
        Ok(StoredKeys { unknown, in_use })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(what: &[&'static str], billing_keys: i64) -> UnknownKeys {
        let mut under = UnderKey {
            billing_keys,
            ..UnderKey::default()
        };
        under.merchants.insert("imp12345678".into(), what.to_vec());
        UnknownKeys {
            keys: BTreeMap::from([("1a2b3c4d".to_string(), under)]),
            current: "9f8e7d6c".into(),
            previous: vec![],
        }
    }

    #[test]
    fn the_refusal_names_the_missing_key_ids_what_they_made_and_what_to_set() {
        let text = report(&["KCP private key", IMP_SECRET_HASH], 3).to_string();
        for expected in [
            "key id 1a2b3c4d",
            "merchant imp12345678: KCP private key, imp_secret hash",
            "3 billing keys",
            "OPENPORT_MASTER_KEY id 9f8e7d6c",
            "no OPENPORT_PREVIOUS_MASTER_KEYS",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert!(!text.contains("merchant new-secret"), "{text}");
    }

    #[test]
    fn hashes_alone_under_a_missing_key_point_at_a_new_secret() {
        let only = report(&[IMP_SECRET_HASH], 0);
        assert!(only.only_hashes());
        assert!(only.to_string().contains("openport merchant new-secret"));
        assert!(!report(&[IMP_SECRET_HASH], 1).only_hashes());
    }

    #[test]
    fn the_public_test_mode_key_is_named_as_such() {
        let mut r = report(&["KCP private key"], 0);
        let under = r.keys.remove("1a2b3c4d").unwrap();
        r.keys.insert(MasterKey::test_mode_key_id(), under);
        let text = r.to_string();
        assert!(text.contains("openport's public test-mode key"), "{text}");
        assert!(text.contains("docs/operations.md"), "{text}");
    }
}
