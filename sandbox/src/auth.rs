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

use crate::ca::{CertificateAuthority, CertificateRejection};
use crate::codes;
use crate::wire::{Fields, Refusal};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The merchant behind a request whose certificate checked out; its key verifies signatures.
pub struct Merchant {
    public_key: RsaPublicKey,
}

impl Merchant {
    /// Verifies `kcp_sign_data` over `message` (e.g. `site_cd^tno^mod_type`, spec §3):
    /// standard Base64 of an RSA PKCS#1 v1.5 SHA-256 signature.
    pub fn verify_signature(&self, fields: &Fields, message: &str) -> Result<(), Refusal> {
        let refused = || Refusal::new(codes::SIGNATURE_REJECTED, "서명 검증에 실패하였습니다.");
        let encoded = fields.required("kcp_sign_data")?;
        let bytes = STANDARD.decode(encoded).map_err(|_| refused())?;
        let signature = Signature::try_from(bytes.as_slice()).map_err(|_| refused())?;
        VerifyingKey::<Sha256>::new(self.public_key.clone())
            .verify(message.as_bytes(), &signature)
            .map_err(|_| refused())
    }
}

/// Checks `kcp_cert_info` against the sandbox CA and the request's `site_cd`.
pub fn authenticate(
    ca: &CertificateAuthority,
    fields: &Fields,
    site_cd: &str,
) -> Result<Merchant, Refusal> {
    let rejected = || Refusal::new(codes::CERTIFICATE_REJECTED, "인증서 검증에 실패하였습니다.");
    let cert_info = fields.required("kcp_cert_info")?;
    let cert = parse_one_line_pem(cert_info).ok_or_else(rejected)?;
    ca.check(&cert, site_cd)
        .map_err(|rejection| match rejection {
            CertificateRejection::ForeignIssuer => rejected(),
            CertificateRejection::SiteMismatch => Refusal::new(
                codes::CERTIFICATE_SITE_MISMATCH,
                "인증서의 사이트코드가 site_cd 와 일치하지 않습니다.",
            ),
        })?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| rejected())?;
    let public_key = RsaPublicKey::from_public_key_der(&spki).map_err(|_| rejected())?;
    Ok(Merchant { public_key })
}

/// `-----BEGIN CERTIFICATE-----MIID…==-----END CERTIFICATE-----` with newlines removed (spec §3).
/// Whitespace inside is tolerated, so a multi-line PEM is accepted too.
fn parse_one_line_pem(text: &str) -> Option<Certificate> {
    let inner = text.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let base64: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(base64).ok()?;
    Certificate::from_der(&der).ok()
}
