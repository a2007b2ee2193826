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
use std::sync::Mutex;

use rusqlite::Connection;
use sea_orm::{DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, Statement};

use super::{open, query, sqlite_error};

#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// A reader of the database file at `path`; opens one connection now so that a bad path fails
    /// at start, not at the first request.
    pub fn open(path: &Path) -> Result<Self, DbErr> {
        let this = Self {
            path: path.to_owned(),
            idle: Mutex::new(vec![]),
        };
        let first = this.connect()?;
        this.idle.lock().expect("reader pool").push(first);
        Ok(this)
    }

    fn connect(&self) -> Result<Connection, DbErr> {
        let conn = open(&self.path)?;
        // A read connection: any write through it is a bug, so SQLite refuses it too.
        conn.pragma_update(None, "query_only", true)
            .map_err(sqlite_error)?;
        Ok(conn)
    }

    /// Runs `f` on an idle connection (a new one when all are busy) and puts it back. Nothing
    /// awaits in between, so there are never more connections than threads running queries.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let pooled = self.idle.lock().expect("reader pool").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&conn);
        self.idle.lock().expect("reader pool").push(conn);
        result
    }
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for SqliteReader {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.with_connection(|conn| query(conn, &statement))
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        Err(DbErr::Custom(format!(
            "the SQLite read connection does not write: {}",
            statement.sql
        )))
    }

    async fn ping(&self) -> Result<(), DbErr> {
        self.with_connection(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite_error)
        })
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
}
