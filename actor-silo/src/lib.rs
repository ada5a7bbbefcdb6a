//! # actor-silo: the standalone silo binary
//!
//! `silo --config silo.toml` runs one silo of a cluster as a process of
//! its own: it opens its storage providers and the membership table,
//! joins the cluster, serves the silo link (which is also the gateway
//! external [`ClusterClient`](actor_cluster::ClusterClient)s connect to),
//! the readiness and liveness endpoints and, if asked, the dashboard, and
//! leaves the cluster gracefully on SIGTERM or SIGINT. It is the unit of
//! deployment: one per host (or per network namespace, as the chaos
//! harness in `actor-chaos` runs it).
//!
//! What it does not do: host your own grain types. It hosts one built-in
//! grain, the [`Ledger`] (below), which is what operational tools and the
//! chaos harness call. To host your own grains, build your binary from
//! this crate's parts, [`SiloConfig`] and [`RunningSilo`], or from
//! `ClusterSilo` directly (see `examples/hosting`).
//!
//! ## The configuration file
//!
//! ```toml
//! name = "silo-a"                   # default "silo"
//! listen = "0.0.0.0:11111"          # silo link and client gateway
//! advertise = "10.0.0.5:11111"      # what others dial; needed with 0.0.0.0
//! cluster_id = "orders"             # default "default"
//! record_file = "/var/log/silo/ledger.jsonl"   # optional, see Ledger
//!
//! [membership]
//! url = "postgres://postgres@127.0.0.1:5432/test"   # or sqlite:///path/m.db
//! connect_timeout_ms = 5000
//!
//! [cluster]                          # failure detection; all optional
//! profile = "default"                # or "fast" (tests on loopback)
//! lease_ms = 2000
//! probe_interval_ms = 1000
//! max_calls_in_flight = 20000        # past it calls are shed: Overloaded
//!
//! [storage.default]                  # what grains load from
//! url = "postgres://postgres@127.0.0.1:5432/test"   # memory, sqlite://, redis://
//! table_prefix = "grain"
//!
//! [dashboard]
//! enabled = true
//! bind = "127.0.0.1:8080"
//!
//! [health]
//! bind = "127.0.0.1:8081"            # "off" serves none
//! ```
//!
//! Unknown keys and keys of the wrong type are refused with the line they
//! are on; every address and URL is checked before the silo joins. Only
//! `[membership] url` is required; without a `[storage.default]` grains
//! store in memory.
//!
//! ## The environment
//!
//! Each `SILO_*` variable replaces one key of the file (see [`ENV_VARS`]):
//! `SILO_NAME`, `SILO_LISTEN`, `SILO_ADVERTISE`, `SILO_CLUSTER_ID`,
//! `SILO_MEMBERSHIP_URL`, `SILO_STORAGE_URL`, `SILO_STORAGE_PREFIX`,
//! `SILO_DASHBOARD` (`on`/`off`), `SILO_DASHBOARD_BIND`,
//! `SILO_HEALTH_BIND`, `SILO_RECORD_FILE`, `SILO_PROFILE`,
//! `SILO_LEASE_MS`. A misspelt `SILO_` variable is an error, not silently
//! ignored. Secrets (a database password) belong in the environment
//! rather than the file; errors show URLs with the password masked.
//! Without `--config`, the environment alone configures the silo.
//!
//! ## Its life
//!
//! Once it serves, the process prints one line on stdout,
//! `READY <name> <pid> <endpoint> <health address or -> <dashboard url or ->`,
//! and from then on:
//!
//! - `GET /livez` answers 200 while the process runs and has not been
//!   declared dead; `GET /readyz` answers 200 while it serves, is in the
//!   cluster's active view and is not leaving, and 503 with the reason
//!   otherwise.
//! - SIGTERM or SIGINT: a graceful leave (the row goes to `ShuttingDown`,
//!   the grains deactivate, the row goes to `Dead`), then exit 0.
//! - Declared dead by the others (it was unreachable): it stops serving
//!   and exits with status 3, for its supervisor to restart it (as a new
//!   generation).
//! - A bad configuration: a one-line error on stderr and exit status 2.
//!
//! ## The built-in grain
//!
//! [`Ledger`] (type `silo.ledger`, any key) keeps a list of operation ids
//! in the default storage provider. `append(op)` adds one and answers only
//! once the write is stored, with the silo, the activation id and the
//! turn's start and end ([`Appended`]); `ops()` answers the list. With
//! `record_file` set, every activation and every append is also written
//! to that file as one JSON line ([`Record`]), flushed as it happens, so
//! that a tool can check from outside, even after `kill -9`, that no
//! ledger was active on two silos at once and no acknowledged append was
//! lost.

mod config;
mod error;
mod health;
mod ledger;
mod process;
mod run;

pub use config::{
    DashboardSection, ENV_VARS, HealthConfig, MembershipConfig, SiloConfig, StorageConfig,
    TimingConfig,
};
pub use error::{Error, Result};
pub use ledger::{
    Appended, LEDGER_TYPE, Ledger, LedgerAppend, LedgerOps, LedgerRef, LedgerState, Record,
    RecordFile, now_micros,
};
pub use process::run_process;
pub use run::RunningSilo;

/// The first word of the line the binary prints once it serves.
pub const READY: &str = "READY";

/// The exit status of a silo that stopped because it was declared dead.
pub const EXIT_DECLARED_DEAD: i32 = 3;

/// The exit status of a bad configuration or a failed start.
pub const EXIT_CONFIG: i32 = 2;
