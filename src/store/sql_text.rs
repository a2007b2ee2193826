//! Statements written straight as text, for the writes every payment makes
//! (`payments::open_charge` and `payments::conclude_charge`, on both databases).
//!
//! sea-query builds a statement as a tree of expressions (each value, column and condition its
//! own allocation) and then walks the tree to write the text: for those statements a quarter of
//! the gateway's CPU per PostgreSQL payment (docs/performance.md), for a text whose shape is the
//! same every time; on SQLite that work was done with the writer held. Here the text is written in one pass and each value is bound as it is
//! written, so text and values cannot drift apart. Identifiers come only from the entities
//! (`Iden::as_str`, quoted); every value the caller gives is a placeholder, never text in the SQL.
use std::fmt::Write;

use sea_orm::{ActiveModelTrait, ActiveValue, DbBackend, EntityName, Iterable, Statement, Value};

/// A statement being written, with the values of its placeholders in order: `$1`, `$2`, … on
/// PostgreSQL, `?1`, `?2`, … on SQLite.
pub(super) struct SqlText {
    backend: DbBackend,
    sql: String,
    values: Vec<Value>,
}

impl SqlText {
    pub(super) fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            sql: String::with_capacity(2048),
            values: Vec::with_capacity(48),
        }
    }

    /// The database the statement is written for.
    pub(super) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// SQL written as given: keywords and punctuation, never a value.
    pub(super) fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// A quoted identifier (a table, column or alias name).
    pub(super) fn ident(&mut self, name: &str) -> &mut Self {
        self.quoted('"', name)
    }

    /// A column of `table` (a table's name or an alias), qualified.
    pub(super) fn column(&mut self, table: &str, column: &str) -> &mut Self {
        self.ident(table).sql(".").ident(column)
    }

    /// `table.column = value`, the value bound.
    pub(super) fn eq(&mut self, table: &str, column: &str, value: impl Into<Value>) -> &mut Self {
        self.column(table, column).sql(" = ").bind(value)
    }

    /// A placeholder bound to `value`.
    pub(super) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        let mark = match self.backend {
            DbBackend::Postgres => '$',
            _ => '?',
        };
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "{mark}{}", self.values.len());
        self
    }

    /// A constant of the code as an SQL string literal (a state name, not a caller's value):
    /// written into the text, so that PostgreSQL can match it to a partial index's predicate.
    pub(super) fn literal(&mut self, constant: &'static str) -> &mut Self {
        self.quoted('\'', constant)
    }

    /// `text` between `quote`s, each `quote` inside it doubled.
    fn quoted(&mut self, quote: char, text: &str) -> &mut Self {
        self.sql.push(quote);
        for c in text.chars() {
            if c == quote {
                self.sql.push(quote);
            }
            self.sql.push(c);
        }
        self.sql.push(quote);
        self
    }

    /// Writes each of `items` with `write`, separated by `, `.
    pub(super) fn list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            write(self, item);
        }
        self
    }

    pub(super) fn into_statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

/// The name of `E`'s table.
pub(super) fn table<E: EntityName + Default>() -> String {
    E::default().table_name().to_owned()
}

/// The columns of `model` that are `Set` (and that `keep` accepts), with their values.
pub(super) fn set_values<A: ActiveModelTrait>(
    model: &A,
    keep: impl Fn(&<A::Entity as sea_orm::EntityTrait>::Column) -> bool,
) -> Vec<(<A::Entity as sea_orm::EntityTrait>::Column, Value)> {
    <A::Entity as sea_orm::EntityTrait>::Column::iter()
        .filter(|c| keep(c))
        .filter_map(|c| match model.get(c) {
            ActiveValue::Set(v) => Some((c, v)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_is_a_numbered_placeholder_in_the_order_it_was_written() {
        let mut q = SqlText::new(DbBackend::Postgres);
        q.sql("SELECT ")
            .bind(7i64)
            .sql(", ")
            .bind("a'b")
            .sql(" WHERE x = ")
            .bind(Option::<String>::None);
        let s = q.into_statement();
        assert_eq!(s.sql, "SELECT $1, $2 WHERE x = $3");
        assert_eq!(
            s.values.unwrap().0,
            vec![
                Value::BigInt(Some(7)),
                Value::String(Some(Box::new("a'b".into()))),
                Value::String(None)
            ]
        );
    }

    #[test]
    fn identifiers_and_constants_are_quoted_and_escaped() {
        let mut q = SqlText::new(DbBackend::Postgres);
        q.ident("we\"ird")
            .sql(" = ")
            .literal("it's")
            .sql(" AND ")
            .column("p", "id");
        assert_eq!(
            q.into_statement().sql,
            r#""we""ird" = 'it''s' AND "p"."id""#
        );
    }

    #[test]
    fn a_list_is_separated_by_commas_and_sqlite_numbers_its_placeholders_with_question_marks() {
        let mut q = SqlText::new(DbBackend::Sqlite);
        q.list([1i64, 2, 3], |q, v| {
            q.bind(v);
        });
        assert_eq!(q.into_statement().sql, "?1, ?2, ?3");
    }
}
