//! Several external clients, each in its own process, calling through the
//! same gateways at once: every reply reaches the call that asked for it,
//! and every call runs exactly once. Each client process counts its call
//! ids from the same start as the others, as real client processes do
//! (this is how replies used to be crossed: the gateway forwarded the
//! clients' ids and matched the owner's replies by them).
//!
//! The parent test starts two silos and re-runs this test binary as the
//! client processes (the ignored test `client_process`, told what to do
//! through the environment).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterClient, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::prelude::*;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BOUND: Duration = Duration::from_secs(120);
const CLIENTS: usize = 4;
const GRAINS: usize = 16;
const ROUNDS: u32 = 40;
const IN_FLIGHT: usize = 32;
const ENDPOINT: &str = "GATEWAY_CLIENTS_ENDPOINT";
const NAME: &str = "GATEWAY_CLIENTS_NAME";

async fn bounded<F: Future>(f: F) -> F::Output {
    common::bounded(BOUND, f).await
}

/// Answers `Echo(text)` with its key, the text and how many calls it has
/// answered.
#[derive(Default)]
pub struct EchoGrain {
    calls: u32,
}

/// The message: any text.
#[derive(Serialize, Deserialize)]
pub struct Echo(String);

impl Message for Echo {
    type Reply = (String, String, u32);
    const NAME: &'static str = "echo";
}

impl Handler<Echo> for EchoGrain {
    async fn handle(
        &mut self,
        Echo(text): Echo,
        ctx: &GrainContext<Self>,
    ) -> (String, String, u32) {
        self.calls += 1;
        (ctx.key().to_string(), text, self.calls)
    }
}

impl Grain for EchoGrain {
    const TYPE_NAME: &'static str = "echo";
}

impl GrainMethods for EchoGrain {
    fn register(m: &mut Methods<Self>) {
        m.add::<Echo, _>();
    }
}

async fn member(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    common::member(Silo::builder().name(name).grain::<EchoGrain>(), table).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_processes_through_shared_gateways_get_their_own_replies() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = member("a", &table).await;
    let b = member("b", &table).await;
    bounded(async {
        while a.active_members().len() != 2 || b.active_members().len() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for c in 0..CLIENTS {
        let mut child = tokio::process::Command::new(&exe)
            .args(["client_process", "--exact", "--ignored", "--nocapture"])
            .env(ENDPOINT, &a.address().endpoint)
            .env(NAME, format!("c{c}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        children.push((child, stdin, lines));
    }
    // All connected first, then all at once: their ids run side by side.
    for (_, _, lines) in &mut children {
        bounded(async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line == "READY" {
                    return;
                }
            }
            panic!("a client process ended before it was ready");
        })
        .await;
    }
    for (_, stdin, _) in &mut children {
        stdin.write_all(b"GO\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    for (mut child, _stdin, mut lines) in children {
        let mut out = Vec::new();
        bounded(async {
            while let Some(line) = lines.next_line().await.unwrap() {
                out.push(line);
            }
        })
        .await;
        let status = bounded(child.wait()).await.unwrap();
        assert!(status.success(), "a client process failed: {out:#?}");
        let calls = GRAINS as u32 * ROUNDS;
        assert!(
            out.iter().any(|l| *l == format!("CHECKED {calls} WRONG 0")),
            "{out:#?}"
        );
    }
    // Every call ran once: each grain answered exactly its client's calls.
    for c in 0..CLIENTS {
        for g in 0..GRAINS {
            let key = format!("c{c}-{g}");
            let (_, _, n) = a
                .silo()
                .get_grain::<EchoGrain>(key.as_str())
                .ask(Echo(String::new()))
                .await
                .unwrap();
            assert_eq!(n, ROUNDS + 1, "{key}");
        }
    }
    a.leave().await.unwrap();
    b.leave().await.unwrap();
}

/// One client process of the test above; does nothing when run alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a client process of client_processes_through_shared_gateways_get_their_own_replies"]
async fn client_process() {
    let (Ok(endpoint), Ok(name)) = (std::env::var(ENDPOINT), std::env::var(NAME)) else {
        return;
    };
    let client = ClusterClient::connect(vec![endpoint], Duration::from_secs(1))
        .await
        .unwrap();
    println!("READY");
    let mut go = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut go)
        .await
        .unwrap();

    let calls = (0..ROUNDS).flat_map(|r| (0..GRAINS).map(move |g| (g, r)));
    let replies = futures::stream::iter(calls)
        .map(|(g, r)| {
            let key = format!("{name}-{g}");
            let text = format!("{name}-{g}-{r}");
            let grain = client.get_grain::<EchoGrain>(key.as_str());
            async move { (key, text.clone(), grain.ask(Echo(text)).await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;

    let mut wrong = Vec::new();
    let mut counts: HashMap<String, BTreeSet<u32>> = HashMap::new();
    for (key, text, reply) in &replies {
        match reply {
            Ok((k, t, n)) if (k, t) == (key, text) => {
                counts.entry(key.clone()).or_default().insert(*n);
            }
            other => wrong.push(format!("asked {key} with {text}, got {other:?}")),
        }
    }
    for (key, seen) in &counts {
        if seen.len() != ROUNDS as usize || seen.last() != Some(&ROUNDS) {
            wrong.push(format!("{key} answered with counts {seen:?}"));
        }
    }
    for w in wrong.iter().take(10) {
        println!("WRONG: {w}");
    }
    println!("CHECKED {} WRONG {}", replies.len(), wrong.len());
    assert!(wrong.is_empty());
}
