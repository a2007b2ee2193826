//! Merchant authentication on every KCP call: the one-line certificate in `kcp_cert_info` and,
//! on cancel and inquiry, the `kcp_sign_data` signature (spec/kcp.md §3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use der::{Decode, Encode};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::Sha256;
use x509_cert::Certificate;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ca::CertificateAuthority;
use crate::codes;
use crate::wire::{Fields, Refusal};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The merchant behind a request whose certificate checked out; its key verifies signatures.
pub struct Merchant {
    key: VerifyingKey<Sha256>,
}

impl Merchant {
    /// Verifies `kcp_sign_data` over `message` (e.g. `site_cd^tno^mod_type`, spec §3):
    /// standard Base64 of an RSA PKCS#1 v1.5 SHA-256 signature.
    pub fn verify_signature(&self, fields: &Fields, message: &str) -> Result<(), Refusal> {
        let refused = || Refusal::new(codes::SIGNATURE_REJECTED, "서명 검증에 실패하였습니다.");
        let encoded = fields.required("kcp_sign_data")?;
        let bytes = STANDARD.decode(encoded).map_err(|_| refused())?;
        let signature = Signature::try_from(bytes.as_slice()).map_err(|_| refused())?;
        self.key
            .verify(message.as_bytes(), &signature)
            .map_err(|_| refused())
    }
}

/// A certificate the CA's signature was checked on: its common name and public key.
#[derive(Clone)]
struct Verified {
    common_name: String,
    key: VerifyingKey<Sha256>,
}

/// Certificates already verified, by their exact `kcp_cert_info` text. Every KCP call carries the
/// certificate, and checking the CA's RSA signature on it each time was a large share of the
/// sandbox's CPU under load; the outcome for the same bytes never changes. Only certificates that
/// verified are kept, at most [`CACHE_LIMIT`] (then the cache starts over).
#[derive(Default)]
pub struct CertificateCache {
    verified: Mutex<HashMap<String, Verified>>,
}

const CACHE_LIMIT: usize = 1024;

impl CertificateCache {
    fn get(&self, cert_info: &str) -> Option<Verified> {
        self.verified.lock().ok()?.get(cert_info).cloned()
    }

    fn put(&self, cert_info: &str, verified: Verified) {
        if let Ok(mut map) = self.verified.lock() {
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
            map.insert(cert_info.to_owned(), verified);
        }
    }
}

/// Checks `kcp_cert_info` against the sandbox CA and the request's `site_cd`.
pub fn authenticate(
    ca: &CertificateAuthority,
    fields: &Fields,
    site_cd: &str,
) -> Result<Merchant, Refusal> {
    let cert_info = fields.required("kcp_cert_info")?;
    let verified = match ca.cache.get(cert_info) {
        Some(verified) => verified,
        None => {
            let verified = verify(ca, cert_info)?;
            ca.cache.put(cert_info, verified.clone());
            verified
        }
    };
    if verified.common_name != site_cd {
        return Err(Refusal::new(
            codes::CERTIFICATE_SITE_MISMATCH,
            "인증서의 사이트코드가 site_cd 와 일치하지 않습니다.",
        ));
    }
    Ok(Merchant { key: verified.key })
}

fn verify(ca: &CertificateAuthority, cert_info: &str) -> Result<Verified, Refusal> {
    let rejected = || Refusal::new(codes::CERTIFICATE_REJECTED, "인증서 검증에 실패하였습니다.");
    let cert = parse_one_line_pem(cert_info).ok_or_else(rejected)?;
    let common_name = ca.verify_issued(&cert).map_err(|_| rejected())?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| rejected())?;
    let public_key = RsaPublicKey::from_public_key_der(&spki).map_err(|_| rejected())?;
    Ok(Verified {
        common_name,
        key: VerifyingKey::new(public_key),
    })
}

/// `-----BEGIN CERTIFICATE-----MIID…==-----END CERTIFICATE-----` with newlines removed (spec §3,
/// seed 002: KCP takes the certificate serialised on one line). White space around it or in its
/// Base64, a PEM's line breaks included, is refused as KCP refuses it: a connector that sent the
/// file as it is would otherwise pass every test and fail every call at KCP.
fn parse_one_line_pem(text: &str) -> Option<Certificate> {
    let base64 = text.strip_prefix(BEGIN)?.strip_suffix(END)?;
    if base64.chars().any(char::is_whitespace) {
        return None;
    }
    let der = STANDARD.decode(base64).ok()?;
    Certificate::from_der(&der).ok()
}
