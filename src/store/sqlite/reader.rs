//! sea-orm's read connection on SQLite: each statement runs on the async task that asks, on one of
//! a few pooled connections, from SQLite's page cache (see the module doc of `store::sqlite`).
//!
//! Running SQLite inline on an async worker is acceptable because a read in WAL mode never waits
//! for the writer and a lookup takes microseconds; the paged queries read at most a page of rows.
//!
//! Rows are sea-orm `ProxyRow`s, which keep their columns in a map sorted by name: read them by
//! name (entities, `FromQueryResult` structs, one-column tuples), never as a tuple of several
//! columns, whose positions would be alphabetical rather than the SELECT's.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, ProxyDatabaseTrait, ProxyExecResult, ProxyRow,
    QueryResult, Statement,
};

use super::{open, query, sqlite_error};

/// The read connections of one database file. Clones share them: sea-orm's read connection holds
/// one, and `Db` another for [`SqliteReader::snapshot`].
#[derive(Debug, Clone)]
pub struct SqliteReader {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// A reader of the database file at `path`; opens one connection now so that a bad path fails
    /// at start, not at the first request.
    pub fn open(path: &Path) -> Result<Self, DbErr> {
        let this = Self {
            pool: Arc::new(Pool {
                path: path.to_owned(),
                idle: Mutex::new(vec![]),
            }),
        };
        let first = this.pool.connect()?;
        this.pool.put_back(first);
        Ok(this)
    }

    /// A read transaction on one connection of the pool, kept to itself until dropped: every
    /// statement run on it reads the database as it was at its first one (SQLite's WAL snapshot,
    /// taken by the first read after a deferred `BEGIN`), whatever the writer commits meanwhile.
    /// For reads that must agree with each other, such as a payment and its cancel history.
    pub fn snapshot(&self) -> Result<SqliteSnapshot, DbErr> {
        let conn = self.pool.take()?;
        if let Err(e) = conn.execute_batch("BEGIN DEFERRED") {
            self.pool.put_back(conn);
            return Err(sqlite_error(e));
        }
        Ok(SqliteSnapshot {
            conn: Mutex::new(Some(conn)),
            pool: self.pool.clone(),
        })
    }
}

impl Pool {
    fn connect(&self) -> Result<Connection, DbErr> {
        let conn = open(&self.path)?;
        // A read connection: any write through it is a bug, so SQLite refuses it too.
        conn.pragma_update(None, "query_only", true)
            .map_err(sqlite_error)?;
        Ok(conn)
    }

    /// An idle connection, or a new one when all are busy.
    fn take(&self) -> Result<Connection, DbErr> {
        let pooled = self.idle.lock().expect("reader pool").pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn put_back(&self, conn: Connection) {
        self.idle.lock().expect("reader pool").push(conn);
    }

    /// Runs `f` on an idle connection (a new one when all are busy) and puts it back. Nothing
    /// awaits in between, so there are never more connections than threads running queries.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let conn = self.take()?;
        let result = f(&conn);
        self.put_back(conn);
        result
    }
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for SqliteReader {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.pool.with_connection(|conn| query(conn, &statement))
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        Err(DbErr::Custom(format!(
            "the SQLite read connection does not write: {}",
            statement.sql
        )))
    }

    async fn ping(&self) -> Result<(), DbErr> {
        self.pool.with_connection(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite_error)
        })
    }
}

/// A read transaction of [`SqliteReader::snapshot`]: statements run inline on its connection,
/// which goes back to the pool, the transaction ended, when this is dropped.
#[derive(Debug)]
pub struct SqliteSnapshot {
    /// `None` only while being dropped.
    conn: Mutex<Option<Connection>>,
    pool: Arc<Pool>,
}

impl SqliteSnapshot {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        let conn = self.conn.lock().expect("snapshot connection");
        f(conn
            .as_ref()
            .ok_or_else(|| DbErr::Custom("snapshot already ended".into()))?)
    }
}

impl Drop for SqliteSnapshot {
    fn drop(&mut self) {
        let Some(conn) = self.conn.get_mut().ok().and_then(Option::take) else {
            return;
        };
        // A read transaction has nothing to keep: ending it is all a commit would do. A
        // connection that cannot end it is closed rather than pooled (it would hold its old
        // snapshot for every later read).
        if conn.execute_batch("ROLLBACK").is_ok() || conn.is_autocommit() {
            self.pool.put_back(conn);
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for SqliteSnapshot {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        Err(DbErr::Custom(format!(
            "a read snapshot does not write: {}",
            statement.sql
        )))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        Err(DbErr::Custom(format!(
            "a read snapshot does not write: {sql}"
        )))
    }

    async fn query_one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let rows = self.run(|conn| query(conn, &statement))?;
        Ok(rows.into_iter().next().map(QueryResult::from))
    }

    async fn query_all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let rows = self.run(|conn| query(conn, &statement))?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let reader = SqliteReader::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let insert =
            Statement::from_string(sea_orm::DbBackend::Sqlite, "INSERT INTO t (x) VALUES (1)");
        assert!(rt.block_on(reader.execute(insert.clone())).is_err());
        // Even a write smuggled into a query is refused by SQLite (`query_only`).
        assert!(rt.block_on(reader.query(insert)).is_err());
    }

    #[test]
    fn a_snapshot_reads_the_database_as_it_was_at_its_first_read_and_goes_back_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let reader = SqliteReader::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sum = Statement::from_string(DbBackend::Sqlite, "SELECT SUM(x) AS s FROM t");
        let read = |rows: Option<QueryResult>| rows.unwrap().try_get::<i64>("", "s").unwrap();

        let snapshot = reader.snapshot().unwrap();
        assert_eq!(
            read(rt.block_on(snapshot.query_one(sum.clone())).unwrap()),
            1
        );
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert_eq!(
            read(rt.block_on(snapshot.query_one(sum.clone())).unwrap()),
            1,
            "the commit after the first read is not seen"
        );
        assert!(rt
            .block_on(snapshot.execute_unprepared("INSERT INTO t VALUES (3)"))
            .is_err());
        drop(snapshot);

        let pooled = reader.pool.idle.lock().unwrap().len();
        assert_eq!(pooled, 1, "the connection is back, its transaction ended");
        let rows = rt.block_on(reader.query(sum)).unwrap();
        assert_eq!(
            rows[0].values.get("s"),
            Some(&sea_orm::Value::BigInt(Some(3))),
            "a later read sees the commit"
        );
    }
}
