//! Run with: cargo run -p actor-silo --bin silo -- --config silo.toml
//!
//! One silo of a cluster; see the crate docs of `actor_silo` for the
//! configuration, the environment and the endpoints.
//!
//! Built with the `mimalloc` feature, the process allocates through
//! mimalloc instead of the system's malloc.

/// The opt-in allocator (feature `mimalloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    std::process::exit(actor_silo::run_process(std::env::args().collect()).await);
}
