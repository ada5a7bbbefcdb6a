//! Where a silo's secrets come from: a [`SecretProvider`] hands out
//! database passwords, TLS keys and tokens by name, from the environment
//! ([`EnvSecrets`]), from files only their owner may read
//! ([`FileSecrets`]) or from a program such as a password manager's CLI
//! ([`CommandSecrets`]). Values come back as [`Secret`]s, which print
//! `***`, and errors name the secret, never its value.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use actor_core::Secret;

use crate::error::{Error, Result};

/// A source of secrets, looked up by name (`db_password`, `tls_key`,
/// `dashboard_token`): the seam between a silo's configuration and
/// wherever its secrets are kept.
///
/// Lookups are synchronous and meant for start-up; from async code call
/// them in `tokio::task::spawn_blocking` when the provider may block (a
/// command, a slow file system). A provider never logs a value and its
/// errors never contain one.
pub trait SecretProvider: fmt::Debug + Send + Sync {
    /// The secret called `name`, or an error saying where it was looked
    /// for and what to do.
    fn secret(&self, name: &str) -> Result<Secret>;
}

impl<P: SecretProvider + ?Sized> SecretProvider for std::sync::Arc<P> {
    fn secret(&self, name: &str) -> Result<Secret> {
        (**self).secret(name)
    }
}

impl<P: SecretProvider + ?Sized> SecretProvider for Box<P> {
    fn secret(&self, name: &str) -> Result<Secret> {
        (**self).secret(name)
    }
}

fn refuse(name: &str, reason: impl fmt::Display) -> Error {
    Error::Config(format!("secret `{name}`: {reason}"))
}

/// Secrets in environment variables: the secret `db_password` is the
/// variable `<PREFIX>DB_PASSWORD` (the name upper-cased, every character
/// other than a letter or digit turned into `_`).
///
/// Environment variables are visible to the process's user (in
/// `/proc/<pid>/environ`) and inherited by its children; prefer
/// [`FileSecrets`] or [`CommandSecrets`] where that matters.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    prefix: String,
}

impl EnvSecrets {
    /// Variables named `prefix` + the secret's name (`prefix` is used as
    /// given: `GRAINS_` makes `db_password` `GRAINS_DB_PASSWORD`).
    pub fn new(prefix: impl Into<String>) -> Self {
        EnvSecrets {
            prefix: prefix.into(),
        }
    }

    /// The variable that holds the secret `name`.
    pub fn variable(&self, name: &str) -> String {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}{name}", self.prefix)
    }
}

impl SecretProvider for EnvSecrets {
    fn secret(&self, name: &str) -> Result<Secret> {
        let var = self.variable(name);
        match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            Ok(_) => Err(refuse(
                name,
                format!("the environment variable {var} is empty"),
            )),
            Err(std::env::VarError::NotPresent) => Err(refuse(
                name,
                format!(
                    "the environment variable {var} is not set; set it, or use another provider"
                ),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(refuse(
                name,
                format!("the environment variable {var} is not UTF-8"),
            )),
        }
    }
}

/// Secrets in files, one per secret: the secret `db_password` is the file
/// `<dir>/db_password` (as a Kubernetes or Docker secret mount lays them
/// out). A trailing newline is dropped. A file that other users may read
/// or write is refused (see [`read_private_file`]), and so is a name that
/// would leave `dir`.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    /// Secrets in the files of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSecrets { dir: dir.into() }
    }
}

impl SecretProvider for FileSecrets {
    fn secret(&self, name: &str) -> Result<Secret> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(refuse(
                name,
                "a file secret's name is letters, digits, `_`, `-` and `.`, and names a file in the secrets directory",
            ));
        }
        let secret = read_private_file(&self.dir.join(name))?;
        let value = secret.expose();
        let value = value.strip_suffix('\n').unwrap_or(value);
        let value = value.strip_suffix('\r').unwrap_or(value);
        Ok(Secret::new(value))
    }
}

/// Reads a file that holds a secret (a password, a private key), refusing
/// it when users other than its owner's group may read or write it: such
/// a key is no longer secret. The error says which `chmod` fixes it.
/// (On systems without Unix permissions the file is read as it is.)
pub fn read_private_file(path: &Path) -> Result<Secret> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot open the secret file {shown}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| Error::Config(format!("cannot read the mode of {shown}: {e}")))?
            .permissions()
            .mode();
        if mode & 0o007 != 0 {
            return Err(Error::Config(format!(
                "the secret file {shown} can be read or written by any user (mode {:o}); run `chmod o-rwx {shown}` (or `chmod 600`) and try again",
                mode & 0o777
            )));
        }
    }
    let mut text = String::new();
    let mut file = file;
    file.read_to_string(&mut text)
        .map_err(|e| Error::Config(format!("cannot read the secret file {shown}: {e}")))?;
    Ok(Secret::new(text))
}

/// Secrets printed by a program: for the secret `db_password` it runs
/// `program args.. db_password` (no shell) and takes its standard output,
/// without the trailing newline; for example `pass show grains/` with
/// the name appended, or a vault CLI. The program must exit with success
/// within the timeout (30 s unless set), or the lookup fails with its
/// exit status and the start of its standard error.
#[derive(Debug, Clone)]
pub struct CommandSecrets {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl CommandSecrets {
    /// Runs `program` with `args`, then the secret's name.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        CommandSecrets {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Kills the program and fails the lookup after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// How much of a failed program's standard error an error quotes.
const STDERR_QUOTED: usize = 200;

impl SecretProvider for CommandSecrets {
    fn secret(&self, name: &str) -> Result<Secret> {
        let program = self.program.display();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| refuse(name, format!("cannot run {program}: {e}")))?;
        // Drain both pipes beside the wait, so a chatty program cannot
        // block on a full pipe.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(refuse(
                        name,
                        format!(
                            "{program} did not finish within {:?}; it was killed",
                            self.timeout
                        ),
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(refuse(name, format!("cannot wait for {program}: {e}"))),
            }
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            let err: String = err.trim().chars().take(STDERR_QUOTED).collect();
            return Err(refuse(name, format!("{program} failed ({status}): {err}")));
        }
        let value = String::from_utf8(out).map_err(|_| {
            refuse(
                name,
                format!("{program} printed something that is not UTF-8"),
            )
        })?;
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.is_empty() {
            return Err(refuse(name, format!("{program} printed nothing")));
        }
        Ok(Secret::new(value))
    }
}

/// `url` with `password` set as its password (`scheme://user@host/db` ->
/// `scheme://user:password@host/db`), percent-encoding the characters a
/// URL's user-info cannot hold, as a [`Secret`]: how a configuration
/// keeps the URL in its file and the password in a provider. Show the
/// URL with [`redact_url`](actor_core::redact_url).
pub fn url_with_password(url: &str, password: &Secret) -> Result<Secret> {
    let scheme_end = url.find("://").ok_or_else(|| {
        Error::Config(format!(
            "`{}` is not a URL (no `://`)",
            actor_core::redact_url(url)
        ))
    })?;
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = match authority.rfind('@') {
        Some(at) => {
            let user = &authority[..at];
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            (user, &authority[at + 1..])
        }
        None => {
            return Err(Error::Config(format!(
                "`{}` names no user; write `scheme://user@host/...` so the password has a user to go with",
                actor_core::redact_url(url)
            )));
        }
    };
    let mut encoded = String::new();
    for b in password.expose().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(Secret::new(format!(
        "{}{user}:{encoded}@{host}{tail}",
        &url[..scheme_end + 3]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_upper_case_with_a_prefix() {
        let env = EnvSecrets::new("GRAINS_");
        assert_eq!(env.variable("db_password"), "GRAINS_DB_PASSWORD");
        assert_eq!(env.variable("tls.key-pem"), "GRAINS_TLS_KEY_PEM");
    }

    #[test]
    fn passwords_go_into_urls_encoded() {
        let url = url_with_password(
            "postgres://app@127.0.0.1:5432/db",
            &Secret::new("p@ss:w/rd"),
        )
        .unwrap();
        assert_eq!(
            url.expose(),
            "postgres://app:p%40ss%3Aw%2Frd@127.0.0.1:5432/db"
        );
        assert_eq!(
            actor_core::redact_url(url.expose()),
            "postgres://app:***@127.0.0.1:5432/db"
        );
        let replaced = url_with_password("postgres://app:old@h/db", &Secret::new("new")).unwrap();
        assert_eq!(replaced.expose(), "postgres://app:new@h/db");
        let err = url_with_password("postgres://h/db", &Secret::new("Zq9x")).unwrap_err();
        assert!(err.to_string().contains("names no user"), "{err}");
        assert!(!err.to_string().contains("Zq9x"), "{err}");
    }
}
