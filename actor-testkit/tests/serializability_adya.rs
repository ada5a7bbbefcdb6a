//! Cross-checks actor-testkit's serializability checker against the
//! `adya` crate (an Elle-style checker of Adya's anomalies): the same
//! histories, written as rw-register histories (each write's value names
//! its transaction; a write is preceded by the read of the version it
//! replaced, which gives adya the version order through `wfr_keys`), must
//! get the same verdict: the anomalies the checker's own tests build
//! (write skew, lost update, dirty read) fail both, and random serial
//! executions pass both.

use std::collections::HashMap;

use actor_testkit::serializability::{TxRecord, check};
use proptest::prelude::*;

/// The history as adya's JSON lines: an invoke and an ok (fail) per
/// committed (aborted) transaction, each on its own process.
fn adya_history(txs: &[TxRecord]) -> adya::History {
    let ids: HashMap<&str, usize> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i + 1))
        .collect();
    let keys: HashMap<&str, usize> = txs
        .iter()
        .flat_map(|t| t.reads.iter().chain(&t.writes).map(|(k, _)| k.as_str()))
        .fold(HashMap::new(), |mut m, k| {
            let n = m.len();
            m.entry(k).or_insert(n);
            m
        });
    // A version no transaction of the history wrote gets a value of its
    // own (it can only be read dirty, never written here).
    let value = |v: &Option<String>| -> serde_json::Value {
        match v {
            None => serde_json::Value::Null,
            Some(id) => ids
                .get(id.as_str())
                .map_or(serde_json::json!(1_000_000), |n| serde_json::json!(n)),
        }
    };
    let mut lines = Vec::new();
    for (i, t) in txs.iter().enumerate() {
        let mut ops = Vec::new();
        for (k, v) in &t.reads {
            ops.push(serde_json::json!(["r", keys[k.as_str()], value(v)]));
        }
        for (k, replaced) in &t.writes {
            if !t.reads.iter().any(|(rk, _)| rk == k) {
                ops.push(serde_json::json!(["r", keys[k.as_str()], value(replaced)]));
            }
            ops.push(serde_json::json!(["w", keys[k.as_str()], i + 1]));
        }
        let invoked: Vec<serde_json::Value> = ops
            .iter()
            .map(|op| match op[0].as_str() {
                Some("r") => serde_json::json!(["r", op[1], null]),
                _ => op.clone(),
            })
            .collect();
        let end = if t.committed { "ok" } else { "fail" };
        let ended = if t.committed { ops } else { invoked.clone() };
        lines.push(
            serde_json::json!({"type": "invoke", "f": "txn", "process": i, "value": invoked})
                .to_string(),
        );
        lines.push(
            serde_json::json!({"type": end, "f": "txn", "process": i, "value": ended}).to_string(),
        );
    }
    adya::History::from_json(&lines.join("\n")).expect("a well-formed adya history")
}

/// adya's verdict: serializable or not (its report on failure).
fn adya_says(txs: &[TxRecord]) -> Result<(), String> {
    let opts = adya::Opts {
        models: vec!["serializable".into()],
        wfr_keys: true,
        ..adya::Opts::default()
    };
    let report = adya::check(&adya_history(txs), adya::Workload::RwRegister, &opts);
    // `Unknown` is adya finding nothing to check (an empty dependency
    // graph): no anomaly.
    match report.valid {
        adya::Valid::False => Err(format!("{:?}", report.anomaly_types)),
        _ => Ok(()),
    }
}

#[test]
fn both_checkers_reject_the_anomalies() {
    let write_skew = vec![
        TxRecord::new("t1", true)
            .read("x", None)
            .read("y", None)
            .write("x", None),
        TxRecord::new("t2", true)
            .read("x", None)
            .read("y", None)
            .write("y", None),
    ];
    let lost_update = vec![
        TxRecord::new("t1", true).read("x", None).write("x", None),
        TxRecord::new("t2", true)
            .read("x", None)
            .write("x", Some("t1")),
    ];
    let dirty_read = vec![
        TxRecord::new("t1", false).write("x", None),
        TxRecord::new("t2", true).read("x", Some("t1")),
    ];
    for (name, h) in [
        ("write skew", write_skew),
        ("lost update", lost_update),
        ("dirty read", dirty_read),
    ] {
        let ours = check(&h);
        let theirs = adya_says(&h);
        assert!(ours.is_err(), "{name}: ours passed it");
        assert!(theirs.is_err(), "{name}: adya passed it");
        eprintln!(
            "{name}: ours {}, adya {}",
            ours.unwrap_err(),
            theirs.unwrap_err()
        );
    }
}

#[test]
fn both_checkers_accept_a_serial_history_with_an_abort() {
    let h = vec![
        TxRecord::new("t1", true).read("x", None).write("x", None),
        TxRecord::new("t2", true)
            .read("x", Some("t1"))
            .write("x", Some("t1"))
            .read("y", None),
        TxRecord::new("t3", false)
            .read("x", Some("t2"))
            .write("x", Some("t2")),
        TxRecord::new("t4", true)
            .read("x", Some("t2"))
            .read("y", None)
            .write("y", None),
    ];
    assert_eq!(check(&h), Ok(()));
    assert_eq!(adya_says(&h), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random serial executions pass both; the same executions with one
    /// read made stale (a version older than the one current then) fail
    /// both, or pass both when the stale read closes no cycle.
    #[test]
    fn the_checkers_agree_on_random_executions(
        plan in proptest::collection::vec(
            proptest::collection::vec((0u8..3, any::<bool>()), 1..4), 2..10),
        stale in any::<proptest::sample::Index>(),
    ) {
        let mut store: HashMap<String, Option<String>> = HashMap::new();
        let mut older: HashMap<String, Vec<Option<String>>> = HashMap::new();
        let mut txs = Vec::new();
        let mut candidates = Vec::new();
        for (n, ops) in plan.iter().enumerate() {
            let id = format!("t{n}");
            let mut rec = TxRecord::new(id.clone(), true);
            let mut seen = Vec::new();
            for (k, write) in ops {
                let key = format!("k{k}");
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key.clone());
                let current = store.get(&key).cloned().flatten();
                rec = rec.read(key.clone(), current.as_deref());
                if *write {
                    rec = rec.write(key.clone(), current.as_deref());
                    older.entry(key.clone()).or_default().push(current.clone());
                    store.insert(key.clone(), Some(id.clone()));
                } else if older.get(&key).is_some_and(|v| !v.is_empty()) {
                    candidates.push((n, key.clone()));
                }
            }
            txs.push(rec);
        }
        prop_assert_eq!(check(&txs), Ok(()));
        prop_assert_eq!(adya_says(&txs), Ok(()));
        // A read-only access made stale: it reads the version before.
        if !candidates.is_empty() {
            let (n, key) = candidates[stale.index(candidates.len())].clone();
            let before = older[&key].last().cloned().flatten();
            let t = &mut txs[n];
            for r in t.reads.iter_mut().filter(|(k, _)| *k == key) {
                r.1 = before.clone();
            }
            prop_assert_eq!(
                check(&txs).is_ok(),
                adya_says(&txs).is_ok(),
                "the checkers disagree on {:?}", txs
            );
        }
    }
}
