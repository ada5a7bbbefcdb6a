//! Run with: cargo run -p example-persistence
//!
//! Plays the counter scenario on a SQLite file in the system temp
//! directory (or `--sqlite PATH`), or on the project's PostgreSQL
//! (`--postgres [URL]`) or Redis (`--redis [URL]`): increments, deactivates
//! every grain, increments again, restarts the silo on the same storage,
//! increments again, and prints the stored record. Run it twice: the count
//! goes on from the previous run.

use example_persistence::{
    Backend, DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, FIRST_INCREMENTS, Outcome, play,
};

fn parse(args: &[String]) -> Result<(Backend, String), String> {
    let mut backend = Backend::default_sqlite();
    let mut key = "course".to_owned();
    let mut i = 0;
    // The value after a flag, unless it is the next flag.
    let value_at = |i: usize| args.get(i).filter(|a| !a.starts_with("--")).cloned();
    while i < args.len() {
        match args[i].as_str() {
            "--sqlite" => {
                let path = value_at(i + 1).ok_or("--sqlite needs a file path")?;
                backend = Backend::Sqlite { path: path.into() };
                i += 1;
            }
            "--postgres" => {
                let url = value_at(i + 1);
                i += usize::from(url.is_some());
                backend = Backend::postgres(url.unwrap_or_else(|| DEFAULT_POSTGRES_URL.into()));
            }
            "--redis" => {
                let url = value_at(i + 1);
                i += usize::from(url.is_some());
                backend = Backend::redis(url.unwrap_or_else(|| DEFAULT_REDIS_URL.into()));
            }
            "--key" => {
                key = value_at(i + 1).ok_or("--key needs a counter key")?;
                i += 1;
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: example-persistence [--sqlite PATH | --postgres [URL] | --redis [URL]] [--key KEY]"
                ));
            }
        }
        i += 1;
    }
    Ok((backend, key))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (backend, key) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("Storage: {backend:?}");
    match play(&backend, &key, |line| println!("  {line}")).await {
        Ok(o) => {
            let Outcome {
                at_start,
                after_deactivation,
                after_restart,
                ..
            } = o;
            let ok = after_deactivation == at_start + FIRST_INCREMENTS + 1
                && after_restart == after_deactivation + 1;
            println!(
                "The counter went {at_start} -> {after_restart} across a deactivation and a silo restart: {}",
                if ok {
                    "nothing was lost"
                } else {
                    "SOMETHING WAS LOST"
                }
            );
            if !ok {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("the scenario failed: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_pick_the_backend() {
        let (b, key) = parse(&args(&[])).unwrap();
        assert!(matches!(b, Backend::Sqlite { .. }));
        assert_eq!(key, "course");
        let (b, _) = parse(&args(&["--postgres"])).unwrap();
        assert!(matches!(b, Backend::Postgres { url, .. } if url == DEFAULT_POSTGRES_URL));
        let (b, key) = parse(&args(&["--redis", "redis://h:1", "--key", "x"])).unwrap();
        assert!(matches!(b, Backend::Redis { url, .. } if url == "redis://h:1"));
        assert_eq!(key, "x");
        let (b, _) = parse(&args(&["--sqlite", "/tmp/a.db"])).unwrap();
        assert!(matches!(b, Backend::Sqlite { path } if path.ends_with("a.db")));
        assert!(parse(&args(&["--sqlite"])).is_err());
        assert!(parse(&args(&["--nope"])).is_err());
    }
}
