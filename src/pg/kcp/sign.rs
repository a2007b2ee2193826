//! KCP's service certificate (`kcp_cert_info`) and merchant private key (`kcp_sign_data`): spec/kcp.md §3.
//!
//! KCP hands merchants an *encrypted PKCS#8* key protected with the PKCS#12 scheme
//! `pbeWithSHA1And3-KeyTripleDES-CBC`, which the `pkcs8`/`pkcs5` crates do not decode (they only know
//! PBES1 with DES/RC2 and PBES2). We therefore parse the `EncryptedPrivateKeyInfo` envelope ourselves,
//! derive key and IV with the RFC 7292 Appendix B KDF and decrypt with DES-EDE3-CBC. PBES2 (with
//! PBKDF2 over HMAC-SHA1, RFC 8018's default PRF, or HMAC-SHA2, or scrypt) and plain PKCS#8 (and
//! PKCS#1 `RSA PRIVATE KEY`) are accepted too, so operators can re-wrap the key.
//!
//! The certificate is read from a PEM file or from the one line KCP hands out (`KCP_CERT_INFO`).
//!
//! Nothing in this module ever puts key material or the passphrase into an error or a `Debug` string.

use base64::Engine as _;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use der::{asn1::OctetStringRef, Decode, Encode, Reader};
use pkcs12::kdf::{derive_key_utf8, Pkcs12KeyType};
use rsa::{
    pkcs1::DecodeRsaPrivateKey, pkcs8::DecodePrivateKey, pkcs8::DecodePublicKey,
    pkcs8::EncodePrivateKey, traits::PublicKeyParts, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier};

/// `pbeWithSHA1And3-KeyTripleDES-CBC` (RFC 7292 Appendix C), the scheme of KCP-issued keys.
const PBE_SHA1_3DES_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");
/// PBES2 (RFC 8018 §6.2).
const PBES2_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
/// KCP keys use 2048 iterations; anything far above this is a malformed or hostile file, not a key
/// worth spending minutes of CPU on.
const MAX_PBE_ITERATIONS: u32 = 10_000_000;

/// Why a certificate or key could not be loaded or used. Messages never contain key bytes or the
/// passphrase (they name the problem only), so they can be logged and shown to operators.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("private key is not a PEM document: {0}")]
    KeyPem(String),
    #[error("unsupported private key PEM label `{0}` (expected ENCRYPTED PRIVATE KEY, PRIVATE KEY or RSA PRIVATE KEY)")]
    UnsupportedKeyLabel(String),
    #[error("unsupported private key encryption scheme {0} (expected pbeWithSHA1And3-KeyTripleDES-CBC or PBES2)")]
    UnsupportedEncryption(String),
    #[error("malformed encrypted private key: {0}")]
    MalformedEncryptedKey(String),
    /// The passphrase does not decrypt the key (or the key file is corrupt; the two are
    /// indistinguishable with CBC padding).
    #[error("wrong private key passphrase (or corrupted key file)")]
    WrongPassphrase,
    /// The key is encrypted and the passphrase is empty: not a wrong passphrase but none, which
    /// an operator who forgot the variable read as a mistyped one.
    #[error(
        "the private key is encrypted and no passphrase was given: set KCP_PRIVATE_KEY_PASSWORD \
         to the key's passphrase"
    )]
    NoPassphrase,
    #[error("private key is not an RSA PKCS#8 key: {0}")]
    NotRsa(String),
    #[error("certificate is not a PEM CERTIFICATE: {0}")]
    CertificatePem(String),
    #[error("certificate does not carry an RSA public key: {0}")]
    CertificateKey(String),
    /// Signing with a key that does not belong to the certificate would make KCP reject every
    /// cancel and inquiry; refuse at start-up instead.
    #[error("private key does not match the certificate's public key")]
    KeyCertificateMismatch,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The merchant's RSA private key. `Debug` is redacted; the key never leaves this type except as
/// signatures.
///
/// Signatures are made with `ring` when it accepts the key (RSA of 2048 to 4096 bits, which KCP
/// issues): its assembly Montgomery multiplication signs several times faster than the pure-Rust
/// `rsa` crate, whose big-number arithmetic was ≈ 43 % of all CPU under a cancel load
/// (docs/performance.md). Any other key signs with `rsa`; both give the same bytes (PKCS#1 v1.5
/// is deterministic), which a test checks.
pub struct KcpPrivateKey {
    key: RsaPrivateKey,
    fast: Option<ring::signature::RsaKeyPair>,
}

impl std::fmt::Debug for KcpPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KcpPrivateKey(<redacted {} bit RSA>)",
            self.key.size() * 8
        )
    }
}

impl KcpPrivateKey {
    /// Loads a PEM private key: KCP's encrypted PKCS#8 (`pbeWithSHA1And3-KeyTripleDES-CBC`), PBES2
    /// encrypted PKCS#8, plain PKCS#8 or PKCS#1. The passphrase is ignored for unencrypted keys.
    pub fn from_pem(pem: &str, passphrase: &SecretString) -> Result<Self, KeyError> {
        let pem = strip_preamble(pem, "-----BEGIN");
        let (label, der) =
            der::pem::decode_vec(pem.as_bytes()).map_err(|e| KeyError::KeyPem(e.to_string()))?;
        let key =
            match label {
                "ENCRYPTED PRIVATE KEY" => {
                    let mut plain = decrypt_pkcs8(&der, passphrase).map_err(|e| {
                        match e {
                            // An empty passphrase is almost always a variable left unset.
                            KeyError::WrongPassphrase if passphrase.expose_secret().is_empty() => {
                                KeyError::NoPassphrase
                            }
                            e => e,
                        }
                    })?;
                    let key = RsaPrivateKey::from_pkcs8_der(&plain);
                    secrecy::zeroize::Zeroize::zeroize(&mut plain);
                    key.map_err(|e| {
                        // A wrong passphrase passes the padding check about 1 time in 256 and then
                        // yields garbage; report it as the likely cause rather than "not RSA".
                        tracing::debug!(error = %e, "decrypted key is not PKCS#8");
                        KeyError::WrongPassphrase
                    })?
                }
                "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_der(&der)
                    .map_err(|e| KeyError::NotRsa(e.to_string()))?,
                "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der)
                    .map_err(|e| KeyError::NotRsa(e.to_string()))?,
                other => return Err(KeyError::UnsupportedKeyLabel(other.to_owned())),
            };
        Ok(Self::new(key))
    }

    fn new(key: RsaPrivateKey) -> Self {
        // The PKCS#8 document is zeroized when dropped.
        let fast = key
            .to_pkcs8_der()
            .ok()
            .and_then(|der| ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).ok());
        Self { key, fast }
    }

    /// `kcp_sign_data`: standard Base64 of RSA PKCS#1 v1.5 SHA-256 ("SHA256withRSA") over the UTF-8
    /// bytes of `message` (spec/kcp.md §3). PKCS#1 v1.5 is deterministic, so equal messages give
    /// equal signatures; blinding (the RNG) only hides timing.
    pub fn sign(&self, message: &str) -> Result<String, KeyError> {
        let signature = match &self.fast {
            Some(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| KeyError::Signing("RSA signing failed".into()))?;
                signature
            }
            None => self.sign_with_rsa_crate(message)?,
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(signature))
    }

    fn sign_with_rsa_crate(&self, message: &str) -> Result<Vec<u8>, KeyError> {
        let digest = Sha256::digest(message.as_bytes());
        self.key
            .sign_with_rng(
                &mut rsa::rand_core::OsRng,
                Pkcs1v15Sign::new::<Sha256>(),
                &digest,
            )
            .map_err(|e| KeyError::Signing(e.to_string()))
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }
}

/// Skips anything before the first PEM boundary (OpenSSL's "Bag Attributes" lines, a BOM, blank
/// lines), which the strict RFC 7468 decoder would otherwise refuse.
fn strip_preamble<'a>(pem: &'a str, marker: &str) -> &'a str {
    match pem.find(marker) {
        Some(start) => pem[start..].trim_end(),
        None => pem.trim(),
    }
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` (RFC 5208 §6) into the DER of the `PrivateKeyInfo`.
fn decrypt_pkcs8(der: &[u8], passphrase: &SecretString) -> Result<Vec<u8>, KeyError> {
    let malformed = |e: der::Error| KeyError::MalformedEncryptedKey(e.to_string());
    let mut reader = der::SliceReader::new(der).map_err(malformed)?;
    let (algorithm, ciphertext) = reader
        .sequence(|r| {
            let algorithm = AlgorithmIdentifierRef::decode(r)?;
            let ciphertext = OctetStringRef::decode(r)?;
            Ok((algorithm, ciphertext.as_bytes()))
        })
        .map_err(malformed)?;

    if algorithm.oid == PBE_SHA1_3DES_OID {
        let params = algorithm
            .parameters
            .ok_or_else(|| KeyError::MalformedEncryptedKey("PBE parameters missing".into()))?;
        // pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER } (RFC 7292 App. C)
        let (salt, iterations) = params
            .sequence(|r| {
                let salt = OctetStringRef::decode(r)?;
                let iterations = u32::decode(r)?;
                Ok((salt.as_bytes(), iterations))
            })
            .map_err(malformed)?;
        decrypt_pbe_sha1_3des(ciphertext, salt, iterations, passphrase)
    } else if algorithm.oid == PBES2_OID {
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der)
            .map_err(|e| KeyError::MalformedEncryptedKey(e.to_string()))?;
        info.decrypt(passphrase.expose_secret().as_bytes())
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|e| match e {
                // pkcs5 0.7 reports a CBC padding failure on decryption as `EncryptFailed`.
                pkcs8::Error::EncryptedPrivateKey(
                    pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
                ) => KeyError::WrongPassphrase,
                pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm {
                    oid,
                }) => KeyError::UnsupportedEncryption(format!("PBES2 with {oid}")),
                // A garbage plaintext that happens to have valid padding fails DER parsing.
                pkcs8::Error::Asn1(_) => KeyError::WrongPassphrase,
                other => KeyError::MalformedEncryptedKey(other.to_string()),
            })
    } else {
        Err(KeyError::UnsupportedEncryption(algorithm.oid.to_string()))
    }
}

/// RFC 7292 Appendix B.2 KDF with SHA-1: 24-byte key (ID 1) and 8-byte IV (ID 2), then
/// DES-EDE3-CBC with PKCS#7 padding — exactly what `openssl pkcs8 -v1 PBE-SHA1-3DES` writes.
fn decrypt_pbe_sha1_3des(
    ciphertext: &[u8],
    salt: &[u8],
    iterations: u32,
    passphrase: &SecretString,
) -> Result<Vec<u8>, KeyError> {
    if iterations == 0 || iterations > MAX_PBE_ITERATIONS {
        return Err(KeyError::MalformedEncryptedKey(format!(
            "unreasonable iteration count {iterations}"
        )));
    }
    let rounds = i32::try_from(iterations).map_err(|_| {
        KeyError::MalformedEncryptedKey(format!("unreasonable iteration count {iterations}"))
    })?;
    let pass = passphrase.expose_secret();
    let kdf_err =
        |e: der::Error| KeyError::MalformedEncryptedKey(format!("key derivation failed: {e}"));
    let mut key =
        derive_key_utf8::<sha1::Sha1>(pass, salt, Pkcs12KeyType::EncryptionKey, rounds, 24)
            .map_err(kdf_err)?;
    let iv =
        derive_key_utf8::<sha1::Sha1>(pass, salt, Pkcs12KeyType::Iv, rounds, 8).map_err(kdf_err)?;
    let decryptor = cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
        .map_err(|_| KeyError::MalformedEncryptedKey("bad 3DES key or IV length".into()));
    secrecy::zeroize::Zeroize::zeroize(&mut key);
    decryptor?
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| KeyError::WrongPassphrase)
}

/// KCP's service certificate. Validity dates are deliberately not checked: KCP decides whether a
/// certificate is still acceptable, and its public test certificate expired on 2026-06-28 while
/// remaining the documented test credential (spec/kcp.md §3).
#[derive(Clone)]
pub struct KcpCertificate {
    cert_info: String,
    public_key: RsaPublicKey,
}

impl std::fmt::Debug for KcpCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpCertificate")
            .field("cert_info_len", &self.cert_info.len())
            .finish()
    }
}

impl KcpCertificate {
    /// Reads the certificate from a PEM file's text or from KCP's one-line form, in which KCP
    /// hands it to merchants and which the seed's `KCP_CERT_INFO` holds
    /// (`-----BEGIN CERTIFICATE-----MIID…-----END CERTIFICATE-----`, spec/kcp.md §3). See
    /// [`certificate_der`] for what is tolerated.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = certificate_der(pem)?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| KeyError::CertificatePem(format!("not an X.509 certificate: {e}")))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| KeyError::CertificateKey(e.to_string()))?;
        let public_key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| KeyError::CertificateKey(e.to_string()))?;
        Ok(Self {
            cert_info: one_line_pem(&der),
            public_key,
        })
    }

    /// `kcp_cert_info`: the certificate PEM as ONE string, newlines removed, markers kept
    /// (spec/kcp.md §3). Rebuilt from the DER, so CRLF files, trailing blanks or a preamble in the
    /// configured PEM cannot leak into the wire value.
    pub fn cert_info(&self) -> &str {
        &self.cert_info
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }
}

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const CERT_END: &str = "-----END CERTIFICATE-----";

/// The DER between the `CERTIFICATE` markers. The strict RFC 7468 decoder wants a line break after
/// the first marker and lines of at most 64 characters, so it refused KCP's one-line form; here
/// any white space in the Base64 body is dropped instead (line breaks, CRLF, the blank lines of a
/// copy from a web page), and anything outside the markers (OpenSSL's "Bag Attributes", a BOM,
/// trailing blanks) is ignored. What remains must be canonical Base64 of an X.509 certificate, so
/// a truncated or mistyped value is still refused, with the reason.
fn certificate_der(text: &str) -> Result<Vec<u8>, KeyError> {
    let Some(start) = text.find(CERT_BEGIN) else {
        return Err(KeyError::CertificatePem(match pem_label(text) {
            Some(label) => format!("unexpected PEM label `{label}`"),
            None => format!("no `{CERT_BEGIN}` marker"),
        }));
    };
    let after_begin = &text[start + CERT_BEGIN.len()..];
    let end = after_begin
        .find(CERT_END)
        .ok_or_else(|| KeyError::CertificatePem(format!("no `{CERT_END}` marker")))?;
    let body: String = after_begin[..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if body.is_empty() {
        return Err(KeyError::CertificatePem("empty certificate body".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(&body)
        .map_err(|e| KeyError::CertificatePem(format!("certificate body is not Base64: {e}")))
}

/// The label of the first `-----BEGIN …-----` line, to name what was given instead of a
/// certificate (a private key pasted into the wrong setting, say).
fn pem_label(text: &str) -> Option<&str> {
    let rest = &text[text.find("-----BEGIN ")? + "-----BEGIN ".len()..];
    rest.find("-----").map(|end| &rest[..end])
}

fn one_line_pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----{}-----END CERTIFICATE-----",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Everything needed to authenticate a request to KCP: the certificate that goes into every
/// request and the key that signs cancels and inquiries.
#[derive(Debug)]
pub struct KcpSigner {
    certificate: KcpCertificate,
    key: KcpPrivateKey,
}

impl KcpSigner {
    /// Loads both and checks that they belong together.
    pub fn from_pem(
        certificate_pem: &str,
        private_key_pem: &str,
        passphrase: &SecretString,
    ) -> Result<Self, KeyError> {
        let certificate = KcpCertificate::from_pem(certificate_pem)?;
        let key = KcpPrivateKey::from_pem(private_key_pem, passphrase)?;
        if &key.public_key() != certificate.public_key() {
            return Err(KeyError::KeyCertificateMismatch);
        }
        Ok(Self { certificate, key })
    }

    pub fn cert_info(&self) -> &str {
        self.certificate.cert_info()
    }

    /// See [`KcpPrivateKey::sign`].
    pub fn sign(&self, message: &str) -> Result<String, KeyError> {
        self.key.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = include_str!("../../../tests/fixtures/kcp/splCert.pem");
    const KEY: &str = include_str!("../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");
    const VECTORS: &str = include_str!("../../../tests/fixtures/kcp/vectors.json");
    const PBES2_KEY: &str = include_str!("../../../tests/fixtures/kcp/pbes2-key.pem");
    const PLAIN_KEY: &str = include_str!("../../../tests/fixtures/kcp/plain-key.pem");
    const PBES2_SHA1_DES3_KEY: &str =
        include_str!("../../../tests/fixtures/kcp/pbes2-sha1-des3-key.pem");
    const PBES2_SHA1_AES256_KEY: &str =
        include_str!("../../../tests/fixtures/kcp/pbes2-sha1-aes256-key.pem");
    const PBE_SHA1_3DES_KEY: &str =
        include_str!("../../../tests/fixtures/kcp/pbe-sha1-3des-key.pem");
    const PLAIN_OF_PBE_KEY: &str =
        include_str!("../../../tests/fixtures/kcp/pbe-sha1-3des-key.plain.pem");

    fn pass(p: &str) -> SecretString {
        SecretString::from(p.to_owned())
    }

    #[test]
    fn kcp_test_key_reproduces_both_signature_vectors_byte_for_byte() {
        let key = KcpPrivateKey::from_pem(KEY, &pass("changeit")).expect("KCP test key loads");
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = vectors["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 2);
        for v in vectors {
            let message = v["message"].as_str().unwrap();
            assert_eq!(
                key.sign(message).unwrap(),
                v["kcp_sign_data"].as_str().unwrap(),
                "vector {message}"
            );
        }
    }

    #[test]
    fn ring_signs_the_kcp_key_and_gives_the_rsa_crates_bytes() {
        let key = KcpPrivateKey::from_pem(KEY, &pass("changeit")).unwrap();
        assert!(key.fast.is_some(), "ring accepts KCP's 2048-bit key");
        for message in ["", "20261202|STSC|1000", "한글 메시지"] {
            let by_ring = key.sign(message).unwrap();
            let by_rsa = base64::engine::general_purpose::STANDARD
                .encode(key.sign_with_rsa_crate(message).unwrap());
            assert_eq!(by_ring, by_rsa, "{message:?}");
        }
    }

    #[test]
    fn cert_info_is_the_fixture_pem_on_one_line_with_markers() {
        let cert = KcpCertificate::from_pem(CERT).unwrap();
        let expected: String = CERT.trim().lines().collect();
        assert_eq!(cert.cert_info(), expected);
        assert!(cert
            .cert_info()
            .starts_with("-----BEGIN CERTIFICATE-----MIIDgT"));
        assert!(cert
            .cert_info()
            .ends_with("OOpuQ==-----END CERTIFICATE-----"));
    }

    #[test]
    fn an_expired_certificate_still_loads() {
        // KCP's public test certificate's notAfter is 2026-06-28; loading must not depend on the clock.
        let signer = KcpSigner::from_pem(CERT, KEY, &pass("changeit")).unwrap();
        assert!(signer.cert_info().contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn crlf_and_preamble_in_the_certificate_do_not_change_cert_info() {
        let messy = format!("Bag Attributes\r\n{}\r\n\r\n", CERT.replace('\n', "\r\n"));
        let a = KcpCertificate::from_pem(&messy).unwrap();
        let b = KcpCertificate::from_pem(CERT).unwrap();
        assert_eq!(a.cert_info(), b.cert_info());
    }

    /// The fixture certificate as KCP hands it out and the seed's `KCP_CERT_INFO` holds it.
    fn one_line(pem: &str) -> String {
        pem.lines().map(str::trim).collect()
    }

    #[test]
    fn kcps_one_line_certificate_loads_with_the_same_key_and_cert_info_as_the_pem_file() {
        let text = one_line(CERT);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----MIID") && !text.contains('\n'));
        let from_line = KcpCertificate::from_pem(&text).unwrap();
        let from_file = KcpCertificate::from_pem(CERT).unwrap();
        assert_eq!(from_line.public_key(), from_file.public_key());
        assert_eq!(from_line.cert_info(), text);
    }

    #[test]
    fn a_one_line_certificate_with_surrounding_blanks_or_crlf_breaks_gives_the_same_cert_info() {
        let expected = one_line(CERT);
        for variant in [
            format!("  {expected}\r\n"),
            format!("\n\t{expected}\n\n"),
            CERT.replace('\n', "\r\n"),
            // Broken at another width than 64, as a copy from a web page or an e-mail is.
            expected
                .replace("MIID", "\r\nMIID")
                .replace("==-", "==\r\n-"),
        ] {
            let cert =
                KcpCertificate::from_pem(&variant).unwrap_or_else(|e| panic!("{variant:?}: {e}"));
            assert_eq!(cert.cert_info(), expected, "{variant:?}");
        }
    }

    #[test]
    fn a_signer_takes_the_one_line_certificate_and_still_checks_the_key_against_it() {
        let signer = KcpSigner::from_pem(&one_line(CERT), KEY, &pass("changeit")).unwrap();
        assert_eq!(signer.cert_info(), one_line(CERT));
        let err = KcpSigner::from_pem(&one_line(CERT), PLAIN_KEY, &pass("")).unwrap_err();
        assert_eq!(err, KeyError::KeyCertificateMismatch);
    }

    #[test]
    fn a_damaged_one_line_certificate_is_refused_with_the_reason() {
        let line = one_line(CERT);
        let cases = [
            (
                line.replace("-----END CERTIFICATE-----", ""),
                "END CERTIFICATE",
            ),
            (line.replacen("MIID", "MI*D", 1), "not Base64"),
            (line.replace("OOpuQ==", "OOpuQ"), "not Base64"),
            // Valid Base64, but a certificate cut short.
            (line.replacen("MIID", "", 1), "not an X.509 certificate"),
            (
                "-----BEGIN CERTIFICATE----------END CERTIFICATE-----".into(),
                "empty",
            ),
            (PLAIN_KEY.into(), "unexpected PEM label `PRIVATE KEY`"),
            (
                "MIIDgTCCAmmgAwIBAgIHBy4lYNG7ojAN".into(),
                "BEGIN CERTIFICATE",
            ),
        ];
        for (text, reason) in cases {
            match KcpCertificate::from_pem(&text) {
                Err(KeyError::CertificatePem(message)) => {
                    assert!(message.contains(reason), "{reason}: {message}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn pbes2_keys_with_openssls_default_hmac_sha1_prf_load_like_their_plain_form() {
        let plain = KcpPrivateKey::from_pem(PLAIN_KEY, &pass("")).unwrap();
        for (name, pem) in [
            ("des3", PBES2_SHA1_DES3_KEY),
            ("aes-256-cbc", PBES2_SHA1_AES256_KEY),
        ] {
            let key = KcpPrivateKey::from_pem(pem, &pass("changeit"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.public_key(), plain.public_key(), "{name}");
            assert_eq!(
                key.sign("T0000^1^STSC").unwrap(),
                plain.sign("T0000^1^STSC").unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_wrong_passphrase_on_a_pbes2_hmac_sha1_key_is_a_typed_error() {
        for pem in [PBES2_SHA1_DES3_KEY, PBES2_SHA1_AES256_KEY] {
            let err = KcpPrivateKey::from_pem(pem, &pass("wrong")).unwrap_err();
            assert_eq!(err, KeyError::WrongPassphrase);
        }
    }

    #[test]
    fn a_wrong_passphrase_is_a_typed_error_without_the_passphrase() {
        let err = KcpPrivateKey::from_pem(KEY, &pass("not-the-pass-phrase")).unwrap_err();
        assert_eq!(err, KeyError::WrongPassphrase);
        assert!(!err.to_string().contains("not-the-pass-phrase"));
        assert!(!format!("{err:?}").contains("not-the-pass-phrase"));
    }

    /// Without `KCP_PRIVATE_KEY_PASSWORD` the loader said "wrong private key passphrase", and the
    /// operator looked for a typo in a passphrase never given.
    #[test]
    fn an_encrypted_key_without_a_passphrase_says_none_was_given_and_names_the_variable() {
        for pem in [KEY, PBES2_KEY, PBES2_SHA1_DES3_KEY, PBES2_SHA1_AES256_KEY] {
            let err = KcpPrivateKey::from_pem(pem, &pass("")).unwrap_err();
            assert_eq!(err, KeyError::NoPassphrase);
            assert!(
                err.to_string().contains("no passphrase was given")
                    && err.to_string().contains("KCP_PRIVATE_KEY_PASSWORD"),
                "{err}"
            );
        }
        assert!(KcpPrivateKey::from_pem(PLAIN_KEY, &pass("")).is_ok());
    }

    #[test]
    fn a_wrong_passphrase_on_a_pbes2_key_is_a_typed_error() {
        let err = KcpPrivateKey::from_pem(PBES2_KEY, &pass("wrong")).unwrap_err();
        assert_eq!(err, KeyError::WrongPassphrase);
    }

    #[test]
    fn a_pbes2_key_loads_and_signs_like_its_plain_form() {
        let encrypted = KcpPrivateKey::from_pem(PBES2_KEY, &pass("changeit")).unwrap();
        let plain = KcpPrivateKey::from_pem(PLAIN_KEY, &pass("")).unwrap();
        assert_eq!(encrypted.public_key(), plain.public_key());
        assert_eq!(
            encrypted.sign("T0000^1^STSC").unwrap(),
            plain.sign("T0000^1^STSC").unwrap()
        );
    }

    #[test]
    fn an_openssl_pbe_sha1_3des_key_decrypts_to_the_same_key_as_its_plain_form() {
        let encrypted = KcpPrivateKey::from_pem(PBE_SHA1_3DES_KEY, &pass("changeit")).unwrap();
        let plain = KcpPrivateKey::from_pem(PLAIN_OF_PBE_KEY, &pass("")).unwrap();
        assert_eq!(encrypted.public_key(), plain.public_key());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let err = KcpSigner::from_pem(CERT, PLAIN_KEY, &pass("")).unwrap_err();
        assert_eq!(err, KeyError::KeyCertificateMismatch);
    }

    #[test]
    fn a_certificate_passed_as_key_is_an_unsupported_label() {
        let err = KcpPrivateKey::from_pem(CERT, &pass("")).unwrap_err();
        assert_eq!(err, KeyError::UnsupportedKeyLabel("CERTIFICATE".into()));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            KcpCertificate::from_pem("hello"),
            Err(KeyError::CertificatePem(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let signer = KcpSigner::from_pem(CERT, KEY, &pass("changeit")).unwrap();
        let debug = format!("{signer:?}");
        assert!(debug.contains("redacted"));
        assert!(!debug.contains("MII"));
    }
}
