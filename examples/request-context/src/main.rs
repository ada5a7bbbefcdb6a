//! Run with: cargo run -p example-request-context
//!
//! Plays requests with the roles `user` and `admin` (and none) against the
//! web front and prints the answers: first on one silo, then on two silos
//! of one cluster, where every request crosses from the front's silo to
//! the account's and back to the audit log's. With `--serve` it serves the
//! single-silo front on 127.0.0.1:3000 instead, e.g.
//! `curl -X DELETE -H 'X-User-Role: admin' localhost:3000/accounts/alice`.
//!
//! Set `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://127.0.0.1:4317`, an
//! OpenTelemetry collector or Jaeger) to export a span per grain call and
//! the silos' metrics; each request is one trace across both silos, and a
//! `traceparent` header sent to `--serve` continues the caller's trace.

use actor_cluster::ClusterConfig;
use actor_telemetry::{SiloBuilderTelemetryExt, Telemetry};
use example_request_context::{
    Exchange, play_cluster_scenario, play_scenario, router, silo_builder, start_pair_with,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // On only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let telemetry = Telemetry::builder()
        .service_name("example-request-context")
        .build()?;
    if let Some(endpoint) = telemetry.endpoint() {
        println!("exporting traces and metrics to {endpoint}");
    }
    let silo = silo_builder("request-context")
        .with_telemetry(&telemetry)
        .start()
        .await?;
    telemetry.observe(&silo);
    let app = router(silo.clone());
    if std::env::args().any(|a| a == "--serve") {
        let mut signals = actor_cluster::ShutdownSignals::new()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving on http://127.0.0.1:3000 (Ctrl-C or SIGTERM stops)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signals.recv().await;
            })
            .await?;
        silo.shutdown().await;
        telemetry.shutdown().await;
        return Ok(());
    }

    println!("One silo:");
    print_all(&play_scenario(&app).await?);
    silo.shutdown().await;

    let pair = start_pair_with(ClusterConfig::default(), &telemetry).await?;
    let account = pair.accounts_on_back(1).remove(0);
    println!(
        "\nTwo silos: the web front calls through silo {} (which hosts the audit log); \
         account {account} lives on silo {}:",
        pair.front.silo().name(),
        pair.back.silo().name()
    );
    print_all(&play_cluster_scenario(&pair).await?);
    pair.leave().await?;
    telemetry.shutdown().await;
    Ok(())
}

fn print_all(exchanges: &[Exchange]) {
    for ex in exchanges {
        let role = ex.role.unwrap_or("(none)");
        println!(
            "{:<6} {:<24} X-User-Role: {role:<6} -> {} {}",
            ex.method.as_str(),
            ex.uri,
            ex.status,
            ex.body
        );
    }
}
