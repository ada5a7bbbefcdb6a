//! The silo's PostgreSQL password and TLS key come from a file provider,
//! work (the silo joins its table in PostgreSQL and serves a TLS client),
//! and appear in no log line and no error message.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (user `postgres`); makes a role
//! with a password and a database it owns for this run, and drops both.
//! Without PostgreSQL it skips, unless `CI=true`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_cluster::{ClusterClient, FileSecrets};
use example_secrets::{
    DB_PASSWORD, DemoPki, Greeter, GreeterRef as _, SiloConfig, TLS_KEY, start_silo, write_private,
};
use sqlx::Executor as _;
use tokio::net::TcpListener;

/// Everything the process logs, for searching.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn admin() -> Option<sqlx::PgPool> {
    let url = "postgres://postgres@127.0.0.1:5432/postgres";
    let connect = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url);
    match connect.await {
        Ok(pool) => Some(pool),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            println!("skipped: PostgreSQL is not reachable at {url}: {e}");
            None
        }
        Err(e) => panic!("CI=true and PostgreSQL is unavailable at {url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_show_in_no_log_line_and_no_error_message() {
    let Some(admin) = admin().await else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let role = format!("grains_secrets_{id}");
    // Unique, so that nothing else in a log contains it by chance.
    let password = format!("Pw{id}Zx");
    admin
        .execute(format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {role} OWNER {role}").as_str())
        .await
        .unwrap();

    // From here on everything is logged, also what goes through the `log`
    // crate (the drivers): the role's own CREATE statement, which holds
    // the password, is the test's, not the silo's, and ran before.
    let logs = Capture::default();
    tracing_subscriber::util::SubscriberInitExt::try_init(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish(),
    )
    .unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let secrets_dir = scratch.path().join("secrets");
    std::fs::create_dir(&secrets_dir).unwrap();
    write_private(&secrets_dir.join(DB_PASSWORD), &format!("{password}\n")).unwrap();
    let pki = DemoPki::create(scratch.path(), &secrets_dir).unwrap();
    let key = std::fs::read_to_string(secrets_dir.join(TLS_KEY)).unwrap();
    // The key's first line of base64: what a leaked key would show.
    let key_line = key.lines().nth(1).unwrap().to_owned();
    let secrets = FileSecrets::new(&secrets_dir);
    let config = SiloConfig {
        table_url: format!("postgres://{role}@127.0.0.1:5432/{role}"),
        cluster_id: format!("secrets-{id}"),
        ca: pki.ca.clone(),
        cert: pki.silo_cert.clone(),
    };
    assert!(!format!("{config:?} {secrets:?} {pki:?}").contains(&password));
    assert!(!format!("{pki:?}").contains(&key_line));

    // The real run: the secrets are used, so they were read.
    let run = async {
        let silo = start_silo(
            &config,
            &secrets,
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        let client = ClusterClient::connect_with_tls(
            vec![silo.address().endpoint.clone()],
            Duration::from_secs(5),
            &pki.client,
        )
        .await
        .map_err(|e| e.to_string())?;
        let answer = client
            .get_grain::<Greeter>("ada")
            .hello("ada".to_owned())
            .await
            .map_err(|e| e.to_string())?;
        silo.leave().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), run).await;

    // Failures whose messages name the table or the key.
    let mut errors = Vec::new();
    let closed_port = SiloConfig {
        table_url: format!("postgres://{role}@127.0.0.1:1/{role}"),
        ..config.clone()
    };
    let listener = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    match start_silo(&closed_port, &secrets, listener().await).await {
        Ok(_) => errors.push("a table on a closed port was reached?".to_owned()),
        Err(e) => errors.push(format!("{e:#} | {e:?}")),
    }
    let missing_db = SiloConfig {
        table_url: format!("postgres://{role}@127.0.0.1:5432/{role}_missing"),
        ..config.clone()
    };
    match start_silo(&missing_db, &secrets, listener().await).await {
        Ok(_) => errors.push("a missing database was opened?".to_owned()),
        Err(e) => errors.push(format!("{e:#} | {e:?}")),
    }
    let empty = tempfile::tempdir().unwrap();
    match start_silo(&config, &FileSecrets::new(empty.path()), listener().await).await {
        Ok(_) => errors.push("a silo started without its key?".to_owned()),
        Err(e) => errors.push(format!("{e:#} | {e:?}")),
    }
    // A key that does not go with the certificate (the CA's is not).
    let other = tempfile::tempdir().unwrap();
    write_private(&other.path().join(DB_PASSWORD), &password).unwrap();
    DemoPki::create(other.path(), other.path()).unwrap();
    match start_silo(&config, &FileSecrets::new(other.path()), listener().await).await {
        Ok(_) => errors.push("a silo started with another's key?".to_owned()),
        Err(e) => errors.push(format!("{e:#} | {e:?}")),
    }

    admin
        .execute(format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
        .await
        .unwrap();

    let answer = answer.expect("the run finished in time").unwrap();
    assert_eq!(answer, "hello ada (#1)");
    for e in &errors {
        println!("error: {e}");
        assert!(!e.contains(&password), "the password is in an error: {e}");
        assert!(!e.contains(&key_line), "the key is in an error: {e}");
    }
    assert!(
        errors[0].contains(":***@127.0.0.1:1"),
        "the URL is shown redacted: {}",
        errors[0]
    );
    assert!(
        errors[2].contains("tls_key"),
        "the missing secret is named: {}",
        errors[2]
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("membership table connected") && logs.contains(":***@127.0.0.1:5432"),
        "the capture holds the silo's log: {logs}"
    );
    for line in logs.lines() {
        assert!(
            !line.contains(&password),
            "the password is in a log line: {line}"
        );
        assert!(
            !line.contains(&key_line),
            "the key is in a log line: {line}"
        );
    }
    println!("{} log lines, none with a secret", logs.lines().count());
}
