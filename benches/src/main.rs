//! Run with: cargo run --release -p benches -- [--quick]
//!
//! Runs the benchmark suite, prints the tables and writes the figures as
//! JSON to `target/benchmarks/latest.json` (or `--out PATH`), and the same
//! as Markdown tables next to it (`latest.md`, what BENCHMARKS.md shows).
//! `--only TEXT` runs only the scenarios whose name contains TEXT.
//! `--profile WORKLOAD SUBJECT COUNT` runs one workload once against one
//! subject (for callgrind or perf; see BENCHMARKS.md) and writes nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The opt-in allocator (feature `mimalloc`); without it, the counting
/// allocator of `allocation-counter` over the system's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(benches::REMOTE_PEER_FLAG) {
        return match benches::serve_remote_peer() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("remote peer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut config = benches::Config::full();
    let mut out: Option<PathBuf> = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => config = benches::Config::quick(),
            "--out" => out = args.next().map(PathBuf::from),
            "--only" => only = args.next(),
            "--profile" => {
                let (Some(w), Some(subject), Some(count)) = (args.next(), args.next(), args.next())
                else {
                    eprintln!("usage: --profile WORKLOAD SUBJECT COUNT");
                    return ExitCode::FAILURE;
                };
                let Ok(count) = count.parse() else {
                    eprintln!("COUNT must be a number, not `{count}`");
                    return ExitCode::FAILURE;
                };
                return match benches::profile(&w, &subject, count) {
                    Ok((value, cpu)) => {
                        println!("{w} {subject} {count}: {value:.1} (cpu ns/op: {cpu:?})");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                };
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo run --release -p benches -- [--quick] [--only TEXT] [--out PATH]\n       \
                     cargo run --release -p benches -- --profile WORKLOAD SUBJECT COUNT"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}` (try --help)");
                return ExitCode::FAILURE;
            }
        }
    }
    config.only = only;
    config.peer_exe = std::env::current_exe().ok();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; figures mean little (use --release)");
    }
    let command = format!(
        "cargo run --release -p benches --{}",
        std::env::args()
            .skip(1)
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    let report = benches::run(&config, &command);
    println!("{}", report.to_table());
    println!(
        "{} mode took {:.1} s on {} CPUs ({})",
        report.mode, report.duration_s, report.machine.nproc, report.machine.cpu_model
    );
    // The workspace's target directory, whatever CARGO_TARGET_DIR says, so
    // the figures are always found in the same place.
    let path = out.unwrap_or_else(|| {
        let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = benches.parent().unwrap_or(benches);
        root.join("target/benchmarks/latest.json")
    });
    if let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let markdown = path.with_extension("md");
    match std::fs::write(&path, report.to_json())
        .and_then(|()| std::fs::write(&markdown, report.to_markdown()))
    {
        Ok(()) => {
            println!("wrote {} and {}", path.display(), markdown.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
