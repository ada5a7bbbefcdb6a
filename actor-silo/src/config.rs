//! The silo's configuration: a TOML file, then environment variables over
//! it, then checks. Every value is checked before anything is started, so
//! that a mistake is one clear error at start, not a silo that half joins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration of one silo process. Read it with
/// [`SiloConfig::load`] (file and environment) or
/// [`SiloConfig::from_toml`]; every field has a default except the
/// membership URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SiloConfig {
    /// The silo's name, in logs, the table and the dashboard
    /// (default: `silo`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Where the silo link and the client gateway listen (default
    /// `127.0.0.1:11111`; port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The `host:port` other silos and clients reach this silo at, when
    /// it is not `listen` (a wildcard `listen` such as `0.0.0.0:11111`
    /// needs it).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The cluster id: silos of one cluster share it and the table.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    /// The membership table.
    pub membership: MembershipConfig,
    /// Timings of failure detection.
    #[serde(default)]
    pub cluster: TimingConfig,
    /// Grain storage providers by name; the one named `default` is what
    /// grains load from unless they name another. Without any, a memory
    /// provider is the default (state then lives as long as the process).
    #[serde(default)]
    pub storage: BTreeMap<String, StorageConfig>,
    /// The live dashboard.
    #[serde(default)]
    pub dashboard: DashboardSection,
    /// The readiness and liveness endpoints.
    #[serde(default)]
    pub health: HealthConfig,
    /// Where the built-in ledger grain records its activations and turns
    /// (one JSON line each), for tools such as the chaos harness.
    #[serde(default)]
    pub record_file: Option<PathBuf>,
}

/// `[membership]`: where the table is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    /// How long to wait for the database at start, in milliseconds
    /// (default 5000).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
}

/// `[cluster]`: failure-detection timings, from a profile with overrides.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TimingConfig {
    /// `default` (production: dead in about 4 s) or `fast` (tests on
    /// loopback). Default: `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Probe period, in milliseconds.
    pub probe_interval_ms: Option<u64>,
    /// How long a probe may take, in milliseconds.
    pub probe_timeout_ms: Option<u64>,
    /// Missed probes in a row before a vote.
    pub missed_probes: Option<u32>,
    /// Votes that declare a silo dead.
    pub votes_to_kill: Option<usize>,
    /// Heartbeat period, in milliseconds.
    pub i_am_alive_interval_ms: Option<u64>,
    /// The membership lease, in milliseconds.
    pub lease_ms: Option<u64>,
    /// The most calls this silo accepts in flight from its links before
    /// it sheds more with `Overloaded` (default 20,000; see
    /// `ClusterConfig::max_calls_in_flight`).
    pub max_calls_in_flight: Option<usize>,
}

/// One `[storage.NAME]` provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageConfig {
    /// `memory`, `sqlite://file.db`, `postgres://...` or `redis://...`.
    pub url: String,
    /// Table prefix (SQL) or key prefix (Redis); the provider's default
    /// when absent.
    #[serde(default)]
    pub table_prefix: Option<String>,
}

/// `[dashboard]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DashboardSection {
    /// Whether the silo serves the dashboard (default: off).
    #[serde(default)]
    pub enabled: bool,
    /// Where (default `127.0.0.1:8080`).
    #[serde(default = "default_dashboard_bind")]
    pub bind: String,
}

impl Default for DashboardSection {
    fn default() -> Self {
        DashboardSection {
            enabled: false,
            bind: default_dashboard_bind(),
        }
    }
}

/// `[health]`: `GET /livez` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Where the endpoints listen (default `127.0.0.1:8081`); `off`
    /// serves none.
    #[serde(default = "default_health_bind")]
    pub bind: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bind: default_health_bind(),
        }
    }
}

fn default_name() -> String {
    "silo".into()
}
fn default_listen() -> String {
    "127.0.0.1:11111".into()
}
fn default_cluster_id() -> String {
    "default".into()
}
fn default_connect_timeout() -> u64 {
    5000
}
fn default_dashboard_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_health_bind() -> String {
    "127.0.0.1:8081".into()
}

/// The environment variables read over the file, each with the key it
/// replaces.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("SILO_NAME", "name"),
    ("SILO_LISTEN", "listen"),
    ("SILO_ADVERTISE", "advertise"),
    ("SILO_CLUSTER_ID", "cluster_id"),
    ("SILO_MEMBERSHIP_URL", "membership.url"),
    ("SILO_STORAGE_URL", "storage.default.url"),
    ("SILO_STORAGE_PREFIX", "storage.default.table_prefix"),
    ("SILO_DASHBOARD", "dashboard.enabled (on/off)"),
    ("SILO_DASHBOARD_BIND", "dashboard.bind"),
    ("SILO_HEALTH_BIND", "health.bind"),
    ("SILO_RECORD_FILE", "record_file"),
    ("SILO_PROFILE", "cluster.profile"),
    ("SILO_LEASE_MS", "cluster.lease_ms"),
];

/// What a silo binds and announces, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Addresses {
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<String>,
    pub(crate) dashboard: Option<SocketAddr>,
    pub(crate) health: Option<SocketAddr>,
}

impl SiloConfig {
    /// Reads `path` (if given), applies the `SILO_*` variables of `env`
    /// over it (see [`ENV_VARS`]), and checks the result. Without a file,
    /// the environment must give at least `SILO_MEMBERSHIP_URL`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<SiloConfig> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| Error::ReadConfig {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SILO_"))
            .collect();
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| Error::ParseConfig {
            path: path.map(Path::to_owned).unwrap_or_default(),
            message: e.to_string(),
        })?;
        if path.is_none() && !env.contains_key("SILO_MEMBERSHIP_URL") {
            return Err(Error::Usage(
                "no --config FILE and no SILO_MEMBERSHIP_URL: the silo does not know its membership table".into(),
            ));
        }
        apply_env(&mut table, &env)?;
        let config: SiloConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| Error::ParseConfig {
                    path: path.map(Path::to_owned).unwrap_or_default(),
                    message: e.to_string(),
                })?;
        config.addresses()?;
        config.cluster_config()?;
        config.check_urls()?;
        Ok(config)
    }

    /// Parses and checks a configuration given as TOML text (no
    /// environment).
    pub fn from_toml(text: &str) -> Result<SiloConfig> {
        let config: SiloConfig = toml::from_str(text).map_err(|e| Error::ParseConfig {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.addresses()?;
        config.cluster_config()?;
        config.check_urls()?;
        Ok(config)
    }

    pub(crate) fn addresses(&self) -> Result<Addresses> {
        let listen: SocketAddr = parse_addr("listen", &self.listen)?;
        if let Some(a) = &self.advertise {
            check_host_port("advertise", a)?;
        } else if listen.ip().is_unspecified() {
            return Err(invalid(
                "listen",
                format!(
                    "{} listens on every interface, which is no address others can reach; \
                     set `advertise` (or SILO_ADVERTISE) to this host's address, such as 10.0.0.5:{}",
                    self.listen,
                    listen.port()
                ),
            ));
        }
        let dashboard = if self.dashboard.enabled {
            Some(parse_addr("dashboard.bind", &self.dashboard.bind)?)
        } else {
            None
        };
        let health = if self.health.bind == "off" {
            None
        } else {
            Some(parse_addr("health.bind", &self.health.bind)?)
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "the silo needs a non-empty name".into()));
        }
        Ok(Addresses {
            listen,
            advertise: self.advertise.clone(),
            dashboard,
            health,
        })
    }

    fn check_urls(&self) -> Result<()> {
        let m = &self.membership.url;
        if !(m.starts_with("sqlite:") || m.starts_with("postgres:") || m.starts_with("postgresql:"))
        {
            return Err(invalid(
                "membership.url",
                format!(
                    "`{}` is neither sqlite://FILE nor postgres://USER@HOST:PORT/DB",
                    redact(m)
                ),
            ));
        }
        for (name, s) in &self.storage {
            let u = &s.url;
            let known = u == "memory"
                || ["sqlite:", "postgres:", "postgresql:", "redis:", "rediss:"]
                    .iter()
                    .any(|p| u.starts_with(p));
            if !known {
                return Err(invalid(
                    &format!("storage.{name}.url"),
                    format!(
                        "`{}` is not a storage URL: use memory, sqlite://FILE, postgres://... or redis://...",
                        redact(u)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The cluster timings: the profile, then the overrides.
    pub fn cluster_config(&self) -> Result<actor_cluster::ClusterConfig> {
        let t = &self.cluster;
        let mut c = match t.profile.as_deref() {
            None | Some("default") => actor_cluster::ClusterConfig::default(),
            Some("fast") => actor_cluster::ClusterConfig::fast(),
            Some(other) => {
                return Err(invalid(
                    "cluster.profile",
                    format!("unknown profile `{other}`: use `default` or `fast`"),
                ));
            }
        };
        let ms = |field: &str, v: Option<u64>| -> Result<Option<Duration>> {
            match v {
                Some(0) => Err(invalid(field, "must be more than 0 ms".into())),
                Some(v) => Ok(Some(Duration::from_millis(v))),
                None => Ok(None),
            }
        };
        if let Some(d) = ms("cluster.probe_interval_ms", t.probe_interval_ms)? {
            c.probe_interval = d;
        }
        if let Some(d) = ms("cluster.probe_timeout_ms", t.probe_timeout_ms)? {
            c.probe_timeout = d;
        }
        if let Some(d) = ms("cluster.i_am_alive_interval_ms", t.i_am_alive_interval_ms)? {
            c.i_am_alive_interval = d;
        }
        if let Some(d) = ms("cluster.lease_ms", t.lease_ms)? {
            c.lease = d;
        }
        if let Some(n) = t.missed_probes {
            if n == 0 {
                return Err(invalid(
                    "cluster.missed_probes",
                    "must be at least 1".into(),
                ));
            }
            c.missed_probes = n;
        }
        if let Some(n) = t.max_calls_in_flight {
            if n == 0 {
                return Err(invalid(
                    "cluster.max_calls_in_flight",
                    "must be at least 1 (a silo that accepts no call serves nothing)".into(),
                ));
            }
            c.max_calls_in_flight = n;
        }
        if let Some(n) = t.votes_to_kill {
            if n == 0 {
                return Err(invalid(
                    "cluster.votes_to_kill",
                    "must be at least 1".into(),
                ));
            }
            c.votes_to_kill = n;
        }
        c.advertise = self.advertise.clone();
        Ok(c)
    }

    /// How long to wait for the membership database at start.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.membership.connect_timeout_ms.max(1))
    }
}

fn invalid(field: &str, message: String) -> Error {
    Error::Invalid {
        field: field.to_owned(),
        message,
    }
}

fn parse_addr(field: &str, s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        invalid(
            field,
            format!("`{s}` is not an IP address and port, such as 127.0.0.1:11111"),
        )
    })
}

fn check_host_port(field: &str, s: &str) -> Result<()> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(())
        }
        _ => Err(invalid(
            field,
            format!("`{s}` is not HOST:PORT with a port above 0, such as 10.0.0.5:11111"),
        )),
    }
}

/// A URL without its password, for messages: the workspace's one helper.
pub(crate) use actor_core::redact_url as redact;

fn apply_env(table: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<()> {
    use toml::Value;
    fn section<'a>(table: &'a mut toml::Table, key: &str) -> Result<&'a mut toml::Table> {
        let v = table
            .entry(key.to_owned())
            .or_insert_with(|| Value::Table(Default::default()));
        v.as_table_mut().ok_or_else(|| {
            invalid(
                key,
                "must be a table ([section]) to be overridden from the environment".into(),
            )
        })
    }
    for (var, value) in env {
        let s = Value::String(value.clone());
        match var.as_str() {
            "SILO_NAME" => drop(table.insert("name".into(), s)),
            "SILO_LISTEN" => drop(table.insert("listen".into(), s)),
            "SILO_ADVERTISE" => drop(table.insert("advertise".into(), s)),
            "SILO_CLUSTER_ID" => drop(table.insert("cluster_id".into(), s)),
            "SILO_RECORD_FILE" => drop(table.insert("record_file".into(), s)),
            "SILO_MEMBERSHIP_URL" => drop(section(table, "membership")?.insert("url".into(), s)),
            "SILO_STORAGE_URL" | "SILO_STORAGE_PREFIX" => {
                let storage = section(table, "storage")?;
                let default = section(storage, "default")?;
                let key = if var == "SILO_STORAGE_URL" {
                    "url"
                } else {
                    "table_prefix"
                };
                default.insert(key.into(), s);
            }
            "SILO_DASHBOARD" => {
                let on = match value.to_ascii_lowercase().as_str() {
                    "1" | "on" | "true" | "yes" => true,
                    "0" | "off" | "false" | "no" => false,
                    _ => {
                        return Err(invalid(
                            "SILO_DASHBOARD",
                            format!("`{value}` is not on or off"),
                        ));
                    }
                };
                section(table, "dashboard")?.insert("enabled".into(), Value::Boolean(on));
            }
            "SILO_DASHBOARD_BIND" => drop(section(table, "dashboard")?.insert("bind".into(), s)),
            "SILO_HEALTH_BIND" => drop(section(table, "health")?.insert("bind".into(), s)),
            "SILO_PROFILE" => drop(section(table, "cluster")?.insert("profile".into(), s)),
            "SILO_LEASE_MS" => {
                let ms: i64 = value.parse().map_err(|_| {
                    invalid(
                        "SILO_LEASE_MS",
                        format!("`{value}` is not a number of milliseconds"),
                    )
                })?;
                section(table, "cluster")?.insert("lease_ms".into(), Value::Integer(ms));
            }
            other => {
                let known: Vec<&str> = ENV_VARS.iter().map(|(v, _)| *v).collect();
                return Err(invalid(
                    other,
                    format!(
                        "unknown SILO_ variable; the silo reads {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "a"
        listen = "127.0.0.1:0"
        [membership]
        url = "sqlite:///tmp/m.db"
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<SiloConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.toml");
        std::fs::write(&path, text).unwrap();
        SiloConfig::load(Some(&path), env(vars))
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = load(GOOD, &[]).unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.cluster_id, "default");
        assert!(!c.dashboard.enabled);
        assert_eq!(c.health.bind, "127.0.0.1:8081");
        let t = c.cluster_config().unwrap();
        assert_eq!(t.lease, actor_cluster::ClusterConfig::default().lease);
        assert_eq!(
            t.max_calls_in_flight,
            actor_cluster::ClusterConfig::default().max_calls_in_flight
        );
    }

    #[test]
    fn the_bound_on_calls_in_flight_is_set_by_the_file() {
        let c = load(
            &format!(
                "{GOOD}
[cluster]
max_calls_in_flight = 500
"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.cluster_config().unwrap().max_calls_in_flight, 500);
        let e = load(
            &format!(
                "{GOOD}
[cluster]
max_calls_in_flight = 0
"
            ),
            &[],
        )
        .unwrap_err();
        assert!(message(e).contains("max_calls_in_flight"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let c = load(
            GOOD,
            &[
                ("SILO_NAME", "b"),
                ("SILO_LISTEN", "0.0.0.0:7000"),
                ("SILO_ADVERTISE", "10.0.0.5:7000"),
                (
                    "SILO_MEMBERSHIP_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                ),
                ("SILO_STORAGE_URL", "memory"),
                ("SILO_DASHBOARD", "on"),
                ("SILO_DASHBOARD_BIND", "127.0.0.1:0"),
                ("SILO_HEALTH_BIND", "off"),
                ("SILO_LEASE_MS", "2500"),
                ("PATH", "/bin"), // not ours: ignored
            ],
        )
        .unwrap();
        assert_eq!(c.name, "b");
        assert_eq!(c.advertise.as_deref(), Some("10.0.0.5:7000"));
        assert!(c.membership.url.starts_with("postgres://"));
        assert_eq!(c.storage["default"].url, "memory");
        assert!(c.dashboard.enabled);
        let a = c.addresses().unwrap();
        assert_eq!(a.health, None);
        assert!(a.dashboard.is_some());
        let t = c.cluster_config().unwrap();
        assert_eq!(t.lease, Duration::from_millis(2500));
        assert_eq!(t.advertise.as_deref(), Some("10.0.0.5:7000"));
    }

    #[test]
    fn environment_alone_is_enough() {
        let c = SiloConfig::load(
            None,
            env(&[
                ("SILO_MEMBERSHIP_URL", "sqlite:///tmp/x.db"),
                ("SILO_NAME", "e"),
            ]),
        )
        .unwrap();
        assert_eq!(c.name, "e");
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_missing_file_says_which() {
        let e = SiloConfig::load(Some(Path::new("/nonexistent/silo.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, Error::ReadConfig { .. }), "{e:?}");
        assert!(message(e).contains("/nonexistent/silo.toml"));
    }

    #[test]
    fn broken_toml_names_the_line() {
        let e = load("name = \"a\"\nlisten = \n", &[]).unwrap_err();
        assert!(matches!(e, Error::ParseConfig { .. }), "{e:?}");
        assert!(message(e).contains("line 2"));
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = load(&format!("{GOOD}\nlisten_port = 3\n"), &[]).unwrap_err();
        assert!(message(e).contains("listen_port"));
    }

    #[test]
    fn a_wrong_type_is_refused() {
        let e = load("name = 3\n[membership]\nurl = \"sqlite://m.db\"\n", &[]).unwrap_err();
        assert!(matches!(e, Error::ParseConfig { .. }), "{e:?}");
        assert!(message(e).contains("name"));
    }

    #[test]
    fn the_membership_table_is_required() {
        let e = load("name = \"a\"\n", &[]).unwrap_err();
        assert!(message(e).contains("membership"));
        let e = SiloConfig::load(None, env(&[])).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e:?}");
    }

    #[test]
    fn a_bad_membership_url_is_refused_with_its_password_hidden() {
        let e = load("[membership]\nurl = \"mysql://root:hunter2@db/x\"\n", &[]).unwrap_err();
        let m = message(e);
        assert!(m.contains("membership.url"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn a_bad_storage_url_names_the_provider() {
        let e = load(
            &format!("{GOOD}\n[storage.archive]\nurl = \"s3://bucket\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(message(e).contains("storage.archive.url"));
    }

    #[test]
    fn a_bad_address_is_refused() {
        let e = load(GOOD, &[("SILO_LISTEN", "localhost")]).unwrap_err();
        assert!(message(e).contains("listen"));
        let e = load(GOOD, &[("SILO_ADVERTISE", "10.0.0.1")]).unwrap_err();
        assert!(message(e).contains("advertise"));
        let e = load(GOOD, &[("SILO_HEALTH_BIND", "nowhere")]).unwrap_err();
        assert!(message(e).contains("health.bind"));
    }

    #[test]
    fn a_wildcard_listen_needs_an_advertised_address() {
        let e = load(GOOD, &[("SILO_LISTEN", "0.0.0.0:11111")]).unwrap_err();
        let m = message(e);
        assert!(m.contains("advertise"), "{m}");
    }

    #[test]
    fn bad_timings_are_refused() {
        let e = load(&format!("{GOOD}\n[cluster]\nprofile = \"slow\"\n"), &[]).unwrap_err();
        assert!(message(e).contains("slow"));
        let e = load(&format!("{GOOD}\n[cluster]\nlease_ms = 0\n"), &[]).unwrap_err();
        assert!(message(e).contains("lease_ms"));
        let e = load(GOOD, &[("SILO_LEASE_MS", "soon")]).unwrap_err();
        assert!(message(e).contains("SILO_LEASE_MS"));
    }

    #[test]
    fn bad_environment_variables_are_refused() {
        let e = load(GOOD, &[("SILO_DASHBOARD", "maybe")]).unwrap_err();
        assert!(message(e).contains("SILO_DASHBOARD"));
        let e = load(GOOD, &[("SILO_LISTN", "127.0.0.1:1")]).unwrap_err();
        assert!(message(e).contains("SILO_LISTN"));
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
