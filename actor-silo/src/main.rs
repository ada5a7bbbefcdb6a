//! Run with: cargo run -p actor-silo --bin silo -- --config silo.toml
//!
//! One silo of a cluster; see the crate docs of `actor_silo` for the
//! configuration, the environment and the endpoints.

#[tokio::main]
async fn main() {
    std::process::exit(actor_silo::run_process(std::env::args().collect()).await);
}
