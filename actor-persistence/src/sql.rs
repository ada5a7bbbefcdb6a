//! What the SQL providers share: table-name checks, password redaction and
//! the mapping of sqlx errors onto this crate's error kinds. Built with any
//! backend feature; each part with the backends that use it (Redis needs
//! only the redaction).

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Error;

/// The default table-name prefix: tables `grain_state`, `grain_events` and
/// `grain_snapshots`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub const DEFAULT_TABLE_PREFIX: &str = "grain";

/// Table names are spliced into SQL text (they cannot be bound), so only
/// plain identifiers are accepted.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn check_table_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "table name `{name}` is not a plain SQL identifier (letters, digits and `_`, not starting with a digit, at most 63 characters)"
        )))
    }
}

// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`: the
// workspace's one helper.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) use actor_core::redact_url as redact;

/// Maps a sqlx error: unreachable or overloaded services are
/// [`Error::Unavailable`], the rest [`Error::Backend`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn classify(provider: &str, url: &str, e: sqlx::Error) -> Error {
    let unavailable = |reason: String| Error::Unavailable {
        provider: provider.to_owned(),
        url: url.to_owned(),
        reason,
    };
    match e {
        sqlx::Error::Io(io) => unavailable(io.to_string()),
        sqlx::Error::Tls(t) => unavailable(format!("TLS: {t}")),
        sqlx::Error::PoolTimedOut => unavailable(
            "timed out waiting for a connection (the service is down or overloaded)".into(),
        ),
        sqlx::Error::PoolClosed => unavailable("the connection pool was closed".into()),
        sqlx::Error::WorkerCrashed => unavailable("the connection's worker crashed".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if is_outage_code(provider, &code) {
                unavailable(format!("{} (code {code})", db.message()))
            } else {
                Error::Backend {
                    provider: provider.to_owned(),
                    reason: format!("{} (code {code})", db.message()),
                }
            }
        }
        sqlx::Error::Configuration(c) => Error::Config(format!("{provider} at {url}: {c}")),
        other => Error::Backend {
            provider: provider.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn is_outage_code(provider: &str, code: &str) -> bool {
    match provider {
        // Class 08: connection exceptions; 57P0x: the server is shutting
        // down or starting; 53300: too many connections.
        "postgres" => code.starts_with("08") || code.starts_with("57P0") || code == "53300",
        // Primary result codes: BUSY, LOCKED (after the busy timeout),
        // IOERR, CANTOPEN.
        "sqlite" => matches!(
            code.parse::<i32>().map(|c| c & 0xff),
            Ok(5) | Ok(6) | Ok(10) | Ok(14)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(feature = "postgres", feature = "redis"))]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1:5432/test"),
            "postgres://u:***@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact("redis://:pw@localhost/0"),
            "redis://:***@localhost/0"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
    }

    #[test]
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn table_names_are_plain_identifiers() {
        assert!(check_table_name("grain_state").is_ok());
        assert!(check_table_name("_t1").is_ok());
        assert!(check_table_name("1t").is_err());
        assert!(check_table_name("t; DROP TABLE x").is_err());
        assert!(check_table_name("").is_err());
    }
}
