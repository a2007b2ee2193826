//! The merchant private key file in KCP's real shape: an encrypted PKCS#8 PEM
//! (`-----BEGIN ENCRYPTED PRIVATE KEY-----`) using the PKCS#12 scheme
//! `pbeWithSHA1And3-KeyTripleDES-CBC` with 2048 iterations (spec/kcp.md §3).
//!
//! The `pkcs8` crate only speaks PBES1-with-DES/MD5 and PBES2, not the PKCS#12 PBE OIDs, so the
//! `EncryptedPrivateKeyInfo` is assembled here from `der` primitives.
//!
//! [`decrypt_private_key_pem`] exists for the sandbox's own tests. The gateway deliberately has
//! its own loader: sharing this one would let a bug cancel itself out.

use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::pem::LineEnding;
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use pkcs12::kdf::{derive_key_utf8, Pkcs12KeyType};
use rand::RngCore;
use spki::AlgorithmIdentifierOwned;

/// `pbeWithSHA1And3-KeyTripleDES-CBC` (RFC 7292 appendix C).
pub const PBE_SHA1_3DES_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");

/// KCP's key files use 2048 iterations (spec/kcp.md §3).
pub const ITERATIONS: u32 = 2048;

const PEM_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const SALT_LEN: usize = 8;

type TdesEncryptor = cbc::Encryptor<des::TdesEde3>;
type TdesDecryptor = cbc::Decryptor<des::TdesEde3>;

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is not valid DER/PEM: {0}")]
    Der(#[from] der::Error),
    #[error("key file PEM label is {0:?}, expected ENCRYPTED PRIVATE KEY")]
    Label(String),
    #[error("key file uses algorithm {0}, expected pbeWithSHA1And3-KeyTripleDES-CBC")]
    Algorithm(ObjectIdentifier),
    #[error("key file has no PBE parameters")]
    MissingParameters,
    #[error("wrong passphrase or corrupted key file")]
    Decrypt,
}

/// Encrypts a PKCS#8 `PrivateKeyInfo` DER into KCP's encrypted PEM shape with a fresh salt.
pub fn encrypt_private_key_pem(pkcs8_der: &[u8], passphrase: &str) -> Result<String, KeyFileError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    encrypt_with_salt(pkcs8_der, passphrase, salt)
}

fn encrypt_with_salt(
    pkcs8_der: &[u8],
    passphrase: &str,
    salt: [u8; SALT_LEN],
) -> Result<String, KeyFileError> {
    let (key, iv) = derive(passphrase, &salt, ITERATIONS)?;
    let ciphertext = TdesEncryptor::new_from_slices(&key, &iv)
        .map_err(|_| KeyFileError::Decrypt)?
        .encrypt_padded_vec_mut::<Pkcs7>(pkcs8_der);

    let mut params = OctetString::new(salt.to_vec())?.to_der()?;
    params.extend(ITERATIONS.to_der()?);
    let algorithm = AlgorithmIdentifierOwned {
        oid: PBE_SHA1_3DES_OID,
        parameters: Some(Any::new(Tag::Sequence, params)?),
    };
    let mut body = algorithm.to_der()?;
    body.extend(OctetString::new(ciphertext)?.to_der()?);
    let der = Any::new(Tag::Sequence, body)?.to_der()?;
    Ok(der::pem::encode_string(PEM_LABEL, LineEnding::LF, &der).map_err(der::Error::from)?)
}

/// Decrypts KCP's encrypted PEM back into the PKCS#8 `PrivateKeyInfo` DER.
pub fn decrypt_private_key_pem(pem: &str, passphrase: &str) -> Result<Vec<u8>, KeyFileError> {
    let plaintext = decrypt_padded(pem, passphrase)?;
    // A wrong passphrase passes the padding check about 1 time in 256 (a last byte of 0x01), so
    // the padding alone does not tell it apart: the plaintext must also be one whole DER SEQUENCE,
    // as a `PrivateKeyInfo` is.
    match Any::from_der(&plaintext) {
        Ok(info) if info.tag() == Tag::Sequence => Ok(plaintext),
        _ => Err(KeyFileError::Decrypt),
    }
}

/// The plaintext whose PKCS#7 padding checked out, whatever it holds.
fn decrypt_padded(pem: &str, passphrase: &str) -> Result<Vec<u8>, KeyFileError> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(der::Error::from)?;
    if label != PEM_LABEL {
        return Err(KeyFileError::Label(label.to_owned()));
    }
    let outer = Any::from_der(&der)?;
    let mut reader = SliceReader::new(outer.value())?;
    let algorithm = AlgorithmIdentifierOwned::decode(&mut reader)?;
    let ciphertext = OctetString::decode(&mut reader)?;
    reader.finish(())?;
    if algorithm.oid != PBE_SHA1_3DES_OID {
        return Err(KeyFileError::Algorithm(algorithm.oid));
    }
    let params = algorithm
        .parameters
        .ok_or(KeyFileError::MissingParameters)?;
    let mut reader = SliceReader::new(params.value())?;
    let salt = OctetString::decode(&mut reader)?;
    let iterations = u32::decode(&mut reader)?;
    reader.finish(())?;

    let (key, iv) = derive(passphrase, salt.as_bytes(), iterations)?;
    TdesDecryptor::new_from_slices(&key, &iv)
        .map_err(|_| KeyFileError::Decrypt)?
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext.as_bytes())
        .map_err(|_| KeyFileError::Decrypt)
}

/// RFC 7292 appendix B KDF with SHA-1: id 1 gives the 24-byte 3DES key, id 2 the 8-byte IV.
fn derive(
    passphrase: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<(Vec<u8>, Vec<u8>), KeyFileError> {
    let rounds = i32::try_from(iterations).map_err(|_| KeyFileError::Decrypt)?;
    let key =
        derive_key_utf8::<sha1::Sha1>(passphrase, salt, Pkcs12KeyType::EncryptionKey, rounds, 24)?;
    let iv = derive_key_utf8::<sha1::Sha1>(passphrase, salt, Pkcs12KeyType::Iv, rounds, 8)?;
    Ok((key, iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_der_sequence() -> Vec<u8> {
        let body = OctetString::new(b"not really a key".to_vec())
            .unwrap()
            .to_der()
            .unwrap();
        Any::new(Tag::Sequence, body).unwrap().to_der().unwrap()
    }

    #[test]
    fn a_key_file_decrypts_with_its_passphrase_and_not_with_another() {
        let secret = a_der_sequence();
        let pem = encrypt_private_key_pem(&secret, "changeit").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert_eq!(decrypt_private_key_pem(&pem, "changeit").unwrap(), secret);
        assert!(decrypt_private_key_pem(&pem, "wrong").is_err());
    }

    /// With about 1 salt in 256 a wrong passphrase leaves a plaintext whose padding looks right:
    /// the salts are counted up until one does (the same one on every run), and that file is
    /// still refused.
    #[test]
    fn a_wrong_passphrase_is_refused_even_when_its_padding_happens_to_look_right() {
        let secret = a_der_sequence();
        let pem = (0u64..100_000)
            .map(|n| encrypt_with_salt(&secret, "changeit", n.to_be_bytes()).unwrap())
            .find(|pem| decrypt_padded(pem, "wrong").is_ok())
            .expect("a salt whose wrong-passphrase padding looks right");
        assert_eq!(decrypt_private_key_pem(&pem, "changeit").unwrap(), secret);
        assert!(decrypt_private_key_pem(&pem, "wrong").is_err());
    }
}
