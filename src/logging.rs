//! Which log events openport lets through, whatever `RUST_LOG` asks for.
//!
//! sea-orm's driver functions carry `#[instrument(level = "trace")]` spans that record the whole
//! statement with its bound values, and every sqlx event inside them prints those fields. With
//! `RUST_LOG=trace` on PostgreSQL that put sealed secrets (private keys, tokens, billing keys, in
//! test mode openable with the public test key), buyers' details and checkout capabilities into
//! the log. sea-orm is therefore held at INFO: sqlx's own `sqlx::query` events (statement text
//! with `$1` placeholders, no values) stay available for debugging.
//!
//! sqlx-postgres's URL and `.pgpass` readers (`sqlx_postgres::options`) are held at ERROR: they
//! log a query key they do not read with its value (`key=sslpassword value=…`), and a malformed
//! `.pgpass` line whole, password included. openport refuses such a URL before sqlx reads it
//! (`store::pg_url`); the cap is the second line, for whatever those readers log next. It also
//! hides their WARN that a `.pgpass` file is ignored for its permissions.
use tracing_subscriber::EnvFilter;

/// The default when `RUST_LOG` is unset.
const DEFAULT: &str = "info,sqlx=warn,sea_orm=warn";

/// Never above these, whatever is asked: see the module doc.
const CEILINGS: [&str; 2] = ["sea_orm=info", "sqlx_postgres::options=error"];

/// The filter for `directives` (`RUST_LOG`'s syntax; the default when None or unparsable), with
/// sea-orm capped at INFO and sqlx-postgres's URL reader at ERROR. Directives naming a target
/// under either (`sea_orm::driver=trace` would win over the cap, being more specific) or
/// selecting by span (`[execute]=trace`, which matches sea-orm's spans whatever their target;
/// `openport[request]=trace`, which enables everything inside a request's span, sea-orm's
/// statement spans too) are left out.
pub fn filter(directives: Option<&str>) -> EnvFilter {
    let kept: Option<String> = directives.map(|d| {
        d.split(',')
            .map(str::trim)
            .filter(|item| {
                !item.starts_with("sea_orm")
                    && !item.starts_with("sqlx_postgres::options")
                    && !item.contains('[')
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    let base = kept
        .filter(|d| !d.is_empty())
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT));
    CEILINGS.iter().fold(base, |filter, ceiling| {
        filter.add_directive(ceiling.parse().expect("static directive"))
    })
}

/// [`filter`] of the `RUST_LOG` environment variable.
pub fn from_env() -> EnvFilter {
    filter(std::env::var("RUST_LOG").ok().as_deref())
}

/// Whether log lines written to `stream` (stdout for a server, stderr for an operator command)
/// get colour codes: only for a person at a terminal, and not even then with `NO_COLOR` set
/// (no-color.org). Logs piped to a file, journald or a collector would otherwise hold escape
/// sequences around every level and field name.
pub fn colours(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What tests read back of the logs: a writer they can read, and a subscriber writing to it.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::EnvFilter;

    /// A log writer tests read back.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A subscriber logging what `filter` lets through, as plain text, into the buffer returned.
    pub(crate) fn subscriber(
        filter: EnvFilter,
    ) -> (impl tracing::Subscriber + Send + Sync, Buffer) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (subscriber, buffer)
    }

    /// Everything logged under `filter` while `f` runs.
    pub(crate) fn logged_by(filter: EnvFilter, f: impl FnOnce()) -> String {
        let (subscriber, buffer) = subscriber(filter);
        tracing::subscriber::with_default(subscriber, f);
        buffer.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sea-orm statement span with a bound secret and a sqlx event inside it log under
    /// `directives`.
    fn logged(directives: &str) -> String {
        capture::logged_by(filter(Some(directives)), || {
            // As in a request: the statement's span inside openport's request span.
            let request = tracing::info_span!(target: "openport::app", "request");
            let _request = request.enter();
            let span = tracing::trace_span!(target: "sea_orm::driver::sqlx_postgres", "execute",
                stmt = "INSERT … VALUES ('sealed-private-key')");
            let _entered = span.enter();
            tracing::debug!(target: "sqlx::query", summary = "INSERT INTO merchants", "query");
            tracing::trace!(target: "sea_orm::database", "statement: 'sealed-private-key'");
        })
    }

    #[test]
    fn no_level_asked_for_logs_sea_orms_bound_values_but_sqlx_statements_still_show() {
        for directives in [
            "trace",
            "sea_orm=trace,sqlx=debug",
            "debug,sea_orm::driver=trace",
            "debug,[execute]=trace",
            // A span directive with a target enables everything inside the spans it matches,
            // whatever their target: sea-orm's statement spans inside a request among them.
            "debug,openport[request]=trace",
            "debug,openport::app[request]=trace",
            "debug,sea[{stmt}]=trace",
        ] {
            let text = logged(directives);
            assert!(!text.contains("sealed-private-key"), "{directives}: {text}");
            assert!(
                text.contains("INSERT INTO merchants"),
                "{directives}: {text}"
            );
        }
        assert!(!logged("info").contains("sealed"));
    }

    /// sqlx-postgres logs a URL query key it does not read with its value, at WARN, and a
    /// malformed `.pgpass` line whole: neither passes, whatever is asked, while sqlx's other
    /// warnings still do.
    #[test]
    fn sqlx_postgres_url_and_pgpass_warnings_never_pass() {
        for directives in [
            None,
            Some("trace"),
            Some("sqlx=trace"),
            Some("warn,sqlx_postgres=trace"),
            Some("info,sqlx_postgres::options::parse=warn"),
            Some("sqlx_postgres::options=trace"),
        ] {
            let text = capture::logged_by(filter(directives), || {
                tracing::warn!(target: "sqlx_postgres::options::parse", key = "sslpassword",
                    value = "s3cret", "ignoring unrecognized connect parameter");
                tracing::warn!(target: "sqlx_postgres::options::pgpass",
                    line = "h:5432:db:u:s3cret", "Malformed line in pgpass file");
                tracing::warn!(target: "sqlx::pool::inner", "a slow acquire");
            });
            assert!(!text.contains("s3cret"), "{directives:?}: {text}");
            assert!(text.contains("a slow acquire"), "{directives:?}: {text}");
        }
    }
}
