//! Run with: cargo bench -p benches --bench transactions
//!
//! actor-tx's two-account transfers per second, and their p50/p99
//! latency, with 1, 16 and 64 concurrent clients, on SQLite and on
//! PostgreSQL (127.0.0.1:5432; its rows are skipped if it is absent): a
//! `run_transaction` over two account grains on one silo, beside the
//! floor of the same two row updates in one local database transaction
//! through raw sqlx, in the same run (each cell runs ours, then the
//! floor). Each client moves money between its own two accounts, so the
//! figures are the protocol's cost, not contention. Prints a Markdown
//! table and writes it to `target/benchmarks/transactions.md`.
//! `TX_BENCH_SECS=1` shortens each cell (default 3 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use actor_tx::{
    PostgresTxStorage, RetryPolicy, SiloBuilderTransactionsExt, SqliteTxStorage,
    TransactionOptions, TransactionalState, TransactionalStorage, retry_transaction,
};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Balance {
    amount: i64,
}

struct Account {
    balance: TransactionalState<Balance>,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "bench-account";
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
}

#[grain_methods]
impl Account {
    #[transaction(join)]
    async fn add(&self, n: i64) -> actor_tx::Result<i64> {
        self.balance
            .perform_update(|b| {
                b.amount += n;
                b.amount
            })
            .await
    }
}

struct Cell {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `clients` loops of `op(client)` for `dur`, and reports.
async fn measure<F, Fut>(clients: usize, dur: Duration, op: F) -> Cell
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                op(c).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Cell {
        ops_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

enum Floor {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Floor {
    async fn setup(&self, table: &str, rows: usize) {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
        );
        match self {
            Floor::Sqlite(p) => {
                sqlx::query(&ddl).execute(p).await.unwrap();
                for i in 0..rows as i64 {
                    sqlx::query(&format!(
                        "INSERT INTO {table} VALUES (?, 1000) ON CONFLICT DO NOTHING"
                    ))
                    .bind(i)
                    .execute(p)
                    .await
                    .unwrap();
                }
            }
            Floor::Postgres(p) => {
                sqlx::query(&ddl).execute(p).await.unwrap();
                for i in 0..rows as i64 {
                    sqlx::query(&format!(
                        "INSERT INTO {table} VALUES ($1, 1000) ON CONFLICT DO NOTHING"
                    ))
                    .bind(i)
                    .execute(p)
                    .await
                    .unwrap();
                }
            }
        }
    }

    async fn drop_table(&self, table: &str) {
        let ddl = format!("DROP TABLE {table}");
        let _ = match self {
            Floor::Sqlite(p) => sqlx::query(&ddl).execute(p).await.map(|_| ()),
            Floor::Postgres(p) => sqlx::query(&ddl).execute(p).await.map(|_| ()),
        };
    }

    async fn transfer(&self, table: &str, from: i64, to: i64) {
        // The same two updates in one local transaction on either pool;
        // only the placeholders differ.
        macro_rules! two_updates {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin().await.unwrap();
                let q = format!($sql, table = table);
                for (delta, id) in [(-1i64, from), (1i64, to)] {
                    sqlx::query(&q)
                        .bind(delta)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
            }};
        }
        match self {
            Floor::Sqlite(p) => {
                two_updates!(p, "UPDATE {table} SET balance = balance + ? WHERE id = ?")
            }
            Floor::Postgres(p) => {
                two_updates!(p, "UPDATE {table} SET balance = balance + $1 WHERE id = $2")
            }
        }
    }
}

fn row(name: &str, clients: usize, ours: &Cell, floor: &Cell) -> String {
    format!(
        "| {name} | {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2}x |",
        ours.ops_per_sec,
        ours.p50.as_secs_f64() * 1e3,
        ours.p99.as_secs_f64() * 1e3,
        floor.ops_per_sec,
        floor.p50.as_secs_f64() * 1e3,
        floor.p99.as_secs_f64() * 1e3,
        ours.ops_per_sec / floor.ops_per_sec
    )
}

async fn backend(
    name: &str,
    storage: Arc<dyn TransactionalStorage>,
    floor: Floor,
    dur: Duration,
    table_out: &mut Vec<String>,
) {
    let silo = Silo::builder()
        .with_transactions(storage)
        .grain_with_async(|ctx| async move {
            Ok(Account {
                balance: TransactionalState::load(&ctx, "balance").await?,
            })
        })
        .start()
        .await
        .unwrap();
    let table = format!("tx_bench_floor_{}", uuid::Uuid::new_v4().simple());
    floor.setup(&table, 128).await;
    let floor = Arc::new(floor);
    let run = uuid::Uuid::new_v4().simple().to_string();
    for clients in [1usize, 16, 64] {
        let s = silo.clone();
        let r = run.clone();
        let ours = measure(clients, dur, move |c| {
            let (a, b) = (
                s.get_grain::<Account>(format!("{r}-{c}-a").as_str()),
                s.get_grain::<Account>(format!("{r}-{c}-b").as_str()),
            );
            let s = s.clone();
            async move {
                retry_transaction(
                    &s,
                    &TransactionOptions::default(),
                    &RetryPolicy::default(),
                    || async {
                        a.add(-1).await??;
                        b.add(1).await??;
                        Ok(())
                    },
                )
                .await
                .expect("each client has its own accounts");
            }
        })
        .await;
        let (f, t) = (floor.clone(), table.clone());
        let base = measure(clients, dur, move |c| {
            let (f, t) = (f.clone(), t.clone());
            async move { f.transfer(&t, 2 * c as i64, 2 * c as i64 + 1).await }
        })
        .await;
        let line = row(name, clients, &ours, &base);
        println!("{line}");
        table_out.push(line);
    }
    floor.drop_table(&table).await;
    silo.shutdown().await;
}

#[tokio::main]
async fn main() {
    let secs = std::env::var("TX_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    let dur = Duration::from_secs_f64(secs);
    let mut table = vec![
        "| storage | clients | tx/s | p50 ms | p99 ms | floor tx/s | floor p50 ms | floor p99 ms | ratio |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    for l in &table {
        println!("{l}");
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteTxStorage::open(dir.path().join("tx.db"))
        .await
        .unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("floor.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await
        .unwrap();
    backend(
        "sqlite",
        Arc::new(storage),
        Floor::Sqlite(pool),
        dur,
        &mut table,
    )
    .await;

    let url = "postgres://postgres@127.0.0.1:5432/test";
    match PostgresTxStorage::connect_with_prefix(url, "tx_bench").await {
        Ok(storage) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .unwrap();
            backend(
                "postgres",
                Arc::new(storage),
                Floor::Postgres(pool),
                dur,
                &mut table,
            )
            .await;
        }
        Err(e) => eprintln!("skipping PostgreSQL: {e}"),
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/benchmarks");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("transactions.md"), table.join("\n") + "\n");
    }
}
