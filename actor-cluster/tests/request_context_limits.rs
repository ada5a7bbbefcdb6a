//! A request context that arrives over the network is untrusted input: a
//! call from an external client whose context is too large is refused
//! with a clear error before it runs, and the silo goes on serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_context_from_a_client_is_refused_before_the_turn() {
    common::bounded(Duration::from_secs(60), async {
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
        for i in 0..1_000 {
            many.insert(format!("k{i}"), "v");
        }
        let err = many.scope(tally.count()).await.unwrap_err();
        assert!(matches!(&err, Error::Rejected { .. }), "{err}");
        assert!(
            err.to_string().contains("entries"),
            "the limit is named: {err}"
        );

        let huge = RequestContext::new().with("blob", "x".repeat(64 * 1024));
        let err = huge.scope(tally.count()).await.unwrap_err();
        assert!(matches!(&err, Error::Rejected { .. }), "{err}");

        // Neither ran; a call within the limits still does.
        let ok = RequestContext::new().with("role", "admin");
        assert_eq!(ok.scope(tally.count()).await.unwrap(), 2);
        silo.leave().await.unwrap();
    })
    .await;
}
