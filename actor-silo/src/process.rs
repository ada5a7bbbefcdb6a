//! The silo process: arguments, configuration, READY, signals, exit
//! status. The `silo` binary is this and nothing else, so that other
//! binaries (the chaos harness) can run the same process.

use std::path::PathBuf;
use std::time::Duration;

use crate::{EXIT_CONFIG, EXIT_DECLARED_DEAD, Error, READY, RunningSilo, SiloConfig};
use actor_cluster::ShutdownSignals;

fn config_path(args: &[String]) -> Result<Option<PathBuf>, Error> {
    let mut path = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => match it.next() {
                Some(p) => path = Some(PathBuf::from(p)),
                None => return Err(Error::Usage("--config needs a file".into())),
            },
            other => match other.strip_prefix("--config=") {
                Some(p) => path = Some(PathBuf::from(p)),
                None => return Err(Error::Usage(format!("unknown argument `{other}`"))),
            },
        }
    }
    Ok(path)
}

/// Runs the silo process as `silo` does: reads `--config FILE` from
/// `args` (the first is the program name) and `SILO_*` from the
/// environment, serves until SIGTERM or SIGINT, and returns the exit
/// status (0 after a graceful leave, [`EXIT_DECLARED_DEAD`],
/// [`EXIT_CONFIG`]). Logs go to stderr (`RUST_LOG`, default `warn`).
pub async fn run_process(args: Vec<String>) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("silo: {e}");
            EXIT_CONFIG
        }
    }
}

async fn run(args: Vec<String>) -> Result<i32, Error> {
    // Before READY: a stop sent right after it must find the handlers.
    let mut signals = ShutdownSignals::new().map_err(|e| Error::Usage(e.to_string()))?;
    let path = config_path(&args)?;
    let config = SiloConfig::load(path.as_deref(), std::env::vars())?;
    let silo = RunningSilo::start(&config).await?;
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    println!(
        "{READY} {} {} {} {} {}",
        config.name,
        std::process::id(),
        silo.member().address().endpoint,
        dash(silo.health_addr().map(|a| a.to_string())),
        dash(silo.dashboard_url()),
    );
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            signal = signals.recv() => {
                eprintln!("{}: {signal}: leaving the cluster", config.name);
                silo.leave().await?;
                eprintln!("{} left the cluster", config.name);
                return Ok(0);
            }
            _ = check.tick() => {
                if !silo.member().is_serving() {
                    eprintln!(
                        "{}: declared dead by the cluster; exiting for a restart as a new generation",
                        config.name
                    );
                    return Ok(EXIT_DECLARED_DEAD);
                }
            }
        }
    }
}
