//! The sandbox's state file (docs/sandbox.md §7): what KCP remembers across a restart of the
//! process that embeds the sandbox — the ledger, the batch keys, the Benepia balances, the issued
//! virtual accounts with their deposits and notifications, escrow approvals and their shipping
//! starts. Real KCP never forgets an approval; a sandbox that did would refuse the cancels, charges
//! and deposits its gateway's database still expects to make.
//!
//! Not kept: fault rules, registered window trades and window results (windows in progress), the
//! CA's certificates (the CA itself is committed). Card data stays as the books hold it: masked
//! numbers only, and a batch key's HMAC under the pepper kept beside the file
//! ([`crate::pepper`]), never the key.
//!
//! Writing: every guard of a kept book marks the state changed when the book is borrowed mutably
//! ([`Tracked`]), so no path that changes a book can forget to. A background thread writes a
//! snapshot when something changed, at most every [`DEBOUNCE`], to a temporary file in the same
//! directory, fsynced, then renamed over the old file (and the directory fsynced): a crash leaves
//! the old state or the new one, never half of one. [`crate::Sandbox::persist_now`] writes at once
//! (a gateway's graceful shutdown); a sandbox dropped with changes unwritten writes them too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{self, BatchKeyBook};
use crate::ledger::{Ledger, LedgerEntry};
use crate::notify::{self, NotifyBook};
use crate::pepper::Pepper;
use crate::point::{PointAccount, PointBook};
use crate::window::{self, WindowBook};
use crate::Shared;

/// What the file's `format` field says: a file of something else is refused, not overwritten.
const FORMAT: &str = "openport-kcp-sandbox-state";
/// The version of the file's layout this sandbox writes. Version 2 keeps batch keys by their HMAC
/// (`key_hmac`); version 1, which it also reads, kept them by their plain SHA-256 (`key_sha256`),
/// re-keyed as each key is presented again. A file of any other version is refused: reading it as
/// this one could drop approvals without a word.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this sandbox reads.
const OLDEST_VERSION: u32 = 1;
/// The least time between two writes: a burst of payments is one write, not one per payment.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The pause after a failed write (full disk, directory gone) before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The head of a state file, read first so that another version is named as such rather than
/// reported as whatever field it lacks.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

/// A state file. Every map in it is ordered, so an unchanged sandbox writes the same bytes.
#[derive(Serialize, Deserialize)]
struct Books {
    format: String,
    version: u32,
    /// Approvals in approval order, with their cancels.
    ledger: Vec<LedgerEntry>,
    /// Batch keys in issuance order: HMAC (or, from version 1, SHA-256) and masked card, never
    /// the key.
    batch_keys: Vec<batch::KeptKey>,
    /// Benepia balances (no passwords).
    points: Vec<PointAccount>,
    /// Issued virtual accounts and escrow approvals.
    windows: window::KeptWindows,
    /// Notification URLs, deposits and notifications.
    notifications: notify::KeptNotifications,
}

/// The books a sandbox starts with: empty (and the test balances), or a state file's.
#[derive(Default)]
pub(crate) struct Restored {
    pub ledger: Ledger,
    pub batch_keys: BatchKeyBook,
    pub points: PointBook,
    pub windows: WindowBook,
    pub notify: NotifyBook,
}

/// Reads the state file at `path` and its pepper ([`Pepper::for_state_file`]); whether there was
/// a state file. None yet: empty books, whose keys are found with the pepper beside it (made now if
/// there is none). Anything else that is not a state file of a version this sandbox reads is an
/// error naming the file: starting empty instead would forget what the gateway's database
/// remembers.
pub(crate) fn load(path: &Path) -> anyhow::Result<(Restored, bool)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let restored = Restored {
                batch_keys: BatchKeyBook::new(Pepper::for_state_file(path, false)?),
                ..Restored::default()
            };
            return Ok((restored, false));
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot read the KCP sandbox state file {}", path.display())
            })
        }
    };
    let refused = |why: String| {
        anyhow!(
            "KCP sandbox state file {}: {why}; move it away to start with an empty sandbox \
             (which forgets every approval, batch key and virtual account in it)",
            path.display()
        )
    };
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| refused(format!("not a KCP sandbox state file ({e})")))?;
    if header.format != FORMAT {
        return Err(refused(format!(
            "format {:?} is not {FORMAT:?}",
            header.format
        )));
    }
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return Err(refused(format!(
            "format version {} (this sandbox reads versions {OLDEST_VERSION} to {FORMAT_VERSION})",
            header.version
        )));
    }
    let books: Books = serde_json::from_slice(&bytes).map_err(|e| refused(e.to_string()))?;
    let pepper = Pepper::for_state_file(path, BatchKeyBook::needs_pepper(&books.batch_keys))?;
    let restored = Restored {
        ledger: Ledger::restore(books.ledger).map_err(refused)?,
        batch_keys: BatchKeyBook::restore(books.batch_keys, pepper).map_err(refused)?,
        points: PointBook::restore(&books.points).map_err(refused)?,
        windows: WindowBook::restore(books.windows),
        notify: NotifyBook::restore(books.notifications),
    };
    Ok((restored, true))
}

/// Where a sandbox writes its state, and what it wrote last.
pub(crate) struct StateFile {
    pub path: PathBuf,
    /// SHA-256 of the bytes last written, to skip a write that would change nothing. Held while a
    /// snapshot is taken and written, so snapshots reach the file in the order they were taken.
    written: Mutex<Option<[u8; 32]>>,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: Mutex::new(None),
        }
    }
}

/// Tells the writer that a kept book changed, and the writer that the sandbox is gone.
#[derive(Default)]
pub(crate) struct Changes {
    /// Whether a state file listens: without one, marking costs a branch.
    enabled: bool,
    dirty: AtomicBool,
    /// Set when the sandbox is dropped: the writer stops.
    closed: Mutex<bool>,
    wake: Condvar,
}

impl Changes {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    pub fn mark(&self) {
        if self.enabled && !self.dirty.swap(true, Ordering::AcqRel) {
            // Taken so that the writer is either before its check or waiting: never a lost wake.
            let _closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_one();
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    fn take(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    pub fn close(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_one();
    }

    /// Waits until something changed (true) or the sandbox is gone (false).
    fn wait(&self) -> bool {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *closed {
                return false;
            }
            if self.is_dirty() {
                return true;
            }
            closed = self
                .wake
                .wait(closed)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A lock on a kept book: borrowing the book mutably marks the state changed. Marking before the
/// change is made is enough: the writer needs this lock for its snapshot, so it sees the change.
pub(crate) struct Tracked<'a, T> {
    guard: MutexGuard<'a, T>,
    changes: &'a Changes,
}

impl<'a, T> Tracked<'a, T> {
    pub fn lock(book: &'a Mutex<T>, changes: &'a Changes) -> Self {
        Self {
            guard: book.lock().unwrap_or_else(PoisonError::into_inner),
            changes,
        }
    }
}

impl<T> Deref for Tracked<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Tracked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.changes.mark();
        &mut self.guard
    }
}

/// Writes the books to the state file now, if there is one and they differ from what was written
/// last. On failure the state stays marked changed, so the writer tries again.
pub(crate) fn persist(shared: &Shared) -> anyhow::Result<()> {
    let Some(file) = &shared.state_file else {
        return Ok(());
    };
    let mut written = file.written.lock().unwrap_or_else(PoisonError::into_inner);
    shared.changes.take();
    let bytes = serde_json::to_vec_pretty(&snapshot(shared))
        .context("KCP sandbox state could not be serialised")?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if *written == Some(digest) {
        return Ok(());
    }
    if let Err(e) = write_atomically(&file.path, &bytes) {
        shared.changes.mark();
        return Err(e).with_context(|| {
            format!(
                "cannot write the KCP sandbox state file {}",
                file.path.display()
            )
        });
    }
    *written = Some(digest);
    Ok(())
}

/// Every kept book at one instant: all the locks are held together, taken in the sandbox's lock
/// order (batch keys, ledger, points, windows, notifications), so no change is half in it.
fn snapshot(shared: &Shared) -> Books {
    let batch_keys = shared.batch_keys();
    let ledger = shared.ledger();
    let points = shared.points();
    let windows = shared.windows();
    let notify = shared.notify();
    Books {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        ledger: ledger.snapshot(),
        batch_keys: batch_keys.kept(),
        points: points.snapshot(),
        windows: windows.kept(),
        notifications: notify.kept(),
    }
}

/// Starts the thread that writes the state after changes. It holds the sandbox weakly and stops
/// once the sandbox is dropped.
pub(crate) fn spawn_writer(shared: &Arc<Shared>) -> io::Result<()> {
    let changes = shared.changes.clone();
    let sandbox = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("kcp-sandbox-state".into())
        .spawn(move || {
            while changes.wait() {
                let Some(shared) = sandbox.upgrade() else {
                    return;
                };
                let pause = match persist(&shared) {
                    Ok(()) => DEBOUNCE,
                    Err(error) => {
                        tracing::error!("{error:#}");
                        RETRY
                    }
                };
                drop(shared);
                std::thread::sleep(pause);
            }
        })?;
    Ok(())
}

/// Replaces `path` with `bytes`: a temporary file in the same directory (readable by its owner
/// only: it holds batch-key digests, or their pepper), fsynced, renamed over `path`, then the
/// directory fsynced so that the rename itself survives a crash.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let temporary = dir.join(format!(
        ".{}.{}-{:08x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut file = create_private(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        sync_directory(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(unix)]
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::escrow::{self, EscrowShipment};
    use crate::{window, Sandbox, SandboxConfig};

    #[test]
    fn virtual_accounts_and_escrow_approvals_with_their_shipment_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let config = || SandboxConfig {
            state_file: Some(path.clone()),
            ..SandboxConfig::default()
        };
        let before = Sandbox::new(config()).unwrap();
        window::open_vbank_account(
            &before.shared,
            "20260310000001",
            "BK07",
            "홍길동",
            window::DEFAULT_DEPOSITOR,
            "홍길동",
            "20260317235959",
        );
        escrow::open(&before.shared, "20260310000002");
        before.shared.windows().escrow.insert(
            "20260310000003".into(),
            Some(EscrowShipment {
                tno: "20260310000003".into(),
                deli_corp: "CJ대한통운".into(),
                deli_numb: "1234567890".into(),
                registered_at: "20260310120000".into(),
            }),
        );
        before.persist_now().unwrap();

        let after = Sandbox::new(config()).unwrap();

        let kept = after.shared.windows().kept();
        assert_eq!(kept, before.shared.windows().kept());
        assert_eq!(kept.virtual_accounts.len(), 1);
        assert_eq!(kept.escrow.len(), 2);
    }
}
