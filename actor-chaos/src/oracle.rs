//! The oracles: duplicate activations from the silos' record files, lost
//! acknowledged writes from the database, and the percentiles of the
//! figures.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use actor_silo::Record;
use serde::Serialize;
use sqlx::Row;

use crate::error::{Error, Result};

/// One activation's live interval, as its records show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// The silo that hosted it.
    pub silo: String,
    /// The activation id.
    pub activation: String,
    /// Its first record's start (its load), in Unix microseconds.
    pub start_us: i64,
    /// When its last turn started, in Unix microseconds.
    pub last_start_us: i64,
    /// Its last record's end, in Unix microseconds.
    pub end_us: i64,
    /// How many appends it stored.
    pub stored: u64,
}

/// Two activations of one grain whose live intervals overlap (a
/// duplicate), or of which the earlier ran a turn on past the later's
/// start (a straggler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The grain.
    pub grain: String,
    /// The earlier activation.
    pub first: Interval,
    /// The later one, which started before the earlier one's last turn
    /// ended.
    pub second: Interval,
}

/// Every activation interval of every grain in `files` (torn last lines
/// of killed silos are skipped).
pub fn intervals(files: &[PathBuf]) -> Result<BTreeMap<String, Vec<Interval>>> {
    let mut by_activation: BTreeMap<(String, String), Interval> = BTreeMap::new();
    for f in files {
        let records = match actor_silo::RecordFile::read(f) {
            Ok(r) => r,
            // A silo killed before its first activation wrote nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: f.clone(),
                    source,
                });
            }
        };
        for Record {
            grain,
            activation,
            silo,
            kind,
            start_us,
            end_us,
            ok,
            fenced,
            ..
        } in records
        {
            let e = by_activation
                .entry((grain, activation.clone()))
                .or_insert(Interval {
                    silo,
                    activation,
                    start_us,
                    last_start_us: start_us,
                    end_us,
                    stored: 0,
                });
            e.start_us = e.start_us.min(start_us);
            // A turn whose write the lease fence refused changed nothing
            // (and was admitted before the lease's end: the process may
            // have frozen between the admission and the handler's clock
            // read): it ends the interval, it does not extend its live
            // part.
            if !fenced {
                e.last_start_us = e.last_start_us.max(start_us);
            }
            e.end_us = e.end_us.max(end_us);
            if kind == "append" && ok {
                e.stored += 1;
            }
        }
    }
    let mut out: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    for ((grain, _), i) in by_activation {
        out.entry(grain).or_default().push(i);
    }
    for v in out.values_mut() {
        v.sort_by_key(|i| i.start_us);
    }
    Ok(out)
}

/// The overlapping pairs: strong single activation says there are none.
///
/// An activation is live from its load to the start of its last turn: a
/// duplicate is an activation that starts a turn once another one of its
/// grain has begun loading. A turn that started before and only ended
/// after is a straggler ([`stragglers`]), not a duplicate: it started
/// inside its silo's lease, before the grain moved (a long turn, or a
/// process paused in the middle of it), and its write is fenced at the
/// storage (refused past the lease before it is sent, and by the ETag of
/// the state it loaded once the new activation has written), so it
/// cannot overwrite the new activation's state: the lost-writes oracle
/// checks that. A turn whose write the lease fence refused does not count
/// as a start either: it changed nothing, and the process may have
/// frozen between the turn's admission (inside the lease) and the
/// handler's first clock read, which then reads after the resume.
pub fn duplicates(intervals: &BTreeMap<String, Vec<Interval>>) -> Vec<Duplicate> {
    pairs(intervals, |earlier, later| {
        earlier.last_start_us >= later.start_us
    })
}

/// The pairs whose earlier activation's last turn started before the
/// later one began loading and ended after (see [`duplicates`]).
pub fn stragglers(intervals: &BTreeMap<String, Vec<Interval>>) -> Vec<Duplicate> {
    pairs(intervals, |earlier, later| {
        earlier.last_start_us < later.start_us && earlier.end_us > later.start_us
    })
}

fn pairs(
    intervals: &BTreeMap<String, Vec<Interval>>,
    overlap: impl Fn(&Interval, &Interval) -> bool,
) -> Vec<Duplicate> {
    let mut out = Vec::new();
    for (grain, v) in intervals {
        // Sorted by start.
        for (j, later) in v.iter().enumerate() {
            for earlier in &v[..j] {
                if overlap(earlier, later) {
                    out.push(Duplicate {
                        grain: grain.clone(),
                        first: earlier.clone(),
                        second: later.clone(),
                    });
                }
            }
        }
    }
    out
}

/// An acknowledged op missing from its grain's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The grain.
    pub grain: String,
    /// The op.
    pub op: u64,
}

/// The acknowledged ops missing from `stored`.
pub fn lost_writes(
    acked: &BTreeMap<String, Vec<u64>>,
    stored: &BTreeMap<String, Vec<u64>>,
) -> Vec<LostWrite> {
    let mut out = Vec::new();
    for (grain, ops) in acked {
        let have: HashSet<u64> = stored
            .get(grain)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        for op in ops {
            if !have.contains(op) {
                out.push(LostWrite {
                    grain: grain.clone(),
                    op: *op,
                });
            }
        }
    }
    out
}

/// Every ledger's stored ops, read from `{prefix}_state` in PostgreSQL.
pub async fn stored_ledgers(url: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u64>>> {
    let db = |source| Error::Database {
        url: url.to_owned(),
        source,
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(db)?;
    let rows = sqlx::query(&format!(
        "SELECT grain_id, payload FROM {prefix}_state WHERE grain_type = $1"
    ))
    .bind(actor_silo::LEDGER_TYPE)
    .fetch_all(&pool)
    .await
    .map_err(db)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let id: String = row.get(0);
        let payload: Vec<u8> = row.get(1);
        let key = id.rsplit_once("/s:").map(|x| x.1).unwrap_or(&id).to_owned();
        let state: actor_silo::LedgerState = serde_json::from_slice(&payload)
            .map_err(|e| Error::Usage(format!("the stored state of {id} is not a ledger: {e}")))?;
        out.insert(key, state.ops);
    }
    pool.close().await;
    Ok(out)
}

/// Drops the run's state tables.
pub(crate) async fn drop_state(url: &str, prefix: &str) -> Result<()> {
    let db = |source| Error::Database {
        url: url.to_owned(),
        source,
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(db)?;
    for t in ["state", "events", "snapshots"] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}_{t}"))
            .execute(&pool)
            .await
            .map_err(db)?;
    }
    pool.close().await;
    Ok(())
}

/// Nearest-rank percentile `p` (0-100) of `v`, `None` if empty.
pub fn percentile(v: &[i64], p: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(silo: &str, a: &str, s: i64, e: i64) -> Interval {
        Interval {
            silo: silo.into(),
            activation: a.into(),
            start_us: s,
            last_start_us: e - 1,
            end_us: e,
            stored: 1,
        }
    }

    #[test]
    fn overlapping_activations_are_duplicates_and_successive_ones_are_not() {
        let mut m = BTreeMap::new();
        m.insert(
            "g1".to_string(),
            vec![iv("s0", "a", 0, 10), iv("s1", "b", 11, 20)],
        );
        assert!(duplicates(&m).is_empty());
        m.insert(
            "g2".to_string(),
            vec![iv("s0", "c", 0, 10), iv("s1", "d", 5, 20)],
        );
        let d = duplicates(&m);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].grain, "g2");
        assert!(stragglers(&m).is_empty());
    }

    #[test]
    fn a_turn_that_started_before_the_move_is_a_straggler_not_a_duplicate() {
        let mut early = iv("s0", "a", 0, 10);
        early.last_start_us = 4;
        let m = BTreeMap::from([("g".to_string(), vec![early.clone(), iv("s1", "b", 5, 20)])]);
        assert!(duplicates(&m).is_empty());
        assert_eq!(stragglers(&m).len(), 1);
        // One more turn started after the move: a duplicate.
        early.last_start_us = 6;
        let m = BTreeMap::from([("g".to_string(), vec![early, iv("s1", "b", 5, 20)])]);
        assert_eq!(duplicates(&m).len(), 1);
        assert!(stragglers(&m).is_empty());
    }

    #[test]
    fn records_make_intervals_per_activation() {
        let dir = std::env::temp_dir().join(format!("chaos-oracle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s0-0.records.jsonl");
        let line = |a: &str, kind: &str, s: i64, e: i64| {
            serde_json::to_string(&Record {
                grain: "g1".into(),
                activation: a.into(),
                silo: "s0".into(),
                kind: kind.into(),
                start_us: s,
                end_us: e,
                op: 1,
                ok: true,
                fenced: false,
            })
            .unwrap()
        };
        let text = format!(
            "{}\n{}\n{}\n{{\"grain\":\"g1\",\"act",
            line("a", "activate", 1, 2),
            line("a", "append", 3, 4),
            line("b", "append", 3, 9)
        );
        std::fs::write(&f, text).unwrap();
        let m = intervals(&[f, dir.join("missing.jsonl")]).unwrap();
        let v = &m["g1"];
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].start_us, v[0].end_us, v[0].stored), (1, 4, 1));
        assert_eq!(v[0].last_start_us, 3);
        assert_eq!(duplicates(&m).len(), 1, "b started as a's last turn did");
        assert!(stragglers(&m).is_empty());

        // A turn of `a` whose write the lease fence refused, with a start
        // read after `b` began: it changed nothing, so `a` is a straggler.
        let g = dir.join("s0-1.records.jsonl");
        let fenced = serde_json::to_string(&Record {
            grain: "g2".into(),
            activation: "a".into(),
            silo: "s0".into(),
            kind: "append".into(),
            start_us: 20,
            end_us: 21,
            op: 2,
            ok: false,
            fenced: true,
        })
        .unwrap();
        let b = line("b", "append", 15, 30).replace("g1", "g2");
        let text = format!(
            "{}\n{fenced}\n{b}\n",
            line("a", "activate", 1, 2).replace("g1", "g2")
        );
        std::fs::write(&g, text).unwrap();
        let m = intervals(&[g]).unwrap();
        assert_eq!(
            m["g2"][0].last_start_us, 1,
            "a fenced turn does not extend it"
        );
        assert!(duplicates(&m).is_empty());
        assert_eq!(stragglers(&m).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_acknowledged_op_is_lost() {
        let acked = BTreeMap::from([("g".to_string(), vec![1, 2, 3])]);
        let stored = BTreeMap::from([("g".to_string(), vec![1, 3, 4])]);
        assert_eq!(
            lost_writes(&acked, &stored),
            vec![LostWrite {
                grain: "g".into(),
                op: 2
            }]
        );
        assert!(
            lost_writes(&acked, &BTreeMap::from([("g".to_string(), vec![3, 2, 1])])).is_empty()
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
