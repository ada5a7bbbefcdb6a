//! Run with: cargo run -p example-secrets
//!
//! Starts a silo whose PostgreSQL password and TLS key come from a file
//! secret provider, calls a grain through a TLS client, and exits. It
//! needs PostgreSQL at 127.0.0.1:5432 (database `test`); set
//! `SECRETS_TABLE_URL` to use another (without its password), and put the
//! password in `$SECRETS_DIR/db_password` (mode 0600). Without
//! `SECRETS_DIR` the run makes a throwaway directory and password (the
//! local PostgreSQL trusts loopback, so any password is accepted there).

use std::path::PathBuf;
use std::time::Duration;

use actor_cluster::{ClusterClient, FileSecrets};
use example_secrets::{
    DB_PASSWORD, DemoPki, Greeter, GreeterRef as _, SiloConfig, start_silo, write_private,
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let scratch = tempfile::tempdir()?;
    let secrets_dir = match std::env::var_os("SECRETS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = scratch.path().join("secrets");
            std::fs::create_dir(&dir)?;
            let password = format!("demo-{:x}", std::process::id() as u64 * 0x9e37_79b9);
            write_private(&dir.join(DB_PASSWORD), &password)?;
            dir
        }
    };
    let pki = DemoPki::create(scratch.path(), &secrets_dir)?;
    let config = SiloConfig {
        table_url: std::env::var("SECRETS_TABLE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        cluster_id: format!("example-secrets-{}", std::process::id()),
        ca: pki.ca.clone(),
        cert: pki.silo_cert.clone(),
    };
    let secrets = FileSecrets::new(&secrets_dir);
    println!("configuration (no secret in it): {config:?}");
    let silo = start_silo(&config, &secrets, TcpListener::bind("127.0.0.1:0").await?).await?;
    let client = ClusterClient::connect_with_tls(
        vec![silo.address().endpoint.clone()],
        Duration::from_secs(5),
        &pki.client,
    )
    .await?;
    for name in ["ada", "grace"] {
        let answer = client
            .get_grain::<Greeter>(name)
            .hello(name.to_owned())
            .await?;
        println!("{answer}");
    }
    silo.leave().await?;
    Ok(())
}
