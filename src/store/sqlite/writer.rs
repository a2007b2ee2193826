//! The one SQLite writer connection: real transactions, committed in groups (see the module doc of
//! `store::sqlite`).
//!
//! **Ownership.** A transaction owns the connection from `begin` until it commits or rolls back;
//! other writers wait on an async lock (never on SQLite's busy handler). Its statements run inline
//! on the task: until the commit they only touch SQLite's page cache.
//!
//! **Group commit.** A durable commit costs an fsync of the WAL (≈ 0.3 ms on the benchmark machine),
//! and every payment commits twice, so one fsync per transaction capped a single writer at
//! ≈ 1,600 payments/s however little else it did. Each transaction therefore runs inside a
//! `SAVEPOINT` of an outer SQLite transaction that several of them share:
//!
//! - `commit` releases the savepoint (the changes join the outer transaction) and then either
//!   commits the outer transaction at once, when no other writer is queued, or leaves it open for
//!   the queued writers and waits for it. The waiting committer queues for the lock again behind
//!   them, and whoever holds the lock when the last of them is through commits the outer
//!   transaction: one fsync for the group.
//! - `commit` returns only once the outer `COMMIT` is durable, with its result: a failed outer
//!   commit fails every transaction of the group, and none of their callers has acted on a
//!   success. Other connections (the readers) see nothing of a group before its `COMMIT`.
//! - A transaction of the group sees the changes of the earlier ones (released, not yet durable);
//!   if the group fails, they fail together.
//! - Rollback (explicit or by dropping the transaction) undoes its savepoint only; the outer
//!   transaction is closed at once if nobody waits for it, so the write lock is not kept idle.
//!   An explicit rollback (and a handed-over transaction that decides to roll back) still answers
//!   only with the group's outcome when earlier transactions of the group wait for it: what it
//!   read and acted on (a payment found, say) may be one of theirs, which is not there if the
//!   group fails.
//! - A committer that stops waiting (its request was dropped) leaves a task behind that commits
//!   the group unless another holder of the lock does, so the write lock is never left held by a
//!   group nobody will end.
//! - Statements outside a transaction run as one-statement transactions.
//!
//! The outer `COMMIT` runs on the blocking pool, so a slow disk stalls no async worker; so does the
//! outer `BEGIN IMMEDIATE` when another process holds the write lock (`State::open_outer_now`).
//!
//! **Transactions handed over whole** ([`SqliteWriter::transact`]). A transaction that only runs
//! statements (the two of every payment) need not own the connection itself: it is queued as a
//! job, and one combiner on the blocking pool runs the queued jobs back to back, each in its own
//! savepoint, commits them as a group and answers each caller. With `begin`, the lock passed from
//! task to task once per transaction, and each hand-over waited for the next holder to be
//! scheduled (≈ 40 µs at c16, a third of the writer's time: docs/performance.md); the combiner
//! hands over once per group. Its jobs and `begin`'s transactions share the connection under the
//! same lock and the same group commits.
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt};
use rusqlite::{Connection, ErrorCode};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, ProxyExecResult, QueryResult, Statement,
};
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::{execute, open, query, sqlite_error};
use crate::store::{Decided, Within};

/// At most this many transactions share one outer commit, which bounds how long the first waits.
const MAX_GROUP: usize = 64;

/// The WAL is copied back into the database file (a checkpoint, run inside the `COMMIT` that
/// crosses the mark, with the writer held) once it holds this many pages: 80 MB of 4 KiB pages,
/// against SQLite's default of 1,000. A payment rewrites the same hot pages (the newest table and
/// index leaves) again and again, and a checkpoint copies each page once however often it was
/// rewritten, so rarer checkpoints do less work in all: +10–13 % SQLite `onetime` at c16 with the
/// p99 unchanged (docs/performance.md). The price is a WAL file of up to ≈ 80 MB and a longer
/// (rarer) checkpoint stall on a large database.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// How often the writer retries, and for how long, when another process holds the write lock
/// (several openport processes on one SQLite file, or a CLI command beside a server).
const BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(200);
const BUSY_TRIES: i32 = 50_000; // ≈ 10 s, as `BUSY_TIMEOUT`

/// SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries; a busy writer's outer
/// transactions leave the lock free only for moments, so a process polling that slowly would
/// hardly ever get it. Polling every 200 µs shares the file fairly.
fn busy(tries: i32) -> bool {
    if tries >= BUSY_TRIES {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// One transaction released into the open outer transaction, told the group's outcome.
enum Member {
    /// A `begin` transaction's committer, waiting for the outcome.
    Committer(oneshot::Sender<Result<(), String>>),
    /// A job's answer (`SqliteWriter::transact`), held until the group is durable.
    Job(Box<dyn FnOnce(Result<(), String>) + Send>),
}

impl Member {
    /// A committer whose request was dropped will never commit the group itself.
    fn gave_up(&self) -> bool {
        match self {
            Member::Committer(tx) => tx.is_closed(),
            Member::Job(_) => false,
        }
    }

    fn tell(self, outcome: Result<(), String>) {
        match self {
            Member::Committer(tx) => {
                let _ = tx.send(outcome);
            }
            Member::Job(answer) => answer(outcome),
        }
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Member::Committer(_) => "Committer",
            Member::Job(_) => "Job",
        })
    }
}

/// The connection and the outer transaction's bookkeeping.
#[derive(Debug)]
struct State {
    conn: Connection,
    /// Number of the outer transaction while one is open.
    open: Option<u64>,
    next_group: u64,
    /// Transactions released into the open outer transaction, told its outcome when it ends.
    waiting: Vec<Member>,
}

impl State {
    /// True when a transaction must first open the outer transaction (see `SqliteWriter::begin`).
    fn needs_outer(&mut self) -> bool {
        if self.open.is_some() && self.conn.is_autocommit() {
            // SQLite ended the outer transaction by itself (some errors roll back the whole
            // transaction): whatever the group released is gone.
            self.end_group(Err("the transaction was rolled back by SQLite".into()));
        }
        self.open.is_none()
    }

    /// Opens the outer transaction if no other process holds the write lock, without waiting:
    /// false when one does. Almost always the lock is free, and then this costs a few µs where a
    /// trip to the blocking pool and back costs 100–140 µs, with this writer held all along (once
    /// per group: 8–17 % of `onetime` payments per second on SQLite, docs/performance.md).
    fn open_outer_now(&mut self) -> Result<bool, DbErr> {
        self.conn.busy_handler(None).map_err(sqlite_error)?;
        let begun = match self.conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                self.opened();
                Ok(true)
            }
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DatabaseBusy => {
                Ok(false)
            }
            Err(e) => Err(sqlite_error(e)),
        };
        // Recorded as open before this can fail, so that the state matches the connection.
        self.conn.busy_handler(Some(busy)).map_err(sqlite_error)?;
        begun
    }

    /// Opens the outer transaction, waiting for another process that holds the write lock (see
    /// `busy`; so it runs on the blocking pool).
    fn open_outer(&mut self) -> Result<(), DbErr> {
        // IMMEDIATE: take the write lock now instead of failing with SQLITE_BUSY when a read
        // upgrades later.
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_error)?;
        self.opened();
        Ok(())
    }

    fn opened(&mut self) {
        self.open = Some(self.next_group);
        self.next_group += 1;
    }

    /// A savepoint for one transaction in the open outer transaction; returns the group's number.
    fn savepoint(&mut self) -> Result<u64, DbErr> {
        let group = self
            .open
            .ok_or_else(|| DbErr::Custom("no outer transaction".into()))?;
        if let Err(e) = self.conn.execute_batch("SAVEPOINT op") {
            self.close_if_unused();
            return Err(sqlite_error(e));
        }
        Ok(group)
    }

    /// A statement of the current transaction; refused if SQLite ended the outer transaction,
    /// since it would otherwise commit on its own.
    fn in_transaction(&self) -> Result<&Connection, DbErr> {
        if self.conn.is_autocommit() {
            return Err(DbErr::Custom(
                "the transaction was rolled back by SQLite".into(),
            ));
        }
        Ok(&self.conn)
    }

    fn release(&mut self) -> Result<(), DbErr> {
        let released = self
            .in_transaction()
            .and_then(|c| c.execute_batch("RELEASE op").map_err(sqlite_error));
        if released.is_err() {
            self.rollback();
        }
        released
    }

    /// Undoes the current transaction's savepoint and ends the outer transaction if nobody else
    /// will.
    fn rollback(&mut self) {
        self.undo_savepoint();
        if !self.waiting.is_empty() && self.waiting.iter().all(Member::gave_up) {
            // Every committer of the group gave up waiting (their requests were dropped), so
            // none of them would commit it: do it now rather than keep the write lock.
            let _ = self.commit_group();
        } else {
            self.close_if_unused();
        }
    }

    /// Undoes the current transaction's savepoint for a rollback that answers with its group's
    /// outcome (module doc): true when earlier transactions of the group wait for that outcome (the
    /// caller joins them), false when none does and the outer transaction was closed.
    fn undo_in_group(&mut self) -> bool {
        self.undo_savepoint();
        self.close_if_unused();
        !self.waiting.is_empty()
    }

    fn undo_savepoint(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK TO op; RELEASE op;");
        }
    }

    /// Ends an outer transaction nobody waits for (nothing was released into it).
    fn close_if_unused(&mut self) {
        if self.open.is_some() && self.waiting.is_empty() {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.open = None;
        }
    }

    /// Commits the outer transaction and tells every waiting committer.
    fn commit_group(&mut self) -> Result<(), String> {
        let outcome = self
            .conn
            .execute_batch("COMMIT")
            .map_err(|e| format!("sqlite: {e}"));
        if outcome.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.end_group(outcome.clone());
        outcome
    }

    fn end_group(&mut self, outcome: Result<(), String>) {
        self.open = None;
        for member in self.waiting.drain(..) {
            member.tell(outcome.clone());
        }
    }

    /// Ends the combiner's group: commits it if anything was released into it.
    fn finish_group(&mut self) {
        if self.waiting.is_empty() {
            self.close_if_unused();
        } else {
            let _ = self.commit_group();
        }
    }
}

/// `State` behind a lock that is never held across an await (the async lock around it is the
/// transaction's ownership), which also makes it `Sync` for sea-orm.
#[derive(Debug)]
struct Locked(Mutex<State>);

impl Locked {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, DbErr>) -> Result<T, DbErr> {
        let mut state = self
            .0
            .lock()
            .map_err(|_| DbErr::Custom("SQLite writer poisoned".into()))?;
        f(&mut state)
    }

    /// A statement of the transaction that holds the writer (see `State::in_transaction`).
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        self.with(|state| f(state.in_transaction()?))
    }
}

/// The writer as [`SqliteWriter::begin`] holds it while the blocking pool waits for another
/// process's write lock. The blocking task cannot be cancelled: should `begin` be dropped meanwhile
/// (its request gone), the outer transaction the task then opens would hold the file's write lock
/// with no savepoint and nobody to end it, and the other process, the very one `begin` waited for,
/// would meet "database is locked" until this process's next write. Dropped without
/// [`Self::defuse`], it ends that outer transaction.
struct OpeningOuter(Option<OwnedMutexGuard<Locked>>);

impl OpeningOuter {
    fn locked(&self) -> &Locked {
        self.0.as_ref().expect("held until defused")
    }

    fn defuse(mut self) -> OwnedMutexGuard<Locked> {
        self.0.take().expect("held until defused")
    }
}

impl Drop for OpeningOuter {
    fn drop(&mut self) {
        if let Some(guard) = &self.0 {
            let _ = guard.with(|state| {
                state.close_if_unused();
                Ok(())
            });
        }
    }
}

/// A transaction handed over whole ([`SqliteWriter::transact`]), run by the combiner.
type Job = Box<dyn FnOnce(&Locked) + Send>;

struct Shared {
    state: Arc<tokio::sync::Mutex<Locked>>,
    /// Writers waiting for the lock to begin a transaction.
    queued: AtomicUsize,
    /// Jobs waiting for the combiner.
    jobs: Mutex<Vec<Job>>,
    /// A combiner runs (or is about to).
    combining: AtomicBool,
}

impl Shared {
    /// The queue of jobs; a panic while it was held (there is none to expect) loses no job.
    fn jobs(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queued", &self.queued)
            .field("combining", &self.combining)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct SqliteWriter {
    shared: Arc<Shared>,
}

impl SqliteWriter {
    /// The writer of the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, DbErr> {
        let conn = open(path)?;
        conn.busy_handler(Some(busy)).map_err(sqlite_error)?;
        // Durable commits (design.md §2): WAL with synchronous=FULL syncs every commit (with
        // fdatasync: .cargo/config.toml).
        //
        // `temp_store = MEMORY`: every transaction here runs in a savepoint of a group's outer
        // transaction, and SQLite keeps the pages a savepoint changes in a sub-journal that, past
        // 64 KiB, it spills to a new unlinked file in the temporary directory (`/var/tmp`, `/tmp`
        // or the working directory): a file created, written page by page and closed during a
        // payment's write, on the writer's path (seen by strace: one in twelve groups at c16).
        // Where no temporary directory is writable (a read-only root file system in a container)
        // that write would fail, and with it the payment. In memory it is bounded by the pages one
        // transaction changes. The readers keep the default: their sorts may be large.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(sqlite_error)?;
        let state = State {
            conn,
            open: None,
            next_group: 0,
            waiting: vec![],
        };
        Ok(Self {
            shared: Arc::new(Shared {
                state: Arc::new(tokio::sync::Mutex::new(Locked(Mutex::new(state)))),
                queued: AtomicUsize::new(0),
                jobs: Mutex::new(vec![]),
                combining: AtomicBool::new(false),
            }),
        })
    }

    pub async fn begin(&self) -> Result<SqliteTransaction, DbErr> {
        let mut guard = {
            let _queued = Queued::new(&self.shared.queued);
            self.shared.state.clone().lock_owned().await
        };
        if guard.with(|state| Ok(state.needs_outer()))? && !guard.with(State::open_outer_now)? {
            let opening = OpeningOuter(Some(guard));
            guard = tokio::task::spawn_blocking(move || {
                opening.locked().with(State::open_outer).map(|()| opening)
            })
            .await
            .map_err(|e| DbErr::Custom(format!("SQLite writer task: {e}")))??
            .defuse();
        }
        let group = guard.with(State::savepoint)?;
        Ok(SqliteTransaction {
            guard: Some(guard),
            group,
            shared: self.shared.clone(),
        })
    }

    /// Runs `work`, a transaction that does nothing but run statements on the connection it is
    /// given, as a job of the combiner (module doc), and answers once its changes are durable
    /// (`Decided::Commit`) or undone (`Decided::Rollback`, or an error). Its statements run on the
    /// blocking pool, so `work` must not await anything else: if it does, it fails.
    pub async fn transact<T, F>(&self, work: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Within<'c>) -> BoxFuture<'c, Result<Decided<T>, DbErr>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, DbErr>>();
        let job: Job = Box::new(move |locked: &Locked| {
            if tx.is_closed() {
                // Its caller gave up waiting: nobody would learn what it did.
                return;
            }
            let begun = locked.with(|state| {
                if state.needs_outer() {
                    state.open_outer()?;
                }
                state.savepoint()
            });
            if let Err(e) = begun {
                let _ = tx.send(Err(e));
                return;
            }
            let conn = JobConnection(locked);
            let decided = work(Within(&conn)).now_or_never().unwrap_or_else(|| {
                Err(DbErr::Custom(
                    "a transaction handed to the SQLite writer awaited more than its statements"
                        .into(),
                ))
            });
            let undone = |state: &mut State| {
                state.rollback();
                Ok(())
            };
            let answer = match decided {
                Ok(Decided::Commit(value)) => match locked.with(State::release) {
                    Ok(()) => {
                        // Answered with the group's outcome, once its COMMIT is through.
                        let _ = locked.with(|state| {
                            state.waiting.push(Member::Job(Box::new(move |group| {
                                let _ = tx.send(group.map(|()| value).map_err(DbErr::Custom));
                            })));
                            Ok(())
                        });
                        return;
                    }
                    // `release` rolled the savepoint back.
                    Err(e) => Err(e),
                },
                Ok(Decided::Rollback(value)) => {
                    let waits = locked.with(|state| Ok(state.undo_in_group()));
                    match waits {
                        Ok(true) => {
                            // It may have acted on what the group's earlier transactions wrote:
                            // answered with the group's outcome (module doc).
                            let _ = locked.with(|state| {
                                state.waiting.push(Member::Job(Box::new(move |group| {
                                    let _ = tx.send(group.map(|()| value).map_err(DbErr::Custom));
                                })));
                                Ok(())
                            });
                            return;
                        }
                        Ok(false) => Ok(value),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => locked.with(undone).and(Err(e)),
            };
            let _ = tx.send(answer);
        });
        self.shared.jobs().push(job);
        if !self.shared.combining.swap(true, Ordering::SeqCst) {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || combine(&shared));
        }
        rx.await.unwrap_or_else(|_| {
            Err(DbErr::Custom(
                "SQLite writer stopped before answering".into(),
            ))
        })
    }

    /// A statement outside a transaction, as a transaction of its own.
    async fn single<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        let txn = self.begin().await?;
        let out = txn.run(f)?;
        txn.commit().await?;
        Ok(out)
    }
}

/// Counts a writer queued for the lock, also when its wait is abandoned.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for SqliteWriter {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.single(|c| execute(c, &stmt))
            .await
            .map(ExecResult::from)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.single(|c| {
            c.execute_batch(sql).map_err(sqlite_error)?;
            Ok(ProxyExecResult::new(0, c.changes()))
        })
        .await
        .map(ExecResult::from)
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let rows = self.single(|c| query(c, &stmt)).await?;
        Ok(rows.into_iter().next().map(QueryResult::from))
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let rows = self.single(|c| query(c, &stmt)).await?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

/// An open transaction on the writer; see the module doc.
#[derive(Debug)]
pub struct SqliteTransaction {
    /// `None` once committed or rolled back.
    guard: Option<OwnedMutexGuard<Locked>>,
    group: u64,
    shared: Arc<Shared>,
}

impl SqliteTransaction {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        self.guard
            .as_deref()
            .ok_or_else(|| DbErr::Custom("transaction already finished".into()))?
            .run(f)
    }

    /// Returns once the transaction is durable (or failed): see "Group commit" in the module doc.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        let guard = self
            .guard
            .take()
            .ok_or_else(|| DbErr::Custom("transaction already finished".into()))?;
        let (tx, rx) = oneshot::channel();
        guard.with(|state| {
            state.release()?;
            state.waiting.push(Member::Committer(tx));
            Ok(())
        })?;
        self.wait_for_group(guard, rx).await
    }

    /// Undoes this transaction; answers once the group it was part of is through when earlier
    /// transactions of the group wait for it (module doc), with the group's outcome.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        let waits = guard.with(|state| {
            let waits = state.undo_in_group();
            if waits {
                state.waiting.push(Member::Committer(tx));
            }
            Ok(waits)
        })?;
        if !waits {
            return Ok(());
        }
        self.wait_for_group(guard, rx).await
    }

    /// Commits the group now when no other writer is queued (or the group is full); otherwise
    /// leaves it open for them and waits for whoever holds the lock last to commit it, or commits
    /// it itself if the group is still open when the lock comes back.
    async fn wait_for_group(
        &self,
        guard: OwnedMutexGuard<Locked>,
        mut rx: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), DbErr> {
        let now = guard.with(|state| {
            Ok(self.shared.queued.load(Ordering::SeqCst) == 0 || state.waiting.len() >= MAX_GROUP)
        })?;
        if now {
            commit_group(guard).await?;
            return group_outcome(rx.await);
        }
        drop(guard);
        let abandoned = AbandonedGroup(Some((self.shared.clone(), self.group)));
        let outcome = tokio::select! {
            biased;
            outcome = &mut rx => group_outcome(outcome),
            guard = self.shared.state.clone().lock_owned() => {
                let still_open = guard.with(|state| Ok(state.open == Some(self.group)))?;
                if still_open {
                    commit_group(guard).await?;
                }
                group_outcome(rx.await)
            }
        };
        abandoned.defuse();
        outcome
    }

    /// Undoes this transaction's savepoint and gives the writer back (rollback and drop).
    fn undo(&mut self) -> Result<(), DbErr> {
        match self.guard.take() {
            Some(guard) => guard.with(|state| {
                state.rollback();
                Ok(())
            }),
            None => Ok(()),
        }
    }
}

/// A committer's wait for its group ([`SqliteTransaction::wait_for_group`]). Dropped before it is
/// defused (the request was dropped, and with it the wait), it leaves a task that takes the lock
/// and commits the group if it is still open: the committers the group waited for may all have
/// given up, and the writers queued for the lock too, and then nobody would end it and the file's
/// write lock would stay held (another process meeting "database is locked") until this process's
/// next write. Committing is what the committer would have done: every member left is told.
struct AbandonedGroup(Option<(Arc<Shared>, u64)>);

impl AbandonedGroup {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonedGroup {
    fn drop(&mut self) {
        let Some((shared, group)) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let guard = shared.state.clone().lock_owned().await;
            if guard
                .with(|state| Ok(state.open == Some(group)))
                .unwrap_or(false)
            {
                let _ = commit_group(guard).await;
            }
        });
    }
}

/// Commits the open outer transaction on the blocking pool; the lock is held until it is done.
async fn commit_group(guard: OwnedMutexGuard<Locked>) -> Result<(), DbErr> {
    tokio::task::spawn_blocking(move || {
        guard.with(|state| {
            // Every waiter, this committer included, is told the outcome.
            let _ = state.commit_group();
            Ok(())
        })
    })
    .await
    .map_err(|e| DbErr::Custom(format!("SQLite writer task: {e}")))?
}

/// The combiner (module doc): takes the lock and runs the queued jobs in groups of at most
/// `MAX_GROUP`, each group one outer transaction and one `COMMIT`, until none is left; between
/// groups it lets `begin`'s writers have the lock when any waits for it. Runs on the blocking pool.
fn combine(shared: &Shared) {
    loop {
        let guard = shared.state.clone().blocking_lock_owned();
        loop {
            let jobs: Vec<Job> = {
                let mut queue = shared.jobs();
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(&guard))).is_err() {
                    // Halfway through its statements: undo them, as for a dropped transaction.
                    // Its caller hears that the writer stopped before answering.
                    tracing::error!("a transaction handed to the SQLite writer panicked");
                    let _ = guard.with(|state| {
                        state.rollback();
                        Ok(())
                    });
                }
            }
            let _ = guard.with(|state| {
                state.finish_group();
                Ok(())
            });
            if shared.queued.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
        drop(guard);
        shared.combining.store(false, Ordering::SeqCst);
        // A job queued after the last look, by a caller that saw `combining` still set, would
        // otherwise wait for the next caller.
        let more = !shared.jobs().is_empty();
        if !more || shared.combining.swap(true, Ordering::SeqCst) {
            return;
        }
    }
}

fn group_outcome(
    outcome: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), DbErr> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DbErr::Custom(e)),
        Err(_) => Err(DbErr::Custom(
            "SQLite writer stopped before committing".into(),
        )),
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}

/// The connection as a job sees it: its statements, inside its savepoint.
struct JobConnection<'a>(&'a Locked);

impl JobConnection<'_> {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        self.0.run(f)
    }
}

/// sea-orm's connection over a transaction's `run` (statements inline, inside its savepoint).
macro_rules! statements_in_transaction {
    ($t:ty) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $t {
            fn get_database_backend(&self) -> DbBackend {
                DbBackend::Sqlite
            }

            async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                self.run(|c| execute(c, &stmt)).map(ExecResult::from)
            }

            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                self.run(|c| {
                    c.execute_batch(sql).map_err(sqlite_error)?;
                    Ok(ExecResult::from(ProxyExecResult::new(0, c.changes())))
                })
            }

            async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                let rows = self.run(|c| query(c, &stmt))?;
                Ok(rows.into_iter().next().map(QueryResult::from))
            }

            async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                let rows = self.run(|c| query(c, &stmt))?;
                Ok(rows.into_iter().map(QueryResult::from).collect())
            }
        }
    };
}
statements_in_transaction!(SqliteTransaction);
statements_in_transaction!(JobConnection<'_>);

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, std::path::PathBuf, SqliteWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        let w = SqliteWriter::open(&path).unwrap();
        (dir, path, w)
    }

    fn insert(x: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (x) VALUES (?)",
            [x.into()],
        )
    }

    /// What another connection (a reader) sees: only committed data.
    fn committed(path: &Path) -> Vec<i64> {
        let c = Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = s.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Outer transactions begun so far.
    async fn outer_transactions_begun(w: &SqliteWriter) -> u64 {
        w.shared
            .state
            .lock()
            .await
            .with(|s| Ok(s.next_group))
            .unwrap()
    }

    #[tokio::test]
    async fn a_committed_transaction_is_kept_and_a_dropped_or_rolled_back_one_is_not() {
        let (_dir, path, w) = writer();
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        txn.commit().await.unwrap();
        {
            let txn = w.begin().await.unwrap();
            txn.execute(insert(2)).await.unwrap();
        }
        let txn = w.begin().await.unwrap();
        txn.execute(insert(3)).await.unwrap();
        txn.rollback().await.unwrap();
        w.execute(insert(4)).await.unwrap();
        assert_eq!(committed(&path), vec![1, 4]);
    }

    #[tokio::test]
    async fn a_second_writer_waits_for_the_open_transaction_instead_of_failing() {
        let (_dir, path, w) = writer();
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        let other = {
            let w = w.clone();
            tokio::spawn(async move { w.execute(insert(2)).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert!(!other.is_finished());
        txn.commit().await.unwrap();
        other.await.unwrap().unwrap();
        assert_eq!(committed(&path), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_failed_statement_leaves_the_transaction_usable_and_the_error_typed() {
        let (_dir, path, w) = writer();
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        let err = txn.execute(insert(1)).await.unwrap_err();
        assert!(crate::store::is_unique_violation(&err), "{err:?}");
        txn.commit().await.unwrap();
        assert_eq!(committed(&path), vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_commit_in_groups_each_atomically_and_all_durably() {
        let (_dir, path, w) = writer();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let w = w.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    let txn = w.begin().await.unwrap();
                    txn.execute(insert(i * 2)).await.unwrap();
                    tokio::task::yield_now().await;
                    txn.execute(insert(i * 2 + 1)).await.unwrap();
                    if i % 10 == 0 {
                        // Every tenth changes its mind: neither of its rows may survive.
                        txn.rollback().await.unwrap();
                        false
                    } else {
                        txn.commit().await.unwrap();
                        // Durable and visible to other connections once commit returns.
                        assert!(committed(&path).contains(&(i * 2 + 1)));
                        true
                    }
                })
            })
            .collect();
        let mut kept = 0;
        for t in tasks {
            if t.await.unwrap() {
                kept += 1;
            }
        }
        let rows = committed(&path);
        assert_eq!(rows.len(), kept * 2);
        assert!(rows.iter().all(|x| (x / 2) % 10 != 0));
        // Fewer outer commits than committed transactions: they were grouped.
        let groups = outer_transactions_begun(&w).await;
        assert!(groups < 200, "{groups} outer transactions for 200");
    }

    /// `transact`'s work: inserts `x` and `x + 1`; `then` decides what becomes of them.
    async fn handed_over(w: &SqliteWriter, x: i64, then: Then) -> Result<i64, DbErr> {
        w.transact(move |txn| {
            async move {
                txn.execute(insert(x)).await?;
                match then {
                    Then::Fail => {
                        // The same row again: a unique violation after a first statement.
                        txn.execute(insert(x)).await?;
                    }
                    Then::AwaitSomethingElse => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Then::Commit | Then::Rollback => {}
                }
                txn.execute(insert(x + 1)).await?;
                Ok(match then {
                    Then::Rollback => Decided::Rollback(x),
                    _ => Decided::Commit(x),
                })
            }
            .boxed()
        })
        .await
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Then {
        Commit,
        Rollback,
        Fail,
        AwaitSomethingElse,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_handed_over_whole_commit_in_groups_each_atomically_and_all_durably() {
        let (_dir, path, w) = writer();
        let then = |i: i64| match i % 10 {
            0 => Then::Rollback,
            5 => Then::Fail,
            _ => Then::Commit,
        };
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let w = w.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    let answer = handed_over(&w, i * 2, then(i)).await;
                    match then(i) {
                        Then::Commit => {
                            assert_eq!(answer.unwrap(), i * 2);
                            // Durable and visible to other connections once it is answered.
                            assert!(committed(&path).contains(&(i * 2 + 1)));
                        }
                        Then::Rollback => assert_eq!(answer.unwrap(), i * 2),
                        _ => assert!(crate::store::is_unique_violation(&answer.unwrap_err())),
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let expected: Vec<i64> = (0..200)
            .filter(|i| then(*i) == Then::Commit)
            .flat_map(|i| [i * 2, i * 2 + 1])
            .collect();
        assert_eq!(committed(&path), expected);
        let groups = outer_transactions_begun(&w).await;
        assert!(groups < 160, "{groups} outer transactions for 160 commits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handed_over_and_begun_transactions_share_the_writer_and_its_group_commits() {
        let (_dir, path, w) = writer();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        handed_over(&w, i * 2, Then::Commit).await.unwrap();
                    } else {
                        let txn = w.begin().await.unwrap();
                        txn.execute(insert(i * 2)).await.unwrap();
                        tokio::task::yield_now().await;
                        txn.execute(insert(i * 2 + 1)).await.unwrap();
                        txn.commit().await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(committed(&path), (0..200).collect::<Vec<_>>());
    }

    /// A begun transaction that has inserted 1, and a transaction handed over (10 and 11) queued
    /// behind it.
    async fn handed_over_behind_a_begun_one(
        w: &SqliteWriter,
    ) -> (
        SqliteTransaction,
        tokio::task::JoinHandle<Result<i64, DbErr>>,
    ) {
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        let queued = {
            let w = w.clone();
            tokio::spawn(async move { handed_over(&w, 10, Then::Commit).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        (txn, queued)
    }

    #[tokio::test]
    async fn a_handed_over_transaction_waits_for_a_begun_one_to_let_go_of_the_writer() {
        let (_dir, path, w) = writer();
        let (txn, other) = handed_over_behind_a_begun_one(&w).await;
        assert!(!other.is_finished());
        txn.commit().await.unwrap();
        assert_eq!(other.await.unwrap().unwrap(), 10);
        assert_eq!(committed(&path), vec![1, 10, 11]);
    }

    #[tokio::test]
    async fn a_handed_over_transaction_that_awaits_anything_but_its_statements_fails_and_leaves_nothing(
    ) {
        let (_dir, path, w) = writer();
        let err = handed_over(&w, 1, Then::AwaitSomethingElse)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("awaited more than its statements"),
            "{err}"
        );
        handed_over(&w, 10, Then::Commit).await.unwrap();
        assert_eq!(committed(&path), vec![10, 11]);
    }

    #[tokio::test]
    async fn a_handed_over_transaction_whose_caller_gave_up_waiting_is_not_run() {
        let (_dir, path, w) = writer();
        let (txn, abandoned) = handed_over_behind_a_begun_one(&w).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        txn.commit().await.unwrap();
        handed_over(&w, 20, Then::Commit).await.unwrap();
        assert_eq!(committed(&path), vec![1, 20, 21]);
    }

    #[tokio::test]
    async fn a_transaction_begins_once_another_process_lets_go_of_the_write_lock() {
        let (_dir, path, w) = writer();
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (x) VALUES (9);")
            .unwrap();
        let begun = tokio::spawn(async move {
            let txn = w.begin().await.unwrap();
            txn.execute(insert(1)).await.unwrap();
            txn.commit().await.unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !begun.is_finished(),
            "began while another process held the lock"
        );
        other.execute_batch("COMMIT").unwrap();
        begun.await.unwrap();
        assert_eq!(committed(&path), vec![1, 9]);
    }

    /// A `begin` given up while it waited for another process's write lock (its request dropped)
    /// leaves no outer transaction behind once the lock is let go: the other process can write
    /// again at once.
    #[tokio::test]
    async fn a_begin_given_up_while_another_process_held_the_lock_leaves_the_lock_free() {
        let (_dir, path, w) = writer();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (x) VALUES (9);")
            .unwrap();
        // The writer lives on (as a server's does) while one request's `begin` is given up.
        let w2 = w.clone();
        let waiting = tokio::spawn(async move { w2.begin().await.map(drop) });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waiting.abort();
        other.execute_batch("COMMIT").unwrap();
        // The blocking task takes the lock once it is free (it polls every 200 µs), then lets go.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        other
            .execute_batch("INSERT INTO t (x) VALUES (10)")
            .unwrap();
        assert_eq!(committed(&path), vec![9, 10]);
        drop(w);
    }

    #[tokio::test]
    async fn an_outer_transaction_nobody_waits_for_is_closed_so_other_processes_can_write() {
        let (_dir, path, w) = writer();
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        txn.rollback().await.unwrap();
        // Another process (e.g. `openport merchant create`) gets the write lock at once.
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        other.execute_batch("INSERT INTO t (x) VALUES (9)").unwrap();
        assert_eq!(committed(&path), vec![9]);
    }

    #[tokio::test]
    async fn a_group_whose_committer_and_queued_writer_both_gave_up_is_still_committed() {
        let (_dir, path, w) = writer();
        let txn = w.begin().await.unwrap();
        txn.execute(insert(1)).await.unwrap();
        // A writer queued for the lock, so the commit leaves the group open for it.
        let mut queued = Box::pin(w.begin());
        assert!(futures::poll!(&mut queued).is_pending());
        let mut committing = Box::pin(txn.commit());
        assert!(futures::poll!(&mut committing).is_pending());
        // Both requests dropped: the lock was handed to the queued writer, which never runs.
        drop(committing);
        drop(queued);
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while committed(&path).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            committed(&path),
            vec![1],
            "the released transaction is kept"
        );
        // And the write lock is free again for another process.
        other.execute_batch("INSERT INTO t (x) VALUES (9)").unwrap();
        assert_eq!(committed(&path), vec![1, 9]);
    }

    /// A table whose rows name a parent that is only checked at the outer `COMMIT`: inserting an
    /// orphan makes the group's commit fail however its savepoints went.
    fn with_deferred_parent(path: &Path) {
        Connection::open(path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
                 CREATE TABLE child (parent INTEGER REFERENCES parent (id) \
                 DEFERRABLE INITIALLY DEFERRED)",
            )
            .unwrap();
    }

    fn orphan() -> Statement {
        Statement::from_string(DbBackend::Sqlite, "INSERT INTO child (parent) VALUES (42)")
    }

    fn count_t() -> Statement {
        Statement::from_string(DbBackend::Sqlite, "SELECT count(*) AS n FROM t")
    }

    #[tokio::test]
    async fn a_rollback_after_reading_a_group_that_then_fails_answers_the_failure() {
        let (_dir, path, w) = writer();
        with_deferred_parent(&path);
        let first = w.begin().await.unwrap();
        first.execute(insert(1)).await.unwrap();
        first.execute(orphan()).await.unwrap();
        let mut queued = Box::pin(w.begin());
        assert!(futures::poll!(&mut queued).is_pending());
        let mut committing = Box::pin(first.commit());
        assert!(futures::poll!(&mut committing).is_pending());
        // The second transaction joins the open group and sees the first one's row ...
        let second = queued.await.unwrap();
        let n: i64 = second
            .query_one(count_t())
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap();
        assert_eq!(n, 1);
        // ... so its rollback must not answer before the group's outcome, which is a failure.
        assert!(second.rollback().await.is_err());
        assert!(committing.await.is_err());
        assert!(committed(&path).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handed_over_rollback_after_reading_a_group_that_then_fails_answers_the_failure() {
        let (_dir, path, w) = writer();
        with_deferred_parent(&path);
        // Holds the writer until both jobs are queued, so the combiner runs them in one group.
        let holder = w.begin().await.unwrap();
        let writes = tokio::spawn({
            let w = w.clone();
            async move {
                w.transact(|txn| {
                    async move {
                        txn.execute(insert(1)).await?;
                        txn.execute(orphan()).await?;
                        Ok(Decided::Commit(()))
                    }
                    .boxed()
                })
                .await
            }
        });
        while w.shared.jobs().is_empty() {
            tokio::task::yield_now().await;
        }
        let reads = tokio::spawn({
            let w = w.clone();
            async move {
                w.transact(|txn| {
                    async move {
                        let row = txn.query_one(count_t()).await?.unwrap();
                        Ok(Decided::Rollback(row.try_get::<i64>("", "n")?))
                    }
                    .boxed()
                })
                .await
            }
        });
        while w.shared.jobs().len() < 2 {
            tokio::task::yield_now().await;
        }
        holder.rollback().await.unwrap();
        assert!(writes.await.unwrap().is_err());
        // It saw the first job's row (count 1): that row never existed, and it is told so.
        let read = reads.await.unwrap();
        assert!(read.is_err(), "answered {read:?} before the group failed");
        assert!(committed(&path).is_empty());
    }

    /// Files this process has open that SQLite created as unlinked temporary files (`etilqs_…`).
    #[cfg(target_os = "linux")]
    fn sqlite_temp_files_open() -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .map(|target| target.display().to_string())
            .filter(|target| target.contains("etilqs_"))
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_transaction_changing_many_pages_keeps_its_savepoint_journal_in_memory_not_in_a_temp_file(
    ) {
        let (_dir, path, w) = writer();
        // ≈ 250 pages of rows, so that one transaction changing them all journals ≈ 1 MB, far
        // past the 64 KiB at which SQLite would otherwise spill the sub-journal to a file.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE big (id INTEGER PRIMARY KEY, body BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO big SELECT i, zeroblob(400) FROM n;",
            )
            .unwrap();
        let update =
            || Statement::from_string(DbBackend::Sqlite, "UPDATE big SET body = randomblob(400)");
        for then in [Then::Rollback, Then::Commit] {
            let (changed, spilled) = w
                .transact(move |txn| {
                    async move {
                        let changed = txn.execute(update()).await?.rows_affected();
                        let spilled = sqlite_temp_files_open();
                        Ok(match then {
                            Then::Rollback => Decided::Rollback((changed, spilled)),
                            _ => Decided::Commit((changed, spilled)),
                        })
                    }
                    .boxed()
                })
                .await
                .unwrap();
            assert_eq!(changed, 2000);
            assert!(spilled.is_empty(), "{then:?}: {spilled:?}");
        }
        // The rolled-back savepoint was undone from the in-memory journal, the committed one kept.
        let c = Connection::open(&path).unwrap();
        let zeroed: i64 = c
            .query_row(
                "SELECT count(*) FROM big WHERE body = zeroblob(400)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(zeroed, 0);
    }
}
