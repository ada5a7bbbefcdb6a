//! Keeping secrets out of logs and error messages: [`Secret`], a value
//! whose `Debug` and `Display` print `***`, and [`redact_url`], the one
//! helper every crate of the workspace uses to show a connection URL
//! without its password.

use std::fmt;

/// A secret value (a password, a token, a private key) that never shows
/// itself: `Debug` and `Display` print `***`, so a secret inside a
/// configuration struct, an error or a `tracing` field stays out of the
/// output. Read the value with [`expose`](Secret::expose), at the one
/// place that hands it to the driver or library that needs it.
///
/// ```
/// use actor_core::Secret;
///
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "*** ***");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Do not log it or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Query parameters whose value is a secret in the connection URLs of
/// PostgreSQL (libpq), Redis and sqlx.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "sslpassword",
    "passfile_password",
];

/// `url` with its password hidden, for errors and logs:
/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`, and
/// `?password=secret` -> `?password=***`. Only the authority's `@` counts
/// (an `@` in the path or query is not a credential), and a password that
/// itself holds `@` or `:` is hidden whole. URLs with no password come
/// back unchanged.
///
/// ```
/// use actor_core::redact_url;
///
/// assert_eq!(redact_url("postgres://u:p@ss@db:5432/app"), "postgres://u:***@db:5432/app");
/// assert_eq!(redact_url("redis://:pw@localhost/0"), "redis://:***@localhost/0");
/// assert_eq!(redact_url("postgres://db/app?user=u&password=pw"), "postgres://db/app?user=u&password=***");
/// assert_eq!(redact_url("sqlite:///tmp/m.db"), "sqlite:///tmp/m.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let head = &url[..scheme_end + 3];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!("{}:***{}", &authority[..colon], &authority[at..]),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{head}{authority}{}", redact_query(tail))
}

/// The path-query-fragment part of a URL with secret parameters hidden.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)) => {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{path}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        for (url, shown) in [
            (
                "postgres://u:secret@127.0.0.1:5432/test",
                "postgres://u:***@127.0.0.1:5432/test",
            ),
            ("redis://:pw@localhost/0", "redis://:***@localhost/0"),
            (
                "postgres://postgres@127.0.0.1/test",
                "postgres://postgres@127.0.0.1/test",
            ),
            ("sqlite:/tmp/x.db", "sqlite:/tmp/x.db"),
            ("sqlite://x.db", "sqlite://x.db"),
            // An `@` after the authority is not a credential (the copy in
            // actor-cluster took it for one).
            (
                "postgres://h/db?application_name=a@b",
                "postgres://h/db?application_name=a@b",
            ),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?sslmode=require&PASSWORD=x#frag",
                "postgres://h/db?sslmode=require&PASSWORD=***#frag",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_secret_never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    proptest! {
        /// Whatever the password (no `/`, `?`, `#`, `&`: those end the
        /// authority or a query parameter in any URL parser, and come
        /// percent-encoded in a password), it is not in the redacted URL,
        /// and the host and path are.
        #[test]
        fn the_password_never_survives(
            user in "[a-z]{1,8}",
            password in "[A-Z0-9@:!$%^]{6,20}",
            host in "[a-z]{1,8}",
            path in "[a-z]{0,8}",
            in_query in any::<bool>(),
        ) {
            let url = if in_query {
                format!("postgres://{host}/{path}?user={user}&password={password}")
            } else {
                format!("postgres://{user}:{password}@{host}/{path}")
            };
            let shown = redact_url(&url);
            prop_assert!(!shown.contains(&password), "{url} -> {shown}");
            let expected_host = format!("{host}/{path}");
            prop_assert!(shown.contains(&expected_host), "{url} -> {shown}");
        }
    }
}
