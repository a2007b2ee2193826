//! Settings read from the environment exactly as typed, and configuration errors that never
//! show a secret.
//!
//! figment's `Env` provider reads every value as a TOML-like literal: `KCP_PRIVATE_KEY_PASSWORD=
//! 482913` became an integer, failed as a string, and the error quoted it; `"pa ss"` lost its
//! quotes and `[x]` became an array. The secrets and the seed's string settings below are taken
//! verbatim instead (a numeric `KCP_SITE_CD` stays a string too), and an error about a secret
//! names the setting, never its value.
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// A setting read verbatim from the environment.
pub(super) struct RawVar {
    /// The configuration key (`.` between table and field).
    pub key: &'static str,
    /// The environment names that set it, the one that wins last.
    pub names: &'static [&'static str],
    /// Never shown in an error message.
    pub secret: bool,
}

pub(super) const RAW_VARS: &[RawVar] = &[
    RawVar {
        key: "admin_token",
        names: &["OPENPORT_ADMIN_TOKEN"],
        secret: true,
    },
    RawVar {
        key: "master_key",
        names: &["OPENPORT_MASTER_KEY"],
        secret: true,
    },
    RawVar {
        key: "previous_master_keys",
        names: &["OPENPORT_PREVIOUS_MASTER_KEYS"],
        secret: true,
    },
    // A PostgreSQL URL carries its password.
    RawVar {
        key: "database_url",
        names: &["OPENPORT_DATABASE_URL", "DATABASE_URL"],
        secret: true,
    },
    RawVar {
        key: "kcp.private_key_password",
        names: &[
            "OPENPORT_KCP__PRIVATE_KEY_PASSWORD",
            "KCP_PRIVATE_KEY_PASSWORD",
        ],
        secret: true,
    },
    RawVar {
        key: "kcp.site_cd",
        names: &["OPENPORT_KCP__SITE_CD", "KCP_SITE_CD"],
        secret: false,
    },
    // A group id may be all digits after a numeric site code: a string all the same.
    RawVar {
        key: "kcp.group_id",
        names: &["OPENPORT_KCP__GROUP_ID", "KCP_GROUP_ID"],
        secret: false,
    },
    RawVar {
        key: "kcp.cert_info",
        names: &["OPENPORT_KCP__CERT_INFO", "KCP_CERT_INFO"],
        secret: false,
    },
    RawVar {
        key: "kcp.private_key_path",
        names: &["OPENPORT_KCP__PRIVATE_KEY_PATH", "KCP_PRIVATE_KEY_PATH"],
        secret: false,
    },
    RawVar {
        key: "kcp.payment_url",
        names: &["OPENPORT_KCP__PAYMENT_URL", "KCP_PAYMENT_URL"],
        secret: false,
    },
    RawVar {
        key: "kcp.register_url",
        names: &["OPENPORT_KCP__REGISTER_URL", "KCP_REGISTER_URL"],
        secret: false,
    },
    RawVar {
        key: "kcp.api_base",
        names: &["OPENPORT_KCP__API_BASE", "KCP_API_BASE"],
        secret: false,
    },
];

/// Whether the `OPENPORT_*` provider must leave `key` to [`RawEnv`].
pub(super) fn is_raw(key: &str) -> bool {
    RAW_VARS.iter().any(|v| v.key.eq_ignore_ascii_case(key))
}

/// The [`RAW_VARS`] present in the environment, as strings. Names match without regard to case,
/// as figment's own provider matches them.
pub(super) struct RawEnv;

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for var in RAW_VARS {
            let mut found = None;
            for name in var.names {
                if let Some(value) = lookup(name) {
                    found = Some((*name, value));
                }
            }
            let Some((name, value)) = found else { continue };
            let value = value
                .into_string()
                .map_err(|_| Error::from(format!("bad value for {name}: not UTF-8")))?;
            insert(&mut dict, var.key, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn lookup(name: &str) -> Option<std::ffi::OsString> {
    std::env::vars_os()
        .filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v)
        .last()
}

fn insert(dict: &mut Dict, key: &str, value: String) {
    match key.split_once('.') {
        Some((table, rest)) => {
            let entry = dict
                .entry(table.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
        None => {
            dict.insert(key.to_string(), Value::from(value));
        }
    }
}

/// The configuration could not be read. The message names what is wrong and where; for a
/// secret (a token, a key, a password, the database URL) it never holds the value.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct LoadError {
    problems: Vec<String>,
}

impl LoadError {
    /// Keys of configuration file `file` that no setting reads (names only, never values).
    pub(super) fn unknown_keys(file: &std::path::Path, keys: Vec<String>) -> Self {
        Self {
            problems: vec![format!(
                "{}: unknown setting{} {} (README.md, \"Configuration\": a setting's key is its OPENPORT_ name without the prefix, lower case, `__` a table)",
                file.display(),
                if keys.len() == 1 { "" } else { "s" },
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        }
    }

    /// Configuration file `file` could not be read (not there, a directory, not readable).
    pub(super) fn unreadable_file(file: &std::path::Path, error: &std::io::Error) -> Self {
        Self {
            problems: vec![format!(
                "configuration file {} cannot be read: {error}",
                file.display()
            )],
        }
    }

    pub(super) fn from_figment(error: Error) -> Self {
        Self {
            problems: error.into_iter().map(describe).collect(),
        }
    }
}

fn describe(error: Error) -> String {
    let key = error.path.join(".");
    let secret = RAW_VARS.iter().find(|v| {
        v.secret
            && (key.eq_ignore_ascii_case(v.key)
                || key.to_ascii_lowercase().starts_with(&format!("{}.", v.key)))
    });
    if let Some(var) = secret {
        return format!(
            "bad value for {} (`{}` in a TOML file): a string is expected; the value is not shown",
            var.names.join(" / "),
            var.key
        );
    }
    // A TOML syntax error quotes the offending line under a `N |` gutter, and that line may set a
    // secret: keep the position and the reason, drop the quote.
    error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|line| {
            !(line.is_empty()
                || line.starts_with('|')
                || line.split_once('|').is_some_and(|(n, _)| is_line_number(n)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_line_number(gutter: &str) -> bool {
    let n = gutter.trim();
    !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    // figment::Jail's closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn the_kcp_group_id_is_read_from_either_name_as_typed_even_when_it_looks_numeric() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OPENPORT_KCP__GROUP_ID", "123451000489");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.kcp.group_id.as_deref(), Some("123451000489"));

            // The seed's name wins over the OPENPORT_ one, as for the site code.
            jail.set_env("KCP_GROUP_ID", "A52Q71000489");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.kcp.group_id.as_deref(), Some("A52Q71000489"));
            Ok(())
        });
    }
}
