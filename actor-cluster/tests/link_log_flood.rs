//! A peer cannot flood a silo's logs: 500 calls the silo refuses while
//! decoding them (each with a request context past its limits) are all
//! answered with the error, and logged as one warning line with a count,
//! not 500 (at most one line every 10 s; the test allows for a slow run).
//!
//! The test captures the process's tracing output, so it is alone in its
//! binary.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actor_cluster::{ClusterClient, InMemoryMembership, MembershipTable};
use actor_core::Error;
use actor_core::prelude::*;

/// Counts its calls.
#[derive(Default)]
pub struct Tally {
    n: u64,
}

impl Grain for Tally {
    const TYPE_NAME: &'static str = "tally";
}

#[grain_methods]
impl Tally {
    /// Counts one call; answers the count.
    pub async fn count(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

/// Where the log lines go.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_envelopes_are_logged_once_per_period_with_a_count() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    common::bounded(Duration::from_secs(120), async {
        let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
        let silo = common::member(Silo::builder().name("s").grain::<Tally>(), &table).await;
        let client = ClusterClient::connect(
            vec![silo.address().endpoint.clone()],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let tally = client.get_grain::<Tally>(1);
        assert_eq!(tally.count().await.unwrap(), 1);

        let mut many = RequestContext::new();
        for i in 0..100 {
            many.insert(format!("k{i}"), "v");
        }
        let started = Instant::now();
        let refused =
            futures::future::join_all((0..500).map(|_| many.clone().scope(tally.count()))).await;
        let took = started.elapsed();
        for r in &refused {
            assert!(matches!(r, Err(Error::Rejected { .. })), "{r:?}");
        }
        assert_eq!(
            tally.count().await.unwrap(),
            2,
            "none ran; the silo serves on"
        );

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("dropped undecodable call envelopes"))
            .collect();
        let allowed = 1 + (took.as_secs() / 10) as usize + 1;
        assert!(
            !lines.is_empty() && lines.len() <= allowed,
            "500 refusals in {took:?} make 1 to {allowed} lines, not {}:\n{text}",
            lines.len()
        );
        assert!(
            lines[0].contains("envelopes=1"),
            "the first is logged at once: {}",
            lines[0]
        );
        silo.leave().await.unwrap();
    })
    .await;
}
