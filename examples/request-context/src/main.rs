//! Run with: cargo run -p example-request-context
//!
//! Plays requests with the roles `user` and `admin` (and none) against the
//! web front and prints the answers. With `--serve` it serves on
//! 127.0.0.1:3000 instead, e.g.
//! `curl -X DELETE -H 'X-User-Role: admin' localhost:3000/accounts/alice`.

use example_request_context::{build_silo, play_scenario, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let silo = build_silo().await?;
    let app = router(silo.clone());
    if std::env::args().any(|a| a == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving on http://127.0.0.1:3000 (Ctrl-C stops)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
    } else {
        for ex in play_scenario(&app).await? {
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
    silo.shutdown().await;
    Ok(())
}
