//! What every SQL-backed part of the workspace (membership, reminders,
//! stream subscriptions, transaction records) does with a database URL
//! before sqlx sees it: refuse a backend this build lacks with the crate
//! feature that builds it, and let SQLite create its file on first use.
//! Plumbing, reached as `actor_core::__private::sql_url`.

/// A SQL backend known by its URL scheme, and whether this build of the
/// crate asking has its driver (that crate's own feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// The URL scheme (`sqlite`, `postgres`, `postgresql`).
    pub scheme: &'static str,
    /// Its name in messages.
    pub name: &'static str,
    /// The crate feature that builds its driver.
    pub feature: &'static str,
    /// Whether the asking crate was built with that feature.
    pub built: bool,
}

/// The SQL backends of a crate built with SQLite (`sqlite`) and/or
/// PostgreSQL (`postgres`): pass `cfg!(feature = "sqlite")` and
/// `cfg!(feature = "postgres")` of the crate asking.
pub const fn backends(sqlite: bool, postgres: bool) -> [Backend; 3] {
    [
        Backend {
            scheme: "sqlite",
            name: "SQLite",
            feature: "sqlite",
            built: sqlite,
        },
        Backend {
            scheme: "postgres",
            name: "PostgreSQL",
            feature: "postgres",
            built: postgres,
        },
        Backend {
            scheme: "postgresql",
            name: "PostgreSQL",
            feature: "postgres",
            built: postgres,
        },
    ]
}

/// Refuses `url` if its backend is known but not built, naming the feature
/// that builds it: "`what` at `shown`: this build of `krate` has no ...".
/// Other schemes go on to sqlx, which reports them.
pub fn check(
    url: &str,
    shown: &str,
    backends: &[Backend],
    what: &str,
    krate: &str,
) -> Result<(), String> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match backends
        .iter()
        .find(|b| b.scheme.eq_ignore_ascii_case(scheme))
    {
        Some(b) if !b.built => Err(format!(
            "{what} at {shown}: this build of {krate} has no {name} driver; \
             enable its `{feature}` feature ({krate} = {{ features = [\"{feature}\"] }})",
            name = b.name,
            feature = b.feature,
        )),
        _ => Ok(()),
    }
}

/// `url`, made to create its SQLite file if missing (`mode=rwc`) unless it
/// says a mode; other URLs unchanged.
pub fn creating_sqlite_file(url: &str) -> String {
    if is_sqlite(url) && !url.contains("mode=") {
        format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
    } else {
        url.to_owned()
    }
}

/// Whether `url` names a SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("sqlite:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_whose_backend_is_not_built_names_the_feature() {
        let sqlite_only = backends(true, false);
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "POSTGRES://u@h/db",
        ] {
            let msg = check(url, url, &sqlite_only, "table", "the-crate").unwrap_err();
            assert!(msg.contains("PostgreSQL"), "{msg}");
            assert!(msg.contains("`postgres` feature"), "{msg}");
            assert!(
                msg.contains("the-crate = { features = [\"postgres\"] }"),
                "{msg}"
            );
            assert!(msg.starts_with(&format!("table at {url}")), "{msg}");
        }
        assert!(check("sqlite://m.db", "sqlite://m.db", &sqlite_only, "t", "c").is_ok());
        // Schemes it does not know are sqlx's to report.
        assert!(check("mysql://h/db", "mysql://h/db", &sqlite_only, "t", "c").is_ok());
        let postgres_only = backends(false, true);
        let msg = check("sqlite://m.db", "sqlite://m.db", &postgres_only, "t", "c").unwrap_err();
        assert!(msg.contains("`sqlite` feature"), "{msg}");
        assert!(
            check(
                "postgres://h/db",
                "postgres://h/db",
                &postgres_only,
                "t",
                "c"
            )
            .is_ok()
        );
    }

    #[test]
    fn sqlite_urls_create_their_file_unless_they_say_a_mode() {
        assert_eq!(
            creating_sqlite_file("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            creating_sqlite_file("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            creating_sqlite_file("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(creating_sqlite_file("postgres://h/db"), "postgres://h/db");
        assert!(is_sqlite("SQLITE::memory:") && !is_sqlite("postgres://h"));
    }
}
