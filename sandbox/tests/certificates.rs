//! The issued key and certificate must be readable by standard tooling, not only by the sandbox:
//! openssl is the referee.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kcp-sandbox-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to run this test")
}

#[test]
fn openssl_decrypts_the_issued_key_with_the_passphrase_and_it_matches_the_certificate() {
    let issued = &merchant(SITE).issued;
    let dir = scratch_dir("key");
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    std::fs::write(&key, &issued.encrypted_private_key_pem).unwrap();
    std::fs::write(&cert, &issued.certificate_pem).unwrap();

    let dump = openssl(&["asn1parse", "-in", key.to_str().unwrap()]);
    let decrypted = openssl(&[
        "pkcs8",
        "-in",
        key.to_str().unwrap(),
        "-passin",
        &format!("pass:{PASSPHRASE}"),
    ]);
    let wrong = openssl(&[
        "pkcs8",
        "-in",
        key.to_str().unwrap(),
        "-passin",
        "pass:nope",
    ]);
    let key_modulus = openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-passin",
        &format!("pass:{PASSPHRASE}"),
        "-noout",
        "-modulus",
    ]);
    let cert_modulus = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-modulus"]);
    std::fs::remove_dir_all(&dir).ok();

    assert!(issued
        .encrypted_private_key_pem
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{dump}");
    assert!(dump.contains(":0800"), "2048 iterations expected: {dump}");
    assert!(
        decrypted.status.success(),
        "{}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    assert!(String::from_utf8_lossy(&decrypted.stdout).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!wrong.status.success());
    assert!(key_modulus.status.success());
    assert_eq!(key_modulus.stdout, cert_modulus.stdout);
}

#[test]
fn openssl_verifies_the_certificate_against_the_sandbox_ca_with_cn_site_cd() {
    let issued = &merchant(SITE).issued;
    let dir = scratch_dir("cert");
    let cert = dir.join("cert.pem");
    let ca = dir.join("ca.pem");
    std::fs::write(&cert, &issued.certificate_pem).unwrap();
    std::fs::write(&ca, include_str!("../ca/ca-cert.pem")).unwrap();

    let verify = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    let text = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-enddate",
    ]);
    std::fs::remove_dir_all(&dir).ok();

    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CN = T0000"), "{text}");
    assert!(text.contains("O = openport KCP sandbox"), "{text}");
    assert!(
        issued.certificate_pem.lines().count() > 3,
        "multi-line PEM expected"
    );
}

#[test]
fn an_invalid_site_cd_gets_no_certificate() {
    let sandbox = kcp_sandbox::Sandbox::new(Default::default()).unwrap();
    assert!(sandbox
        .issue_certificate("T0000,O=evil", PASSPHRASE)
        .is_err());
    assert!(sandbox.issue_certificate("", PASSPHRASE).is_err());
}

#[test]
fn the_key_file_reader_also_reads_kcps_own_public_test_key() {
    // KCP's real file (spec/kcp.md §3) is the shape the sandbox imitates; reading it proves the
    // sandbox's KDF, cipher and DER layout are KCP's, not merely self-consistent.
    let pem = include_str!("fixtures/kcp-public-test-key.pem");
    let der = kcp_sandbox::keyfile::decrypt_private_key_pem(pem, "changeit").unwrap();
    let key = RsaPrivateKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(key.size(), 256);
}
