//! Secrets at rest: KCP private keys, passphrases, batch keys and webhook secrets are sealed with
//! AES-256-GCM under the master key; imp_secrets are stored only as a keyed hash (HMAC-SHA256)
//! and compared in constant time.
//!
//! **Rotation.** Every sealed value and every hash names the key that made it (`v2:<key id>:…`,
//! `<key id>$<hex>`). Configure the new key as `OPENPORT_MASTER_KEY` and the old one(s) in
//! `OPENPORT_PREVIOUS_MASTER_KEYS` (comma-separated): values under an old key still open, new
//! values use the new key, `openport reseal` rewrites every sealed column under the new key, and
//! each imp_secret hash is upgraded the next time its merchant calls getToken. Once `openport
//! reseal` reports nothing left under an old key (and merchants have logged in), drop it.
//! Instances sharing a database first all get the new key as a previous one, and only then as
//! the current one: an instance restarted with it as current writes under it at once, and every
//! other instance must already open that (docs/operations.md "Rotating the master key"). A hash
//! is upgraded only from a previous key the database used when the instance started
//! ([`MasterKey::upgrading_hashes_only_from`]), so the instances not restarted yet leave the
//! hashes the restarted ones wrote as they are, instead of writing them back under the old key.
use std::collections::BTreeSet;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Test-mode master key used when none is configured. It is public (it is in this file), so test
/// mode prints a warning and production refuses to start without a real one.
const DEV_MASTER_KEY: [u8; 32] = *b"openport-test-mode-master-key-32";

/// Characters of a key id (hex of four digest bytes). Every stored value carries its key's id at
/// a fixed place, so the database can be asked which keys it needs (store/key_ids.rs).
pub const KEY_ID_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    /// Item `0` (from 1, in list order) of the previous keys is not a key: told apart from the
    /// current key's error so that an operator rotating keys looks at the right setting.
    #[error("previous master key {0} (counted from 1 in the comma-separated list) must be base64 of exactly 32 bytes")]
    BadPreviousMasterKey(usize),
    #[error("sealed value is malformed or was sealed with a master key that is not configured")]
    Unseal,
}

/// One master key: its cipher, its hash key and a short public id (a digest, never the key).
#[derive(Clone)]
struct KeyMaterial {
    id: String,
    cipher: Aes256Gcm,
    hash_key: [u8; 32],
}

impl KeyMaterial {
    fn new(bytes: [u8; 32]) -> Self {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("HMAC takes any key length");
        mac.update(b"openport imp_secret hash v1");
        let hash_key: [u8; 32] = mac.finalize().into_bytes().into();
        let id =
            hex::encode(&Sha256::digest([b"openport key id ".as_slice(), &bytes].concat())[..4]);
        Self {
            id,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            hash_key,
        }
    }

    fn decode(b64: &str) -> Result<Self, SecretError> {
        let bytes = B64
            .decode(b64.trim())
            .map_err(|_| SecretError::BadMasterKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self::new(arr))
    }

    fn hash(&self, secret: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("any key length");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn open_raw(&self, raw: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = B64.decode(raw).map_err(|_| SecretError::Unseal)?;
        if bytes.len() < 12 {
            return Err(SecretError::Unseal);
        }
        let (nonce, ct) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Unseal)
    }
}

#[derive(Clone)]
pub struct MasterKey {
    current: KeyMaterial,
    previous: Vec<KeyMaterial>,
    /// Ids of the previous keys whose imp_secret hashes are verified but not upgraded
    /// ([`Self::upgrading_hashes_only_from`]); none until an instance has looked.
    incoming: Vec<String>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MasterKey(id {}, {} previous)",
            self.current.id,
            self.previous.len()
        )
    }
}

/// What checking an imp_secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    Mismatch,
    Match,
    /// Right secret, hashed under an old key (or under none): store this new hash.
    MatchRehash(String),
}

impl MasterKey {
    pub fn from_config(configured: Option<&SecretString>) -> Result<Self, SecretError> {
        Self::with_previous(configured, None)
    }

    /// The current key and, for rotation, the previous ones (comma-separated base64).
    pub fn with_previous(
        current: Option<&SecretString>,
        previous: Option<&SecretString>,
    ) -> Result<Self, SecretError> {
        let current = match current {
            Some(s) => KeyMaterial::decode(s.expose_secret())?,
            None => KeyMaterial::new(DEV_MASTER_KEY),
        };
        let previous = match previous {
            Some(list) => list
                .expose_secret()
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .enumerate()
                .map(|(i, key)| {
                    KeyMaterial::decode(key).map_err(|_| SecretError::BadPreviousMasterKey(i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![],
        };
        Ok(Self {
            current,
            previous,
            incoming: Vec::new(),
        })
    }

    /// These keys for an instance that found values stored under the configured keys `in_use`
    /// when it started (service/key_check.rs): an imp_secret hash is upgraded to the current key
    /// only from a previous key among them. A previous key nothing was stored under is the
    /// incoming key of a two-phase rotation (docs/operations.md "Rotating the master key"): only
    /// the instances restarted with it as their current key write under it, and a hash one of
    /// them stored verifies here and is left as it is. Upgraded back under this instance's key,
    /// the instances on either key would each rewrite a merchant's hash at every getToken until
    /// the rotation is over: a write, and a lock on the merchant's row, on the hot path.
    pub fn upgrading_hashes_only_from(mut self, in_use: &BTreeSet<String>) -> Self {
        self.incoming = self
            .previous
            .iter()
            .filter(|k| !in_use.contains(&k.id))
            .map(|k| k.id.clone())
            .collect();
        self
    }

    /// The current key's public id (a digest).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// The previous keys' ids, in the order configured.
    pub fn previous_ids(&self) -> impl Iterator<Item = &str> {
        self.previous.iter().map(|k| k.id.as_str())
    }

    /// Whether `id` is the current key's or a previous key's.
    pub fn has_key(&self, id: &str) -> bool {
        self.all().any(|k| k.id == id)
    }

    /// The id of the public key test mode uses without `OPENPORT_MASTER_KEY`: values sealed under
    /// it in a database that is now run with a real key are named as such.
    pub fn test_mode_key_id() -> String {
        KeyMaterial::new(DEV_MASTER_KEY).id
    }

    fn all(&self) -> impl Iterator<Item = &KeyMaterial> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// `v2:<key id>:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .current
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v2:{}:{}", self.current.id, B64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        if let Some(rest) = sealed.strip_prefix("v2:") {
            let (id, raw) = rest.split_once(':').ok_or(SecretError::Unseal)?;
            let key = self.all().find(|k| k.id == id).ok_or(SecretError::Unseal)?;
            return key.open_raw(raw);
        }
        // v1 values (no key id) are tried under every configured key.
        let raw = sealed.strip_prefix("v1:").ok_or(SecretError::Unseal)?;
        self.all()
            .find_map(|k| k.open_raw(raw).ok())
            .ok_or(SecretError::Unseal)
    }

    pub fn open_string(&self, sealed: &str) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| SecretError::Unseal)
    }

    /// True when `sealed` is not under the current key (`openport reseal` rewrites it).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        !sealed.starts_with(&format!("v2:{}:", self.current.id))
    }

    /// Keyed hash of an imp_secret: `<key id>$<hex>`. The key is derived from the master key, so
    /// a stolen database alone does not allow offline guessing.
    pub fn secret_hash(&self, secret: &str) -> String {
        format!("{}${}", self.current.id, self.current.hash(secret))
    }

    /// Constant-time comparison of a presented imp_secret with the stored hash; a hash to store
    /// instead when the stored one is under an old key (a previous key other than an incoming one,
    /// [`Self::upgrading_hashes_only_from`]) or names none.
    pub fn check_secret(&self, secret: &str, stored: &str) -> SecretCheck {
        let (id, hex_hash) = match stored.split_once('$') {
            Some((id, h)) => (Some(id), h),
            None => (None, stored),
        };
        for key in self.all().filter(|k| id.is_none_or(|i| i == k.id)) {
            if bool::from(key.hash(secret).as_bytes().ct_eq(hex_hash.as_bytes())) {
                let kept = key.id == self.current.id || self.incoming.contains(&key.id);
                return if kept && id.is_some() {
                    SecretCheck::Match
                } else {
                    SecretCheck::MatchRehash(self.secret_hash(secret))
                };
            }
        }
        SecretCheck::Mismatch
    }

    pub fn secret_matches(&self, secret: &str, stored: &str) -> bool {
        self.check_secret(secret, stored) != SecretCheck::Mismatch
    }
}

/// The key id a sealed value names (`v2:<key id>:…`); None for a v1 value, which names none.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    sealed
        .strip_prefix("v2:")?
        .split_once(':')
        .map(|(id, _)| id)
}

/// The key id an imp_secret hash names (`<key id>$<hex>`); None for a hash stored without one.
pub fn hash_key_id(stored: &str) -> Option<&str> {
    stored.split_once('$').map(|(id, _)| id)
}

/// How an access token is found at rest: its hex SHA-256. A token is 160 random bits, so the
/// digest cannot be reversed or guessed, and it needs no key (it survives master-key rotation,
/// and instances on different current keys find the same token). Someone who can write to the
/// database can therefore insert a token of their own: database write access is full control of
/// openport whatever the digest (docs/security.md "Database access").
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretString {
        SecretString::from(B64.encode([b; 32]))
    }

    #[test]
    fn a_sealed_value_opens_only_with_the_same_master_key() {
        let a = MasterKey::from_config(None).unwrap();
        let other = MasterKey::from_config(Some(&key(7))).unwrap();
        let sealed = a.seal(b"-----BEGIN ENCRYPTED PRIVATE KEY-----");
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            a.open(&sealed).unwrap(),
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
        );
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn an_imp_secret_is_checked_against_its_keyed_hash() {
        let k = MasterKey::from_config(None).unwrap();
        let h = k.secret_hash("s3cret");
        assert!(!h.contains("s3cret"));
        assert_eq!(k.check_secret("s3cret", &h), SecretCheck::Match);
        assert_eq!(k.check_secret("s3cret!", &h), SecretCheck::Mismatch);
    }

    #[test]
    fn after_rotation_old_values_open_and_old_hashes_match_and_are_upgraded() {
        let old = MasterKey::from_config(Some(&key(1))).unwrap();
        let sealed = old.seal(b"batch-key");
        let hash = old.secret_hash("s3cret");
        let rotated = MasterKey::with_previous(Some(&key(2)), Some(&key(1))).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), b"batch-key");
        assert!(rotated.needs_reseal(&sealed));
        assert!(!rotated.needs_reseal(&rotated.seal(b"x")));
        match rotated.check_secret("s3cret", &hash) {
            SecretCheck::MatchRehash(new) => {
                assert_eq!(rotated.check_secret("s3cret", &new), SecretCheck::Match)
            }
            other => panic!("{other:?}"),
        }
        let without_old = MasterKey::from_config(Some(&key(2))).unwrap();
        assert!(without_old.open(&sealed).is_err());
        assert_eq!(
            without_old.check_secret("s3cret", &hash),
            SecretCheck::Mismatch
        );
    }

    #[test]
    fn a_hash_under_a_previous_key_nothing_was_stored_under_is_verified_but_not_upgraded() {
        // Phase 1 of a rotation: K1 current and in use, K2 incoming (nothing under it yet).
        let old = MasterKey::with_previous(Some(&key(1)), Some(&key(2)))
            .unwrap()
            .upgrading_hashes_only_from(&BTreeSet::from([key_id(1)]));
        let new = MasterKey::with_previous(Some(&key(2)), Some(&key(1)))
            .unwrap()
            .upgrading_hashes_only_from(&BTreeSet::from([key_id(1)]));
        // An instance restarted with K2 upgrades the K1 hash once...
        let SecretCheck::MatchRehash(upgraded) =
            new.check_secret("s3cret", &old.secret_hash("s3cret"))
        else {
            panic!("a K1 hash is upgraded under K2");
        };
        assert_eq!(new.check_secret("s3cret", &upgraded), SecretCheck::Match);
        // ...and one still on K1 verifies it without writing it back under K1.
        assert_eq!(old.check_secret("s3cret", &upgraded), SecretCheck::Match);
        assert_eq!(old.check_secret("other", &upgraded), SecretCheck::Mismatch);
        // A hash that names no key is upgraded whatever the keys in use.
        let bare = upgraded.split_once('$').unwrap().1;
        assert!(matches!(
            new.check_secret("s3cret", bare),
            SecretCheck::MatchRehash(_)
        ));
    }

    fn key_id(b: u8) -> String {
        MasterKey::from_config(Some(&key(b)))
            .unwrap()
            .key_id()
            .to_string()
    }

    #[test]
    fn sealed_values_and_hashes_name_their_keys_id_and_the_id_has_a_fixed_length() {
        let k = MasterKey::with_previous(Some(&key(2)), Some(&key(1))).unwrap();
        let old = MasterKey::from_config(Some(&key(1))).unwrap();
        assert_eq!(sealed_key_id(&k.seal(b"x")), Some(k.key_id()));
        assert_eq!(hash_key_id(&k.secret_hash("s")), Some(k.key_id()));
        assert_eq!(k.key_id().len(), KEY_ID_CHARS);
        assert_eq!(sealed_key_id("v1:AAAA"), None);
        assert_eq!(hash_key_id("abcdef"), None);
        assert!(k.has_key(old.key_id()));
        assert_eq!(k.previous_ids().collect::<Vec<_>>(), vec![old.key_id()]);
        assert!(!old.has_key(k.key_id()));
        assert_eq!(
            MasterKey::test_mode_key_id(),
            MasterKey::from_config(None).unwrap().key_id()
        );
    }

    #[test]
    fn the_test_mode_keys_base64_in_docs_operations_md_is_the_test_mode_key() {
        let documented = SecretString::from("b3BlbnBvcnQtdGVzdC1tb2RlLW1hc3Rlci1rZXktMzI=");
        let k = MasterKey::with_previous(Some(&key(2)), Some(&documented)).unwrap();
        assert!(k.has_key(&MasterKey::test_mode_key_id()));
    }

    #[test]
    fn a_master_key_of_the_wrong_length_is_refused() {
        let short = SecretString::from(B64.encode([1u8; 16]));
        assert!(MasterKey::from_config(Some(&short)).is_err());
    }
}
