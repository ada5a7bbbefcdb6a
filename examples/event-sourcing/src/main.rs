//! Run with: cargo run -p example-event-sourcing
//!
//! Plays the account scenario on a SQLite file in the system temp
//! directory (or `--sqlite PATH`), or on the project's PostgreSQL
//! (`--postgres [URL]`) or Redis (`--redis [URL]`): commands raise events, a snapshot is stored every
//! few events, the grain is deactivated and rebuilt from the snapshot plus
//! the events after it, and a restarted silo appends more.

use example_event_sourcing::{Backend, DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, play};

fn parse(args: &[String]) -> Result<(Backend, String), String> {
    let mut backend = Backend::default_sqlite();
    let mut key = format!("demo-{}", std::process::id());
    let mut i = 0;
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
                backend = Backend::Postgres {
                    url: url.unwrap_or_else(|| DEFAULT_POSTGRES_URL.into()),
                    table_prefix: actor_persistence::DEFAULT_TABLE_PREFIX.into(),
                };
            }
            "--redis" => {
                let url = value_at(i + 1);
                i += usize::from(url.is_some());
                backend = Backend::Redis {
                    url: url.unwrap_or_else(|| DEFAULT_REDIS_URL.into()),
                    key_prefix: actor_persistence::DEFAULT_KEY_PREFIX.into(),
                };
            }
            "--account" => {
                key = value_at(i + 1).ok_or("--account needs an account key")?;
                i += 1;
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: example-event-sourcing [--sqlite PATH | --postgres [URL] | --redis [URL]] [--account KEY]"
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
    println!("Event store: {backend:?}");
    match play(&backend, &key, |line| println!("  {line}")).await {
        Ok(o) if o.rebuilt.account == o.live.account => {
            println!(
                "The state rebuilt after deactivation equals the live state ({:?}).",
                o.live.account
            );
        }
        Ok(o) => {
            eprintln!(
                "the rebuilt state {:?} differs from the live state {:?}",
                o.rebuilt.account, o.live.account
            );
            std::process::exit(1);
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
        assert!(matches!(
            parse(&args(&[])).unwrap().0,
            Backend::Sqlite { .. }
        ));
        let (b, key) = parse(&args(&["--postgres", "--account", "bob"])).unwrap();
        assert!(matches!(b, Backend::Postgres { url, .. } if url == DEFAULT_POSTGRES_URL));
        assert_eq!(key, "bob");
        let (b, _) = parse(&args(&["--redis"])).unwrap();
        assert!(matches!(b, Backend::Redis { url, .. } if url == DEFAULT_REDIS_URL));
        assert!(parse(&args(&["--sqlite"])).is_err());
        assert!(parse(&args(&["-x"])).is_err());
    }
}
