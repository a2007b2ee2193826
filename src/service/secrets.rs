//! Secrets at rest: KCP private keys and passphrases are sealed with AES-256-GCM under the master
//! key; imp_secrets are stored only as a keyed hash (HMAC-SHA256) and compared in constant time.
use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Test-mode master key used when none is configured. It is public (it is in this file), so test
/// mode prints a warning and production refuses to start without a real one.
const DEV_MASTER_KEY: [u8; 32] = *b"openport-test-mode-master-key-32";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("sealed value is malformed or was sealed with another master key")]
    Unseal,
}

#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    hash_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_config(configured: Option<&SecretString>) -> Result<Self, SecretError> {
        match configured {
            Some(s) => {
                let bytes = B64
                    .decode(s.expose_secret().trim())
                    .map_err(|_| SecretError::BadMasterKey)?;
                let arr: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
                Ok(Self::from_bytes(arr))
            }
            None => Ok(Self::from_bytes(DEV_MASTER_KEY)),
        }
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("HMAC takes any key length");
        mac.update(b"openport imp_secret hash v1");
        let hash_key: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            hash_key,
        }
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let raw = sealed.strip_prefix("v1:").ok_or(SecretError::Unseal)?;
        let bytes = B64.decode(raw).map_err(|_| SecretError::Unseal)?;
        if bytes.len() < 12 {
            return Err(SecretError::Unseal);
        }
        let (nonce, ct) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Unseal)
    }

    pub fn open_string(&self, sealed: &str) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| SecretError::Unseal)
    }

    /// Keyed hash of an imp_secret (hex). The key is derived from the master key, so a stolen
    /// database alone does not allow offline guessing.
    pub fn secret_hash(&self, secret: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("any key length");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time comparison of a presented imp_secret with the stored hash.
    pub fn secret_matches(&self, secret: &str, stored_hash: &str) -> bool {
        self.secret_hash(secret)
            .as_bytes()
            .ct_eq(stored_hash.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_the_same_master_key() {
        let a = MasterKey::from_config(None).unwrap();
        let other =
            MasterKey::from_config(Some(&SecretString::from(B64.encode([7u8; 32])))).unwrap();
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
        assert_ne!(h, "s3cret");
        assert!(k.secret_matches("s3cret", &h));
        assert!(!k.secret_matches("s3cret!", &h));
    }

    #[test]
    fn a_master_key_of_the_wrong_length_is_refused() {
        let short = SecretString::from(B64.encode([1u8; 16]));
        assert!(MasterKey::from_config(Some(&short)).is_err());
    }
}
