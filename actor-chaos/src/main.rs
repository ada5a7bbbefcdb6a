//! Run with: cargo run -p actor-chaos -- --help
//!
//! A chaos run over silo processes; see the crate docs of `actor_chaos`.
//! `chaos silo --config FILE` runs one silo (what the harness starts, the
//! same process as actor-silo's `silo` binary).

use std::path::PathBuf;
use std::time::Duration;

use actor_chaos::{ChaosConfig, Error, FaultKind, NetworkMode};

const USAGE: &str = "usage: chaos [--silos N (3, up to 5)] [--grains K (10000)] [--workers W (64)] \
[--seed S (1)] [--faults kill,pause,partition,cpu-load] [--count C (8)] \
[--database-url postgres://postgres@127.0.0.1:5432/test] [--out DIR] \
[--network auto|namespaces|loopback] [--call-timeout-ms MS] [--lease-ms MS (5000)] [--pause-ms MS] [--down-ms MS] [--silo-bin PATH] [--keep-state]";

fn parse(args: &[String]) -> Result<ChaosConfig, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Usage(e.to_string()))?;
    let out = std::env::temp_dir().join(format!("chaos-{}", std::process::id()));
    let mut c = ChaosConfig::new(vec![exe.display().to_string(), "silo".into()], out);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Error::Usage(format!("{a} needs a value; {USAGE}")))
        };
        let num = |v: String| -> Result<u64, Error> {
            v.parse()
                .map_err(|_| Error::Usage(format!("{a} takes a number, not `{v}`")))
        };
        match a.as_str() {
            "--silos" => c.silos = num(value()?)? as usize,
            "--grains" => c.grains = num(value()?)? as usize,
            "--workers" => c.workers = num(value()?)? as usize,
            "--seed" => c.seed = num(value()?)?,
            "--count" => c.fault_count = num(value()?)? as usize,
            "--faults" => c.faults = FaultKind::parse_list(&value()?)?,
            "--database-url" => c.database_url = value()?,
            "--out" => c.out_dir = PathBuf::from(value()?),
            "--call-timeout-ms" => c.call_timeout = Duration::from_millis(num(value()?)?),
            "--silo-bin" => c.silo_command = vec![value()?],
            "--lease-ms" => c.lease = Duration::from_millis(num(value()?)?.max(1)),
            "--pause-ms" => c.pause = Some(Duration::from_millis(num(value()?)?)),
            "--down-ms" => c.down = Some(Duration::from_millis(num(value()?)?)),
            "--keep-state" => c.keep_state = true,
            "--network" => {
                c.network = match value()?.as_str() {
                    "auto" => NetworkMode::Auto,
                    "namespaces" => NetworkMode::Namespaces,
                    "loopback" => NetworkMode::Loopback,
                    other => {
                        return Err(Error::Usage(format!(
                            "--network takes auto, namespaces or loopback, not `{other}`"
                        )));
                    }
                }
            }
            "--help" | "-h" => return Err(Error::Usage(USAGE.into())),
            other => return Err(Error::Usage(format!("unknown option `{other}`; {USAGE}"))),
        }
    }
    if c.faults.is_empty() {
        return Err(Error::Usage("--faults names no fault".into()));
    }
    Ok(c)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("silo") {
        let rest: Vec<String> = std::iter::once(args[0].clone())
            .chain(args[2..].iter().cloned())
            .collect();
        std::process::exit(actor_silo::run_process(rest).await);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::exit(2);
        }
    };
    println!("chaos: output in {}", config.out_dir.display());
    match actor_chaos::run(config).await {
        Ok(report) if report.passed => {}
        Ok(_) => std::process::exit(1),
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::exit(2);
        }
    }
}
