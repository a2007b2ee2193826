//! The first merchant `openport serve` makes: the demo merchant in test mode, the seed's
//! single live merchant (`KCP_*`) otherwise, whose fresh credentials go to a file, never to the
//! log stream.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::SecretString;

use super::{issue_sandbox_certificate, EmbeddedSandbox};
use crate::config::Config;
use crate::service::merchants::{
    certificate_facts, fresh_credentials, runs_in_mode, usable_kcp_pair,
    warn_of_expiring_certificates, CreatedMerchant, NewMerchant, DEMO_IMP_CODE, DEMO_IMP_KEY,
    DEMO_IMP_SECRET, DEMO_SITE_CD,
};
use crate::service::secrets::MasterKey;
use crate::service::Gateway;
use crate::store::entity::merchant;

/// Whether a start makes the first merchant. Only `openport serve` does: an operator command
/// (`merchant create`, `attempt …`, `reseal`) that did would make a live merchant whose secret
/// nobody is shown.
#[derive(Debug, Clone)]
pub enum Seeding {
    /// Make the first merchant (see [`ensure_first_merchant`]); a live merchant's credentials are
    /// written to a new file in `credentials_dir`.
    FirstMerchant { credentials_dir: PathBuf },
    /// Make none.
    Off,
}

/// The first merchant made by this start, and where its credentials were written.
pub struct FirstMerchant {
    pub created: CreatedMerchant,
    /// The file holding a live merchant's credentials (mode 0600); None for the demo merchant,
    /// whose credentials are published.
    pub credentials_file: Option<PathBuf>,
}

/// In test mode, an empty database gets the documented demo merchant, whose KCP credentials come
/// from the `KCP_*` settings when given, otherwise from the embedded sandbox's CA. `KCP_*`
/// settings naming the operator's own KCP site (a pair neither the sandbox CA's nor of KCP's
/// public test sites: a test against KCP staging) make no demo merchant, whose imp_key and
/// imp_secret README publishes: they make a test-mode merchant with fresh credentials written to
/// a file, as outside test mode, and need `OPENPORT_MASTER_KEY` (the site's key is sealed under
/// it, never under the public test-mode key). Outside test
/// mode, a database without a live merchant gets the single merchant of a setup configured with
/// the seed's `KCP_SITE_CD`, `KCP_CERT_INFO`, `KCP_PRIVATE_KEY_PATH` (+ `KCP_PRIVATE_KEY_PASSWORD`),
/// with fresh iamport credentials (never the public demo ones) written to a new file: merchants
/// made in test mode do not serve a live instance, so a database tried out in test mode first
/// still gets its live merchant. Once a live merchant exists the `KCP_*` settings make nothing and
/// change nothing; what in them disagrees with the live merchants is logged
/// ([`warn_of_seed_not_applied`]), and so is every live merchant's certificate that has expired or
/// expires within 30 days.
pub(super) async fn ensure_first_merchant(
    config: &Config,
    gateway: &Gateway,
    sandbox: Option<&EmbeddedSandbox>,
    seeding: &Seeding,
) -> anyhow::Result<Option<FirstMerchant>> {
    let Seeding::FirstMerchant { credentials_dir } = seeding else {
        return Ok(None);
    };
    let existing = gateway.list_merchants().await?;
    if !config.test_mode {
        if existing.iter().any(|m| !m.test_mode) {
            let live: Vec<&merchant::Model> =
                existing.iter().filter(|m| runs_in_mode(false, m)).collect();
            warn_of_seed_not_applied(config, &live);
            warn_of_expiring_certificates(&existing, gateway.clock.unix());
            return Ok(None);
        }
        let Some(credentials) = configured_kcp_credentials(config)? else {
            return Ok(None);
        };
        return seeded_merchant(
            gateway,
            credentials_dir,
            Seed::configured(config, credentials, false),
        )
        .await
        .map(Some);
    }
    if !existing.is_empty() {
        // A database whose first merchant was made with `openport merchant create` gets no demo
        // merchant: said once per start, or README's demo credentials answer 401 without a hint.
        // A restart of an instance that has the demo merchant says nothing.
        if !existing.iter().any(|m| m.imp_key == DEMO_IMP_KEY) {
            tracing::info!(
                "test mode: no demo merchant, the database already has {} merchant(s) \
                 (openport merchant list); the demo credentials (imp_key {DEMO_IMP_KEY}) get \
                 no token on it",
                existing.len()
            );
        }
        return Ok(None);
    }
    let (site_cd, cert, key, pass) = match (configured_kcp_credentials(config)?, sandbox) {
        (Some((site_cd, cert, key, pass)), _) if is_own_kcp_pair(&site_cd, &cert) => {
            // The operator's own KCP site (a test against KCP staging): never under the demo
            // merchant's published credentials, nor sealed under the public test-mode key.
            if gateway.secrets.key_id() == MasterKey::test_mode_key_id() {
                anyhow::bail!(
                    "test mode with KCP_SITE_CD {site_cd} and a certificate the sandbox CA did not \
                     issue (not one of KCP's public test sites {}): set OPENPORT_MASTER_KEY (base64 \
                     of 32 random bytes, e.g. `openssl rand -base64 32`); the site's private key \
                     is sealed under it, and the public test-mode key protects nothing; nothing \
                     was made",
                    crate::config::KCP_PUBLIC_TEST_SITES.join(", ")
                );
            }
            return seeded_merchant(
                gateway,
                credentials_dir,
                Seed::configured(config, (site_cd, cert, key, pass), true),
            )
            .await
            .map(Some);
        }
        (Some(credentials), _) => credentials,
        (None, Some(sb)) => {
            let site = config
                .kcp
                .site_cd
                .clone()
                .unwrap_or_else(|| DEMO_SITE_CD.to_string());
            let (cert, key, pass) = issue_sandbox_certificate(&sb.sandbox, &site).await?;
            (site, cert, key, pass)
        }
        (None, None) => {
            tracing::warn!("test mode without KCP credentials or an embedded sandbox: no demo merchant created");
            return Ok(None);
        }
    };
    let created = gateway
        .create_merchant(NewMerchant {
            name: "openport demo shop".into(),
            site_cd,
            certificate_pem: cert,
            private_key_pem: key,
            private_key_passphrase: pass,
            test_mode: true,
            credentials: Some((
                DEMO_IMP_CODE.into(),
                DEMO_IMP_KEY.into(),
                DEMO_IMP_SECRET.into(),
            )),
            kcp_api_base: None,
            kcp_group_id: config.kcp.group_id.clone(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("demo merchant: {e}"))?;
    Ok(Some(FirstMerchant {
        created,
        credentials_file: None,
    }))
}

/// Whether the seed's pair is a KCP site's own: neither issued by the sandbox's CA (public test
/// material) nor for one of KCP's public test sites (whose pair KCP publishes).
fn is_own_kcp_pair(site_cd: &str, certificate: &str) -> bool {
    !crate::config::is_kcp_public_test_site(site_cd)
        && !kcp_sandbox::Sandbox::issued_by_sandbox_ca(certificate)
}

/// The merchant of the seed's `KCP_*` settings, with fresh iamport credentials.
struct Seed {
    site_cd: String,
    cert: String,
    key: String,
    pass: SecretString,
    /// `KCP_GROUP_ID`, its KCP batch group; without it, its billing keys are refused outside
    /// test mode until `openport merchant set-group-id`.
    group_id: Option<String>,
    /// Live, or a test-mode merchant on the operator's own KCP site (a test against KCP staging).
    test_mode: bool,
}

impl Seed {
    /// The merchant of the `KCP_*` settings: their pair ([`configured_kcp_credentials`]) and
    /// `KCP_GROUP_ID`.
    fn configured(
        config: &Config,
        (site_cd, cert, key, pass): (String, String, String, SecretString),
        test_mode: bool,
    ) -> Self {
        Seed {
            site_cd,
            cert,
            key,
            pass,
            group_id: config.kcp.group_id.clone(),
            test_mode,
        }
    }
}

/// The merchant of the `KCP_*` settings: live, or in test mode one on the operator's own KCP
/// site. Its credentials file is written before the merchant is stored, so a directory openport
/// cannot write to stops the start with nothing made, rather than leaving a merchant whose
/// secret nobody has.
async fn seeded_merchant(
    gateway: &Gateway,
    credentials_dir: &Path,
    Seed {
        site_cd,
        cert,
        key,
        pass,
        group_id,
        test_mode,
    }: Seed,
) -> anyhow::Result<FirstMerchant> {
    let (imp_code, imp_key, imp_secret) = fresh_credentials();
    let path = credentials_dir.join(format!("openport-credentials-{imp_code}.txt"));
    write_credentials(&path, &imp_code, &imp_key, &imp_secret, &site_cd).with_context(|| {
        format!(
            "write the first merchant's credentials to {} (run `openport serve` from a directory \
             it may write to, or create the merchant with `openport merchant create`)",
            path.display()
        )
    })?;
    let created = gateway
        .create_merchant(NewMerchant {
            name: format!("KCP {site_cd}"),
            site_cd,
            certificate_pem: cert,
            private_key_pem: key,
            private_key_passphrase: pass,
            test_mode,
            credentials: Some((imp_code, imp_key, imp_secret)),
            kcp_api_base: None,
            kcp_group_id: group_id,
        })
        .await;
    match created {
        Ok(created) => {
            tracing::warn!(
                imp_code = %created.merchant.imp_code,
                file = %path.display(),
                "merchant created from KCP_SITE_CD: its imp_secret is in this file only; copy it to your secret store, then delete the file"
            );
            Ok(FirstMerchant {
                created,
                credentials_file: Some(path),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(anyhow::anyhow!("merchant from KCP_SITE_CD: {e}"))
        }
    }
}

/// Writes the credentials to a new file that only this user may read (0600 on Unix). Never over
/// an existing file.
fn write_credentials(
    path: &Path,
    imp_code: &str,
    imp_key: &str,
    imp_secret: &str,
    site_cd: &str,
) -> std::io::Result<()> {
    let mut file = crate::private_file::create(path, false)?;
    write!(
        file,
        "# openport: the iamport credentials of the merchant made from KCP_SITE_CD at its first start.\n\
         # openport keeps only a hash of the imp_secret: copy it to your secret store, then delete this file.\n\
         imp_code={imp_code}\n\
         imp_key={imp_key}\n\
         imp_secret={imp_secret}\n\
         site_cd={site_cd}\n"
    )?;
    file.sync_all()
}

/// Outside test mode, with live merchants (`live`) already there, the seed's `KCP_*` settings make
/// no merchant and change none. An operator who renewed the certificate and put the new one there
/// (or mistyped a path, or changed the passphrase) expected them to apply, and nothing said they
/// did not: each disagreement is logged at WARN, naming the setting and `openport merchant
/// set-kcp-cert`, the way to install a certificate and key:
/// - the key does not load: `KCP_PRIVATE_KEY_PATH` cannot be read, or the pair does not load as
///   `merchant create` loads one (wrong `KCP_PRIVATE_KEY_PASSWORD`, a key not the certificate's,
///   a certificate of another site);
/// - `KCP_CERT_INFO` is not the certificate of a live merchant of `KCP_SITE_CD` (of any, when
///   none has that site).
///
/// Only the reasons are logged (paths, imp_codes, site codes, the loader's error), never key
/// material or the passphrase.
fn warn_of_seed_not_applied(config: &Config, live: &[&merchant::Model]) {
    let (Some(site_cd), Some(cert), Some(key_path)) = (
        &config.kcp.site_cd,
        &config.kcp.cert_info,
        &config.kcp.private_key_path,
    ) else {
        return;
    };
    let of_site: Vec<&merchant::Model> = live
        .iter()
        .copied()
        .filter(|m| m.site_cd == *site_cd)
        .collect();
    let candidates = if of_site.is_empty() {
        live
    } else {
        &of_site[..]
    };
    let imp_codes = candidates
        .iter()
        .map(|m| m.imp_code.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let imp_code = candidates.first().map_or("CODE", |m| m.imp_code.as_str());
    let how = format!(
        "the KCP_* settings make the first live merchant only, and change no existing one: to \
         install a renewed certificate and key, run `openport merchant set-kcp-cert --imp-code \
         {imp_code} --cert FILE --key FILE` (its passphrase in KCP_PRIVATE_KEY_PASSWORD), then \
         make KCP_* name that pair or unset them"
    );
    let pass = config
        .kcp
        .private_key_password
        .clone()
        .unwrap_or_else(|| SecretString::from(""));
    match std::fs::read_to_string(key_path) {
        Err(e) => tracing::warn!(
            imp_codes = %imp_codes,
            "KCP_PRIVATE_KEY_PATH {key_path} cannot be read ({e}); it is not used: {how}"
        ),
        Ok(key) => {
            let urls = crate::pg::kcp::KcpUrls::production();
            if let Err(e) = usable_kcp_pair(site_cd, cert, &key, &pass, urls) {
                tracing::warn!(
                    imp_codes = %imp_codes,
                    "KCP_SITE_CD, KCP_CERT_INFO, KCP_PRIVATE_KEY_PATH ({key_path}) and KCP_PRIVATE_KEY_PASSWORD do not load as a KCP certificate and key ({e}); they are not used: {how}"
                );
            }
        }
    }
    let seed_cert = certificate_facts(cert).map(|f| f.cert_info).ok();
    let is_stored = candidates.iter().any(|m| {
        certificate_facts(&m.kcp_certificate_pem)
            .is_ok_and(|f| Some(&f.cert_info) == seed_cert.as_ref())
    });
    if !is_stored {
        let which = if of_site.is_empty() {
            format!("no live merchant has site KCP_SITE_CD {site_cd} (live: {imp_codes})")
        } else {
            format!("it is not the certificate of live merchant {imp_codes} (site {site_cd})")
        };
        tracing::warn!(
            imp_codes = %imp_codes,
            "KCP_CERT_INFO is not applied: {which}; {how}"
        );
    }
}

/// The seed's single-merchant KCP settings (`KCP_SITE_CD`, `KCP_CERT_INFO`, the key read from
/// `KCP_PRIVATE_KEY_PATH`, `KCP_PRIVATE_KEY_PASSWORD`) when all three are given.
fn configured_kcp_credentials(
    config: &Config,
) -> anyhow::Result<Option<(String, String, String, SecretString)>> {
    let (Some(site_cd), Some(cert), Some(key_path)) = (
        &config.kcp.site_cd,
        &config.kcp.cert_info,
        &config.kcp.private_key_path,
    ) else {
        return Ok(None);
    };
    let key = std::fs::read_to_string(key_path).with_context(|| format!("read {key_path}"))?;
    let pass = config
        .kcp
        .private_key_password
        .clone()
        .unwrap_or_else(|| SecretString::from(""));
    Ok(Some((site_cd.clone(), cert.clone(), key, pass)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_file_is_new_and_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.txt");
        write_credentials(&path, "imp12345678", "1234567890123456", "s3cret", "A0001").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("imp_secret=s3cret\n"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            write_credentials(&path, "imp1", "k", "other", "A0001").is_err(),
            "never over an existing file"
        );
        assert!(std::fs::read_to_string(&path).unwrap().contains("s3cret"));
    }

    /// Only a pair the sandbox CA did not issue, for a site that is not one of KCP's public test
    /// sites, is the operator's own: the demo merchant may still take the others.
    #[test]
    fn a_kcp_pair_is_the_operators_own_unless_the_sandbox_ca_issued_it_or_its_site_is_public() {
        let sandbox = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).unwrap();
        let issued = sandbox.issue_certificate("AB123", "changeit").unwrap();
        let one_line: String = issued.certificate_pem.lines().collect();
        assert!(!is_own_kcp_pair("AB123", &issued.certificate_pem));
        assert!(!is_own_kcp_pair("AB123", &one_line));
        let kcps = include_str!("../../tests/fixtures/kcp/splCert.pem");
        assert!(is_own_kcp_pair("AB123", kcps));
        assert!(!is_own_kcp_pair("T0000", kcps));
        assert!(!is_own_kcp_pair("t0007", kcps));
        assert!(is_own_kcp_pair("AB123", "not a certificate"));
    }
}
