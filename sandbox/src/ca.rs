//! The sandbox's certificate authority: it plays the part of KCP's partner-site "인증센터", which
//! issues each merchant a service certificate and an encrypted private key (spec/kcp.md §3).
//!
//! The CA key and certificate are committed public test material (`sandbox/ca/*.pem`), so every
//! sandbox instance trusts the certificates every other instance issued.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use der::{Decode, Encode, Tagged};
use rand::RngCore;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::keyfile;

const CA_KEY_PEM: &str = include_str!("../ca/ca-key.pem");
const CA_CERT_PEM: &str = include_str!("../ca/ca-cert.pem");

/// sha256WithRSAEncryption: the only certificate signature the sandbox CA makes or accepts.
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// id-at-commonName
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// A merchant's service certificate and key, as KCP hands them out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedCertificate {
    pub site_cd: String,
    /// Multi-line PEM; the caller flattens it into `kcp_cert_info` (spec/kcp.md §3).
    pub certificate_pem: String,
    /// `-----BEGIN ENCRYPTED PRIVATE KEY-----`, pbeWithSHA1And3-KeyTripleDES-CBC, 2048 iterations.
    pub encrypted_private_key_pem: String,
}

/// Why a presented certificate is not one this CA issued for the site.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateRejection {
    #[error("certificate is not signed by the sandbox CA")]
    ForeignIssuer,
}

pub(crate) struct CertificateAuthority {
    signing_key: SigningKey<Sha256>,
    verifying_key: VerifyingKey<Sha256>,
    subject: Name,
    /// Certificates already verified (see [`crate::auth::CertificateCache`]).
    pub(crate) cache: crate::auth::CertificateCache,
}

impl CertificateAuthority {
    pub(crate) fn load() -> anyhow::Result<Self> {
        let key = RsaPrivateKey::from_pkcs8_pem(CA_KEY_PEM).context("sandbox CA key")?;
        let cert = Certificate::load_pem_chain(CA_CERT_PEM.as_bytes())
            .context("sandbox CA certificate")?
            .into_iter()
            .next()
            .context("sandbox CA certificate PEM is empty")?;
        let public = RsaPublicKey::from(&key);
        let cert_public = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .context("CA public key")?;
        let expected = public.to_public_key_der().context("CA public key")?;
        anyhow::ensure!(
            cert_public == expected.as_bytes(),
            "sandbox CA certificate and key do not match"
        );
        Ok(Self {
            signing_key: SigningKey::new(key),
            verifying_key: VerifyingKey::new(public),
            subject: cert.tbs_certificate.subject,
            cache: Default::default(),
        })
    }

    /// Issues a fresh RSA-2048 key and a 10-year certificate with CN = `site_cd`.
    pub(crate) fn issue(
        &self,
        site_cd: &str,
        passphrase: &str,
    ) -> anyhow::Result<IssuedCertificate> {
        anyhow::ensure!(
            crate::wire::is_site_cd(site_cd),
            "site_cd must be 5 ASCII letters or digits (spec/kcp.md §6)"
        );
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).context("generate RSA key")?;
        let spki_der = RsaPublicKey::from(&key)
            .to_public_key_der()
            .context("encode public key")?;
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())?;
        // RFC 4514 order: the last RDN is outermost. site_cd is alphanumeric, so no escaping.
        let subject = Name::from_str(&format!("CN={site_cd},O=openport KCP sandbox,C=KR"))?;
        let builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            random_serial()?,
            Validity::from_now(TEN_YEARS)?,
            subject,
            spki,
            &self.signing_key,
        )?;
        let cert = builder.build::<Signature>()?;
        let certificate_pem = der::EncodePem::to_pem(&cert, der::pem::LineEnding::LF)?;
        let pkcs8 = key.to_pkcs8_der().context("encode private key")?;
        let encrypted_private_key_pem =
            keyfile::encrypt_private_key_pem(pkcs8.as_bytes(), passphrase)?;
        Ok(IssuedCertificate {
            site_cd: site_cd.to_owned(),
            certificate_pem,
            encrypted_private_key_pem,
        })
    }

    /// Checks that `cert` was signed by this CA and returns its common name (the site_cd it was
    /// issued for).
    ///
    /// Validity dates are not checked: KCP's own public test certificate has expired and is still
    /// expected to work in tests (spec/kcp.md §3).
    pub(crate) fn verify_issued(&self, cert: &Certificate) -> Result<String, CertificateRejection> {
        if cert.signature_algorithm.oid != SHA256_WITH_RSA
            || cert.tbs_certificate.issuer != self.subject
        {
            return Err(CertificateRejection::ForeignIssuer);
        }
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|_| CertificateRejection::ForeignIssuer)?;
        let signature = cert
            .signature
            .as_bytes()
            .and_then(|bytes| Signature::try_from(bytes).ok())
            .ok_or(CertificateRejection::ForeignIssuer)?;
        self.verifying_key
            .verify(&tbs, &signature)
            .map_err(|_| CertificateRejection::ForeignIssuer)?;
        common_name(cert).ok_or(CertificateRejection::ForeignIssuer)
    }
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive and without a leading zero octet, as RFC 5280 §4.1.2.2 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::new(&bytes)?)
}

/// The subject's CN, whichever string type the issuer chose for it.
fn common_name(cert: &Certificate) -> Option<String> {
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| {
            let value = &attribute.value;
            match value.tag() {
                der::Tag::Utf8String
                | der::Tag::PrintableString
                | der::Tag::Ia5String
                | der::Tag::TeletexString => {
                    std::str::from_utf8(value.value()).ok().map(str::to_owned)
                }
                _ => None,
            }
        })
}
