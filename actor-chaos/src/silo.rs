//! The silo processes of a run: started (in their namespace) from a
//! generated configuration file, signalled, killed, restarted. Each
//! incarnation writes its ledger records to a file of its own, and its
//! stderr to a log beside it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::net::SiloNet;

/// How long a silo may take to print READY (a loaded machine, a fresh
/// PostgreSQL pool).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One silo of the run, over its incarnations.
#[derive(Debug)]
pub struct SiloProc {
    /// `s0`, `s1`, ...
    pub name: String,
    /// Its index.
    pub index: usize,
    net: SiloNet,
    config: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub incarnations: usize,
    /// The process id of the current incarnation.
    pub pid: Option<u32>,
}

impl SiloProc {
    /// Writes silo `index`'s configuration into `dir`.
    pub fn new(
        index: usize,
        net: SiloNet,
        dir: &Path,
        cluster_id: &str,
        state_prefix: &str,
        lease: std::time::Duration,
    ) -> Result<SiloProc> {
        let name = format!("s{index}");
        let config = dir.join(format!("{name}.toml"));
        let text = format!(
            r#"# Written by the chaos harness.
name = "{name}"
listen = "{listen}"
advertise = "{advertise}"
cluster_id = "{cluster_id}"

[membership]
url = "{db}"

[cluster]
profile = "default"
lease_ms = {lease_ms}

[storage.default]
url = "{db}"
table_prefix = "{state_prefix}"

[health]
bind = "{health}"
"#,
            listen = net.listen,
            advertise = net.advertise,
            db = net.database_url,
            health = net.health,
            lease_ms = lease.as_millis(),
        );
        std::fs::write(&config, text).map_err(|source| Error::Io {
            path: config.clone(),
            source,
        })?;
        Ok(SiloProc {
            name,
            index,
            net,
            config,
            dir: dir.to_owned(),
            child: None,
            incarnations: 0,
            pid: None,
        })
    }

    /// The endpoint it announces.
    pub fn endpoint(&self) -> &str {
        &self.net.advertise
    }

    /// Its health endpoints.
    pub fn health(&self) -> &str {
        &self.net.health
    }

    /// The record files of every incarnation so far.
    pub fn record_files(&self) -> Vec<PathBuf> {
        (0..self.incarnations)
            .map(|k| self.dir.join(format!("{}-{k}.records.jsonl", self.name)))
            .collect()
    }

    /// Starts a new incarnation with `command` (program and leading
    /// arguments: `silo`, or `chaos silo`) and waits for READY.
    pub async fn start(&mut self, command: &[String]) -> Result<()> {
        let k = self.incarnations;
        self.incarnations += 1;
        let record = self.dir.join(format!("{}-{k}.records.jsonl", self.name));
        let log_path = self.dir.join(format!("{}-{k}.log", self.name));
        let log = std::fs::File::create(&log_path).map_err(|source| Error::Io {
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = match &self.net.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&command[0]);
                c
            }
            None => Command::new(&command[0]),
        };
        cmd.args(&command[1..])
            .arg("--config")
            .arg(&self.config)
            .env("SILO_RECORD_FILE", &record)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_SILO_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Silo {
            name: self.name.clone(),
            message: format!("cannot start `{}`: {e}", command.join(" ")),
        })?;
        self.pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(actor_silo::READY) {
                    return true;
                }
            }
            false
        })
        .await;
        // Keep reading stdout so that the silo never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        match ready {
            Ok(true) => Ok(()),
            _ => {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                self.kill9().await;
                Err(Error::Silo {
                    name: self.name.clone(),
                    message: format!(
                        "did not print READY within {START_TIMEOUT:?}; its log ends: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                })
            }
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`) to the current
    /// incarnation.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// `kill -9` and reaps it.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.pid = None;
    }

    /// If the current incarnation has exited on its own, its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.pid = None;
        Some(status)
    }

    /// Whether an incarnation is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM, then waits up to `grace` for a clean exit before killing.
    pub async fn stop(&mut self, grace: Duration) {
        self.signal("-CONT");
        self.signal("-TERM");
        if let Some(c) = self.child.as_mut()
            && tokio::time::timeout(grace, c.wait()).await.is_err()
        {
            self.kill9().await;
        }
        self.child = None;
        self.pid = None;
    }
}
