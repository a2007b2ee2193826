//! SQLite without sqlx's per-statement thread hop.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, and each statement, each row and
//! each completion crosses a channel with a futex wake-up on both sides. For a lookup that is one
//! indexed row, that hand-off costs more than SQLite's work (≈ 29 % of the gateway's CPU under load);
//! for a write transaction, the ~10 round trips of a payment held the one writer connection for
//! ~1.3 ms while the task waited to be scheduled again after each (docs/performance.md). Here
//! sea-orm's statements run with `rusqlite` on the async task that issues them:
//!
//! - [`reader::SqliteReader`]: sea-orm's read connection (through its proxy interface), on a few
//!   pooled connections, each statement inline;
//! - [`writer::SqliteWriter`]: the single writer connection, with real transactions; statements
//!   run inline, `COMMIT` (the fsync) on the blocking pool, and so does `BEGIN IMMEDIATE` when
//!   another process holds the write lock. A transaction handed over whole (`transact`: the
//!   payments' hot path) runs on the blocking pool with the others queued beside it, so the
//!   writer passes from task to task once per group instead of once per transaction.
//!
//! sea-orm itself still builds every statement and reads every row, so the SQL and the mapping are
//! the ones PostgreSQL gets. This module only moves values between sea-orm and SQLite.
pub mod reader;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::sea_query::Value;
use sea_orm::{
    ColumnTrait, ColumnType, DbErr, EntityTrait, IdenStatic, Iterable, ProxyExecResult, ProxyRow,
    Statement,
};

use super::entity;

/// Prepared statements kept per connection: every query the services run, with room to spare.
const STATEMENT_CACHE: usize = 128;
/// As long as sqlx's pools wait for a lock (see `Db::connect`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The column sea-orm's `PaginatorTrait::count` selects (`COUNT(*) AS num_items`).
const PAGINATOR_COUNT: &str = "num_items";

/// Opens a connection to the database file with the settings every connection needs.
fn open(path: &Path) -> Result<Connection, DbErr> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The value type sea-orm expects for a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    BigInt,
    Bool,
    Text,
}

impl Kind {
    fn of(column: &ColumnType) -> Option<Self> {
        match column {
            ColumnType::TinyInteger | ColumnType::SmallInteger | ColumnType::Integer => {
                Some(Kind::Int)
            }
            ColumnType::BigInteger => Some(Kind::BigInt),
            ColumnType::Boolean => Some(Kind::Bool),
            ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => Some(Kind::Text),
            _ => None,
        }
    }
}

/// Result-column name → the value type sea-orm reads it as, gathered from every entity.
///
/// sea-orm reads proxy rows strictly by value type (an `i32` field needs `Value::Int`, a `bool`
/// field `Value::Bool`), while SQLite only knows integers and text; the types come from the
/// entities themselves, so no list is kept by hand. A name that two entities type differently is
/// left out (and `column_kinds_agree_across_entities` fails).
#[derive(Debug)]
struct ColumnKinds {
    kinds: HashMap<String, Kind>,
    conflicts: Vec<String>,
}

impl ColumnKinds {
    fn of_all_entities() -> Self {
        let mut this = Self {
            kinds: HashMap::new(),
            conflicts: vec![],
        };
        this.add::<entity::access_token::Entity>();
        this.add::<entity::billing_key::Entity>();
        this.add::<entity::cancellation::Entity>();
        this.add::<entity::checkout_session::Entity>();
        this.add::<entity::kcp_notification::Entity>();
        this.add::<entity::merchant::Entity>();
        this.add::<entity::payment::Entity>();
        this.add::<entity::pg_attempt::Entity>();
        this.add::<entity::prepare::Entity>();
        this.add::<entity::schedule::Entity>();
        this.add::<entity::webhook_attempt::Entity>();
        this.add::<entity::webhook_delivery::Entity>();
        for name in &this.conflicts {
            this.kinds.remove(name);
        }
        // sea-orm reads its paginator's count as an `i32` on SQLite.
        this.kinds.insert(PAGINATOR_COUNT.to_owned(), Kind::Int);
        this
    }

    fn add<E: EntityTrait>(&mut self) {
        for column in E::Column::iter() {
            let Some(kind) = Kind::of(column.def().get_column_type()) else {
                continue;
            };
            let name = column.as_str().to_owned();
            match self.kinds.insert(name.clone(), kind) {
                Some(previous) if previous != kind => self.conflicts.push(name),
                _ => {}
            }
        }
    }

    /// The sea-orm value of one SQLite result cell. Columns the entities don't name take the type
    /// of what SQLite holds.
    fn value(&self, column: &str, cell: ValueRef<'_>) -> Result<Value, DbErr> {
        let kind = self.kinds.get(column).copied();
        Ok(match (cell, kind) {
            (ValueRef::Null, Some(Kind::Int)) => Value::Int(None),
            (ValueRef::Null, Some(Kind::Bool)) => Value::Bool(None),
            (ValueRef::Null, Some(Kind::Text)) => Value::String(None),
            (ValueRef::Null, _) => Value::BigInt(None),
            (ValueRef::Integer(i), Some(Kind::Int)) => Value::Int(Some(
                i32::try_from(i).map_err(|_| cell_error(column, "outside i32"))?,
            )),
            (ValueRef::Integer(i), Some(Kind::Bool)) => Value::Bool(Some(i != 0)),
            (ValueRef::Integer(i), _) => Value::BigInt(Some(i)),
            (ValueRef::Text(t), _) => Value::String(Some(Box::new(
                std::str::from_utf8(t)
                    .map_err(|_| cell_error(column, "text is not UTF-8"))?
                    .to_owned(),
            ))),
            (ValueRef::Real(r), _) => Value::Double(Some(r)),
            (ValueRef::Blob(b), _) => Value::Bytes(Some(Box::new(b.to_vec()))),
        })
    }

    /// The column types of every entity, gathered once per process.
    fn shared() -> &'static Self {
        static KINDS: OnceLock<ColumnKinds> = OnceLock::new();
        KINDS.get_or_init(Self::of_all_entities)
    }

    /// Runs a statement that returns rows (a SELECT, or a write with RETURNING).
    fn rows(&self, conn: &Connection, statement: &Statement) -> Result<Vec<ProxyRow>, DbErr> {
        let mut prepared = conn.prepare_cached(&statement.sql).map_err(sqlite_error)?;
        let names: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut rows = prepared
            .query(rusqlite::params_from_iter(parameters(statement)?))
            .map_err(sqlite_error)?;
        let mut out = vec![];
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut values = BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                let cell = row.get_ref(i).map_err(sqlite_error)?;
                values.insert(name.clone(), self.value(name, cell)?);
            }
            out.push(ProxyRow::new(values));
        }
        Ok(out)
    }
}

/// Runs a statement that returns rows (a SELECT, or a write with RETURNING).
fn query(conn: &Connection, statement: &Statement) -> Result<Vec<ProxyRow>, DbErr> {
    ColumnKinds::shared().rows(conn, statement)
}

/// Runs a statement for its effect.
fn execute(conn: &Connection, statement: &Statement) -> Result<ProxyExecResult, DbErr> {
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(sqlite_error)?;
    let changed = prepared
        .execute(rusqlite::params_from_iter(parameters(statement)?))
        .map_err(sqlite_error)?;
    Ok(ProxyExecResult::new(
        u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
        changed as u64,
    ))
}

fn parameters(statement: &Statement) -> Result<Vec<SqlValue>, DbErr> {
    statement
        .values
        .iter()
        .flat_map(|values| values.0.iter())
        .map(parameter)
        .collect()
}

fn cell_error(column: &str, why: &str) -> DbErr {
    DbErr::Type(format!("column {column}: {why}"))
}

/// SQLite's errors as sqlx reports them to sea-orm, so that `is_unique_violation` and friends
/// (`DbErr::sql_err`) see the same thing whichever driver ran the statement.
fn sqlite_error(err: rusqlite::Error) -> DbErr {
    if let rusqlite::Error::SqliteFailure(e, message) = &err {
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        {
            let text = message.clone().unwrap_or_else(|| err.to_string());
            return DbErr::Exec(sea_orm::RuntimeErr::Internal(format!(
                "{UNIQUE_MARKER}{text}"
            )));
        }
    }
    DbErr::Custom(format!("sqlite: {err}"))
}

/// How a unique violation from this module is recognised (see `store::is_unique_violation`).
pub(super) const UNIQUE_MARKER: &str = "sqlite unique violation: ";

/// A statement parameter as sqlx's SQLite driver would bind it (booleans as 0/1, JSON as text).
fn parameter(value: &Value) -> Result<SqlValue, DbErr> {
    fn opt<T>(v: &Option<T>, f: impl FnOnce(&T) -> SqlValue) -> SqlValue {
        v.as_ref().map_or(SqlValue::Null, f)
    }
    Ok(match value {
        Value::Bool(v) => opt(v, |b| SqlValue::Integer(i64::from(*b))),
        Value::TinyInt(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::SmallInt(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::Int(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::BigInt(v) => opt(v, |i| SqlValue::Integer(*i)),
        Value::TinyUnsigned(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::SmallUnsigned(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::Unsigned(v) => opt(v, |i| SqlValue::Integer(i64::from(*i))),
        Value::BigUnsigned(Some(i)) => SqlValue::Integer(
            i64::try_from(*i).map_err(|_| DbErr::Type("parameter outside i64".into()))?,
        ),
        Value::BigUnsigned(None) => SqlValue::Null,
        Value::Float(v) => opt(v, |f| SqlValue::Real(f64::from(*f))),
        Value::Double(v) => opt(v, |f| SqlValue::Real(*f)),
        Value::String(v) => opt(v, |s| SqlValue::Text(s.as_ref().clone())),
        Value::Char(v) => opt(v, |c| SqlValue::Text(c.to_string())),
        Value::Bytes(v) => opt(v, |b| SqlValue::Blob(b.as_ref().clone())),
        Value::Json(v) => opt(v, |j| SqlValue::Text(j.to_string())),
        // Not `{other:?}`: that would put the value into an error message.
        _ => {
            return Err(DbErr::Type(
                "parameter type not supported on SQLite here".into(),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sqlite_is_built_to_sync_with_fdatasync() {
        // .cargo/config.toml gives libsqlite3-sys's build this flag (and rustc the same variable,
        // which is what this reads): without it SQLite fsync()s every commit, inode included.
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "LIBSQLITE3_FLAGS={flags:?}"
        );
    }

    #[test]
    fn column_kinds_agree_across_entities() {
        let kinds = ColumnKinds::of_all_entities();
        assert!(kinds.conflicts.is_empty(), "{:?}", kinds.conflicts);
        assert_eq!(kinds.kinds.get("card_quota"), Some(&Kind::Int));
        assert_eq!(kinds.kinds.get("sandbox"), Some(&Kind::Bool));
        assert_eq!(kinds.kinds.get("amount"), Some(&Kind::BigInt));
        assert_eq!(kinds.kinds.get("imp_uid"), Some(&Kind::Text));
    }

    #[test]
    fn an_integer_too_large_for_an_i32_column_is_an_error_not_a_wrapped_value() {
        let kinds = ColumnKinds::of_all_entities();
        assert!(kinds
            .value("card_quota", ValueRef::Integer(i64::from(i32::MAX) + 1))
            .is_err());
        assert_eq!(
            kinds.value("card_quota", ValueRef::Integer(3)).unwrap(),
            Value::Int(Some(3))
        );
    }

    #[test]
    fn nulls_take_the_entity_type_so_optional_fields_read_back() {
        let kinds = ColumnKinds::of_all_entities();
        assert_eq!(
            kinds.value("card_type", ValueRef::Null).unwrap(),
            Value::Int(None)
        );
        assert_eq!(
            kinds.value("card_number", ValueRef::Null).unwrap(),
            Value::String(None)
        );
    }

    #[test]
    fn a_unique_violation_is_recognised_as_one() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE); INSERT INTO t VALUES (1);")
            .unwrap();
        let insert = Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "INSERT INTO t (x) VALUES (?)",
            [1i64.into()],
        );
        let err = execute(&conn, &insert).unwrap_err();
        assert!(super::super::is_unique_violation(&err), "{err:?}");
        let other =
            Statement::from_string(sea_orm::DbBackend::Sqlite, "INSERT INTO nope VALUES (1)");
        assert!(!super::super::is_unique_violation(
            &execute(&conn, &other).unwrap_err()
        ));
    }
}
