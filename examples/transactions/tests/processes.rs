//! Silo processes killed by signal mid-transfer: three `example-transactions
//! --silo` processes share a SQLite membership table and a SQLite
//! transactional store; clients in this process run concurrent transfers
//! through the two that survive; the third parks the first commit it
//! manages at a protocol step and is killed there with `kill -9`. The
//! survivors finish or abort every transaction: each caller gets an
//! outcome, no lock stays held, the bank keeps its total, and the history
//! of every attempt is serializable.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_cluster::ClusterClient;
use actor_core::GrainId;
use actor_testkit::serializability::{TransactionHistory, TxRecord};
use actor_tx::{
    Outcome, Priority, SqliteTxStorage, TransactionOptions, TransactionalStorage,
    run_transaction_with,
};
use example_transactions::{Account, AccountRef, Change};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const EXE: &str = env!("CARGO_BIN_EXE_example-transactions");
// Enough that some of them (and so some managers) live on the victim.
const ACCOUNTS: usize = 24;
const START: i64 = 100;

/// What one access saw: the account, the version read, whether it wrote.
type Seen = Vec<(usize, Change, bool)>;
/// Every attempt: its id, what the caller saw, what it read and wrote.
type Log = Mutex<Vec<(String, Result<(), actor_tx::Error>, Seen)>>;

struct SiloProcess {
    child: Child,
    pid: u32,
    endpoint: String,
    lines: Lines<BufReader<ChildStdout>>,
}

async fn spawn_silo(name: &str, dir: &Path, park_at: Option<&str>) -> SiloProcess {
    let mut cmd = Command::new(EXE);
    cmd.args(["--silo", name, "--members", "3"])
        .arg("--table")
        .arg(dir.join("membership.db"))
        .arg("--store")
        .arg(dir.join("bank.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(step) = park_at {
        cmd.args(["--park-at", step])
            .arg("--armed")
            .arg(dir.join("armed"));
    }
    let mut child = cmd.spawn().expect("the example binary starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    SiloProcess {
        child,
        pid: 0,
        endpoint: String::new(),
        lines,
    }
}

/// Waits for the process's `READY <name> <pid> <endpoint>` line.
async fn ready(p: &mut SiloProcess) {
    let line = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match p.lines.next_line().await.unwrap() {
                Some(l) if l.starts_with("READY ") => return l,
                Some(_) => continue,
                None => panic!("a silo process exited before it was ready"),
            }
        }
    })
    .await
    .expect("the silo process is ready in time");
    let parts: Vec<&str> = line.split_whitespace().collect();
    p.pid = parts[2].parse().unwrap();
    p.endpoint = parts[3].to_owned();
}

fn account(client: &ClusterClient, i: usize) -> actor_core::GrainRef<Account> {
    client.get_grain::<Account>(format!("acct-{i}").as_str())
}

/// Runs one attempt of `body` and records what it read and wrote.
async fn recorded<F, Fut>(
    client: &ClusterClient,
    options: &TransactionOptions,
    history: &Log,
    body: F,
) -> Result<(), actor_tx::Error>
where
    F: FnOnce(Arc<Mutex<(String, Seen)>>) -> Fut,
    Fut: std::future::Future<Output = actor_tx::Result<()>>,
{
    let seen = Arc::new(Mutex::new((String::new(), Vec::new())));
    let s = seen.clone();
    let result = run_transaction_with(client, options, || async move {
        s.lock().unwrap().0 = actor_tx::current_transaction().unwrap().to_string();
        body(s).await
    })
    .await;
    let (tx, seen) = seen.lock().unwrap().clone();
    history.lock().unwrap().push((tx, result.clone(), seen));
    result
}

async fn kill_mid_transfer(step: &str) {
    let dir = tempfile::tempdir().unwrap();
    // The victim first, so that it holds some of the accounts' states.
    let mut silos = vec![
        spawn_silo("silo-0", dir.path(), Some(step)).await,
        spawn_silo("silo-1", dir.path(), None).await,
        spawn_silo("silo-2", dir.path(), None).await,
    ];
    for s in &mut silos {
        ready(s).await;
    }
    let mut victim = silos.remove(0);
    let gateways = silos.iter().map(|s| s.endpoint.clone()).collect();
    let client = Arc::new(
        ClusterClient::connect(gateways, Duration::from_secs(1))
            .await
            .unwrap(),
    );
    let options = TransactionOptions::default()
        .timeout(Duration::from_secs(3))
        .lock_timeout(Duration::from_secs(3));
    let log: Arc<Log> = Arc::new(Mutex::new(Vec::new()));

    // Fund the accounts (retried: placement is settling).
    for i in 0..ACCOUNTS {
        let mut funded = false;
        for _ in 0..50 {
            let c = client.clone();
            let r = recorded(&client, &options, &log, |s| async move {
                let ch = account(&c, i).change(START).await??;
                s.lock().unwrap().1.push((i, ch, true));
                Ok(())
            })
            .await;
            if r.is_ok() {
                funded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(funded, "account {i} funded");
    }

    // Arm the victim, then transfer from four callers at once.
    std::fs::write(dir.path().join("armed"), b"").unwrap();
    let (parked_tx, parked) = tokio::sync::oneshot::channel::<String>();
    let victim_pid = victim.pid.to_string();
    let watcher = tokio::spawn(async move {
        let mut parked_tx = Some(parked_tx);
        while let Ok(Some(l)) = victim.lines.next_line().await {
            if l.starts_with("PARKED ")
                && let Some(t) = parked_tx.take()
            {
                let _ = t.send(l);
            }
        }
        victim
    });
    let mut callers = Vec::new();
    for caller in 0..4usize {
        let (client, log, options) = (client.clone(), log.clone(), options.clone());
        callers.push(tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_u64 + caller as u64;
            let mut next = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            let mut outcomes = Vec::new();
            for _ in 0..12 {
                let from = next(ACCOUNTS as u64) as usize;
                let to = (from + 1 + next(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = 1 + next(40) as i64;
                let options = options.clone().priority(Priority::now());
                let mut last = None;
                for attempt in 0..40u32 {
                    let c = client.clone();
                    let r = recorded(&client, &options, &log, |s| async move {
                        let out = account(&c, from).change(-amount).await??;
                        s.lock().unwrap().1.push((from, out, true));
                        let into = account(&c, to).change(amount).await??;
                        s.lock().unwrap().1.push((to, into, true));
                        Ok(())
                    })
                    .await;
                    let retry = matches!(&r, Err(e) if e.is_retryable());
                    last = Some(r);
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
                }
                outcomes.push(last.unwrap());
            }
            outcomes
        }));
    }
    let line = tokio::time::timeout(Duration::from_secs(60), parked)
        .await
        .expect("the victim managed a commit and parked at the step")
        .unwrap();
    let tx = line.split_whitespace().nth(2).unwrap().to_owned();
    let sent = std::process::Command::new("kill")
        .args(["-9", &victim_pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -9 {victim_pid}");
    let mut victim = watcher.await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), victim.child.wait())
        .await
        .expect("the victim exits")
        .unwrap();
    assert!(!status.success(), "killed by the signal: {status}");

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for c in callers {
        let done = tokio::time::timeout(Duration::from_secs(180), c)
            .await
            .expect("every caller gets its outcomes")
            .unwrap();
        for r in done {
            let k = match &r {
                Ok(()) => "committed",
                Err(e) if e.is_in_doubt() => "in_doubt",
                Err(e) if e.is_retryable() => "aborted_retryable",
                Err(_) => "aborted_user",
            };
            *outcomes.entry(k).or_default() += 1;
        }
    }
    eprintln!("{step}: parked {tx}; outcomes {outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), 48, "{outcomes:?}");
    assert!(
        outcomes.get("committed").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );

    // No lock stays held (the victim's transaction included).
    for i in 0..ACCOUNTS {
        let id = GrainId::new("bank-account", format!("acct-{i}").as_str());
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match actor_tx::lock_status(&*client, &id, "balance").await {
                Ok(s) if s.is_free() => break,
                other => assert!(
                    tokio::time::Instant::now() < until,
                    "{step}: the lock of acct-{i} is still held: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The total is kept, read in one transaction (recorded too).
    let mut total = None;
    for _ in 0..50 {
        let c = client.clone();
        let sum = Arc::new(Mutex::new(0));
        let s2 = sum.clone();
        let r = recorded(&client, &options, &log, |s| async move {
            for i in 0..ACCOUNTS {
                let o = account(&c, i).observe().await??;
                *s2.lock().unwrap() += o.balance;
                s.lock().unwrap().1.push((i, o, false));
            }
            Ok(())
        })
        .await;
        if r.is_ok() {
            total = Some(*sum.lock().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        total,
        Some(START * ACCOUNTS as i64),
        "{step}: the bank keeps its total"
    );

    // The parked transaction ended as its step implies: with its commit
    // record durable, committed; without, aborted (or in doubt).
    let parked_result = log
        .lock()
        .unwrap()
        .iter()
        .find(|(id, _, _)| *id == tx)
        .map(|(_, r, _)| r.clone())
        .expect("the parked transaction was one of ours");
    match step {
        "after-commit-record" => assert!(
            matches!(parked_result, Ok(()) | Err(actor_tx::Error::InDoubt { .. })),
            "{step}: {parked_result:?}"
        ),
        _ => assert!(parked_result.is_err(), "{step}: {parked_result:?}"),
    }

    // The history, with in-doubt attempts settled by the outcome table
    // (a record forgotten after every confirmation means committed).
    let store = SqliteTxStorage::open(dir.path().join("bank.db"))
        .await
        .unwrap();
    let history = TransactionHistory::new();
    let log = std::mem::take(&mut *log.lock().unwrap());
    for (tx, result, seen) in log {
        let committed = match &result {
            Ok(()) => true,
            Err(actor_tx::Error::InDoubt { tx: id, .. }) => {
                !matches!(store.outcome(*id).await.unwrap(), Some(Outcome::Aborted))
            }
            Err(_) => false,
        };
        let mut rec = TxRecord::new(tx, committed);
        for (i, ch, wrote) in &seen {
            let key = format!("acct-{i}");
            rec = rec.read(key.clone(), ch.read.as_deref());
            if *wrote {
                rec = rec.write(key, ch.read.as_deref());
            }
        }
        history.record(rec);
    }
    history.check().expect("the history is serializable");

    for mut s in silos {
        drop(s.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), s.child.wait())
            .await
            .expect("a survivor leaves when its stdin closes")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_after_its_commit_record() {
    kill_mid_transfer("after-commit-record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_after_the_prepares() {
    kill_mid_transfer("after-prepare").await;
}
