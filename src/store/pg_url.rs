//! A PostgreSQL URL's query keys, checked before sqlx reads them.
//!
//! sqlx-postgres 0.8.6 (`src/options/parse.rs`) reads a fixed set of query keys, compared exactly
//! (lower case), and logs every other one at WARN *with its value*: `ignoring unrecognized connect
//! parameter key=sslpassword value=…`. A `sslpassword=` (libpq's passphrase of the client key,
//! copied from a libpq URL) or a `Password=` / `PASSWORD=` was printed in clear by every start and
//! every operator command, past the default log filter, and then ignored: the connection failed,
//! the operator tried again, and the secret reached the log each time. So a key sqlx does not read
//! is refused before sqlx sees the URL, named by its key and never its value. Such a key never took
//! effect: refusing it also names a setting an operator believes in and sqlx drops (`SSLMODE=` in
//! capitals leaves TLS at sqlx's `prefer`, libpq's `connect_timeout=` has no effect).
use sea_orm::sqlx::postgres::PgConnectOptions;

/// The query keys sqlx-postgres 0.8.6 reads from a URL (`options[NAME]` besides: [`sqlx_reads`]).
/// Checked again by `every_key_sqlx_reads_is_taken_and_logs_nothing` when sqlx is upgraded.
pub const SQLX_KEYS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Whether sqlx-postgres reads query key `key` (as decoded) rather than logging it with its value.
pub fn sqlx_reads(key: &str) -> bool {
    SQLX_KEYS.contains(&key) || (key.starts_with("options[") && key.ends_with(']'))
}

/// A PostgreSQL URL names a query key sqlx does not read.
#[derive(Debug, thiserror::Error)]
#[error(
    "database URL: the query parameter {key:?} is not one openport's PostgreSQL driver (sqlx) \
     reads, so it would be ignored (its value is not shown: it may be a password); remove it. \
     sqlx reads {} and options[NAME], in lower case. A password goes in the userinfo \
     (postgres://user:PASSWORD@host/db) or in a lower-case password=",
    SQLX_KEYS.join(", ")
)]
pub struct UnreadKey {
    /// The key as written in the URL, decoded.
    pub key: String,
}

/// `url`'s connect options, refusing any query key sqlx would ignore (the module doc), before sqlx
/// parses it: sqlx's own parse would log that key's value. A URL that does not parse is left to
/// sqlx, whose error does not show it.
pub fn options(url: &str) -> Result<PgConnectOptions, super::ConnectError> {
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some((key, _)) = parsed.query_pairs().find(|(k, _)| !sqlx_reads(k)) {
            return Err(UnreadKey {
                key: key.into_owned(),
            }
            .into());
        }
    }
    Ok(url.parse()?)
}

#[cfg(test)]
mod tests {
    use sea_orm::sqlx::ConnectOptions;
    use tracing_subscriber::EnvFilter;

    use crate::logging::capture::logged_by;

    /// sqlx logged `sslpassword=`, `Password=` or any key it does not read with its value, at WARN
    /// (`key=sslpassword value=SECRETSSL`), and ignored it. Refused before sqlx reads it: nothing
    /// is logged even at TRACE without openport's filter.
    #[test]
    fn a_key_sqlx_would_ignore_is_refused_by_name_and_its_value_never_logged() {
        for (query, key) in [
            ("sslpassword=s3cret", "sslpassword"),
            ("sslmode=disable&Password=s3cret", "Password"),
            ("PASSWORD=s3cret", "PASSWORD"),
            ("pass%77ord_x=s3cret", "password_x"),
            ("connect_timeout=10&pwd=s3cret", "connect_timeout"),
            ("SSLMODE=require", "SSLMODE"),
            ("=s3cret", ""),
        ] {
            let url = format!("postgres://u@127.0.0.1:1/db?{query}");
            let mut refused = None;
            let log = logged_by(EnvFilter::new("trace"), || {
                refused = super::options(&url).err()
            });
            assert!(log.is_empty(), "{query}: {log}");
            let text = refused.expect(query).to_string();
            assert!(text.contains(&format!("{key:?}")), "{query}: {text}");
            assert!(!text.contains("s3cret"), "{query}: {text}");
        }
    }

    /// The list is sqlx-postgres's: none of its keys is refused or logged by sqlx as unrecognised,
    /// and a lower-case `password=` is the password.
    #[test]
    fn every_key_sqlx_reads_is_taken_and_logs_nothing() {
        let query: Vec<String> = super::SQLX_KEYS
            .iter()
            .map(|k| {
                let v = match *k {
                    "sslmode" | "ssl-mode" => "disable",
                    "statement-cache-capacity" | "port" => "5432",
                    "hostaddr" => "127.0.0.1",
                    _ => "x",
                };
                format!("{k}={v}")
            })
            .chain(["options[search_path]=public".to_string()])
            .collect();
        let url = format!("postgres://u@127.0.0.1:1/db?{}", query.join("&"));
        let mut parsed = None;
        let log = logged_by(EnvFilter::new("trace"), || {
            parsed = Some(super::options(&url))
        });
        parsed.unwrap().expect("every key sqlx reads is taken");
        assert!(!log.contains("unrecognized"), "{log}");
        let with_password = super::options("postgres://u@h/db?password=pw").unwrap();
        assert_eq!(with_password.to_url_lossy().password(), Some("pw"));
    }
}
