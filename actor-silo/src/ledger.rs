//! The built-in grain: a ledger of operation ids, persisted through the
//! default storage provider, that records every activation and turn
//! (silo, activation id, start, end) so that a tool can check single
//! activation and lost writes from outside.
//!
//! An append is acknowledged only once the write is stored; a write that
//! fails (conflict, outage) fails the call and drops the activation, so
//! the next call reloads the stored state.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use actor_core::SiloBuilder;
use actor_core::prelude::*;
use actor_persistence::PersistentState;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The grain type name of [`Ledger`].
pub const LEDGER_TYPE: &str = "silo.ledger";

/// The stored state: every operation id appended, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// The appended operation ids.
    pub ops: Vec<u64>,
}

/// A grain that appends operation ids to its persisted [`LedgerState`].
pub struct Ledger {
    state: PersistentState<LedgerState>,
    activation: String,
    recorder: Option<Arc<RecordFile>>,
}

impl Grain for Ledger {
    const TYPE_NAME: &'static str = LEDGER_TYPE;
}

/// What one acknowledged append tells its caller: where and when it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The silo that ran the turn.
    pub silo: String,
    /// The activation that ran it (unique per activation, over restarts).
    pub activation: String,
    /// When the turn started, in microseconds since the Unix epoch.
    pub start_us: i64,
    /// When the write was stored, in microseconds since the Unix epoch.
    pub end_us: i64,
    /// How many ops the ledger holds now.
    pub len: usize,
}

/// One line of the record file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The grain's key.
    pub grain: String,
    /// The activation id.
    pub activation: String,
    /// The silo's name.
    pub silo: String,
    /// `activate` (state loaded) or `append`.
    pub kind: String,
    /// Start, in microseconds since the Unix epoch.
    pub start_us: i64,
    /// End, in microseconds since the Unix epoch.
    pub end_us: i64,
    /// The op id of an append (0 for an activation).
    pub op: u64,
    /// Whether the append was stored.
    pub ok: bool,
    /// Whether its write was refused before it was sent because the
    /// silo's lease had run out (`actor_persistence::Error::Fenced`): the
    /// turn changed nothing.
    #[serde(default)]
    pub fenced: bool,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[actor_core::grain_methods]
impl Ledger {
    /// Appends `op` and stores the ledger before answering.
    pub async fn append(&mut self, op: u64, ctx: &GrainContext<Self>) -> Result<Appended, String> {
        let start_us = now_micros();
        self.state.state_mut().ops.push(op);
        let stored = self.state.write_or_reset(ctx).await;
        let end_us = now_micros();
        self.record_append(start_us, end_us, op, &stored, ctx);
        stored.map_err(|e| e.to_string())?;
        Ok(Appended {
            silo: ctx.silo().name().to_owned(),
            activation: self.activation.clone(),
            start_us,
            end_us,
            len: self.state.state().ops.len(),
        })
    }

    /// The ledger as this activation holds it.
    pub async fn ops(&mut self) -> Vec<u64> {
        self.state.state().ops.clone()
    }
}

impl Ledger {
    fn record_append(
        &self,
        start_us: i64,
        end_us: i64,
        op: u64,
        stored: &actor_persistence::Result<()>,
        ctx: &GrainContext<Self>,
    ) {
        let ok = stored.is_ok();
        let fenced = matches!(stored, Err(actor_persistence::Error::Fenced { .. }));
        if let Some(r) = &self.recorder {
            r.write(&Record {
                grain: ctx.key().to_string(),
                activation: self.activation.clone(),
                silo: ctx.silo().name().to_owned(),
                kind: "append".to_owned(),
                start_us,
                end_us,
                op,
                ok,
                fenced,
            });
        }
    }
}

/// Registers [`Ledger`] on `builder`, loading its state from the default
/// provider and recording to `recorder` if given.
pub(crate) fn register(builder: SiloBuilder, recorder: Option<Arc<RecordFile>>) -> SiloBuilder {
    builder.grain_with_async(move |ctx| {
        let recorder = recorder.clone();
        async move {
            let start_us = now_micros();
            let state = PersistentState::load(&ctx, "ledger").await?;
            let activation = uuid::Uuid::new_v4().to_string();
            let end_us = now_micros();
            if let Some(r) = &recorder {
                r.write(&Record {
                    grain: ctx.id().key.to_string(),
                    activation: activation.clone(),
                    silo: ctx.silo().name().to_owned(),
                    kind: "activate".into(),
                    start_us,
                    end_us,
                    op: 0,
                    ok: true,
                    fenced: false,
                });
            }
            Ok(Ledger {
                state,
                activation,
                recorder,
            })
        }
    })
}

/// An append-only file of [`Record`] lines, one `write` per line so that a
/// killed process loses at most the line it was writing.
#[derive(Debug)]
pub struct RecordFile {
    file: std::sync::Mutex<std::fs::File>,
}

impl RecordFile {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<RecordFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Record {
                path: path.to_owned(),
                source,
            })?;
        Ok(RecordFile {
            file: std::sync::Mutex::new(file),
        })
    }

    fn write(&self, record: &Record) {
        let mut line = serde_json::to_vec(record).expect("a record serializes");
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "cannot write the grain record file");
        }
    }

    /// Reads every complete line of a record file (a torn last line, from
    /// a killed process, is skipped).
    pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}
