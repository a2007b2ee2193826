//! The secret a batch key's lookup digest is keyed with (docs/sandbox.md §7).
//!
//! A key is KST `yyMMdd` and 10 random digits, and its date is in the same record, so a plain
//! SHA-256 of it in the state file could be reversed by trying all 10^10 keys (minutes on a CPU).
//! The book finds a key by `HMAC-SHA256(pepper, key)` instead, with 32 random bytes kept apart from
//! the state file: the file alone gives nothing to search. With a state file, the pepper is the
//! sibling `<state file stem>.key` (hex, created `0600` with the state); in memory it is random.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The pepper's length in bytes.
const LEN: usize = 32;

/// 32 random bytes a batch key's digest is keyed with.
pub(crate) struct Pepper([u8; LEN]);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl Default for Pepper {
    /// A fresh random pepper, as an in-memory sandbox uses.
    fn default() -> Self {
        let mut bytes = [0u8; LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl Pepper {
    /// `HMAC-SHA256(pepper, batch_key)` in hex: how the book finds a key.
    pub fn digest(&self, batch_key: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(batch_key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The pepper of the state file `state_file`, read from [`path_for`] it. When that file does not
    /// exist, a new pepper is written to it, unless `needed` (the state keeps keys by their HMAC):
    /// a new pepper would find none of them, so that is an error naming both files.
    pub fn for_state_file(state_file: &Path, needed: bool) -> anyhow::Result<Self> {
        let path = path_for(state_file);
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).ok_or_else(|| {
                anyhow!("KCP sandbox key file {}: not 64 hex digits", path.display())
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !needed => {
                let pepper = Self::default();
                crate::state::write_atomically(
                    &path,
                    format!("{}\n", hex::encode(pepper.0)).as_bytes(),
                )
                .with_context(|| {
                    format!("cannot write the KCP sandbox key file {}", path.display())
                })?;
                Ok(pepper)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(anyhow!(
                "KCP sandbox key file {} is missing: the batch keys in {} are found by their HMAC \
                 under it; put it back, or move both files away to start with an empty sandbox",
                path.display(),
                state_file.display()
            )),
            Err(e) => Err(e).with_context(|| {
                format!("cannot read the KCP sandbox key file {}", path.display())
            }),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

/// Where the pepper of the state file `state_file` is kept: beside it, its extension replaced by
/// `key` (`openport-kcp-sandbox.json` → `openport-kcp-sandbox.key`); `.key` appended to a state file
/// that is itself named `*.key`.
pub(crate) fn path_for(state_file: &Path) -> PathBuf {
    let path = state_file.with_extension("key");
    if path == state_file {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".key");
        return PathBuf::from(name);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_the_state_file_and_never_is_it() {
        assert_eq!(
            path_for(Path::new("/var/lib/openport/openport-kcp-sandbox.json")),
            Path::new("/var/lib/openport/openport-kcp-sandbox.key")
        );
        assert_eq!(path_for(Path::new("state")), Path::new("state.key"));
        assert_eq!(
            path_for(Path::new("a/state.key")),
            Path::new("a/state.key.key")
        );
    }

    #[test]
    fn a_key_file_is_created_once_readable_by_its_owner_only_and_read_back_alike() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("kcp-sandbox.json");

        let first = Pepper::for_state_file(&state, false).unwrap();
        let again = Pepper::for_state_file(&state, true).unwrap();

        assert_eq!(
            first.digest("2612062504492641"),
            again.digest("2612062504492641")
        );
        assert_ne!(
            first.digest("2612062504492641"),
            Pepper::default().digest("2612062504492641"),
            "another pepper, another digest"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path_for(&state)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
    }

    #[test]
    fn a_missing_key_file_that_the_state_needs_or_a_malformed_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("kcp-sandbox.json");
        let key = path_for(&state);

        let missing = Pepper::for_state_file(&state, true)
            .unwrap_err()
            .to_string();
        assert!(missing.contains(&key.display().to_string()), "{missing}");
        assert!(!key.exists(), "no new pepper made for keys it cannot find");

        fs::write(&key, "not hex").unwrap();
        let malformed = Pepper::for_state_file(&state, false)
            .unwrap_err()
            .to_string();
        assert!(
            malformed.contains(&key.display().to_string()),
            "{malformed}"
        );
        assert_eq!(
            fs::read_to_string(&key).unwrap(),
            "not hex",
            "left as it was"
        );
    }
}
