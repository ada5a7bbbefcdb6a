//! Run with: cargo run -p example-pubsub
//!
//! Publishes typed `OrderSubmitted` messages on the `orders` namespace
//! (streams "eu" and "us"); the implicit consumers `Invoicing` and
//! `Shipping` of each region get every order, and the `Auditor`, subscribed
//! explicitly to "eu", gets the orders published while it watched.

#[tokio::main]
async fn main() {
    let silo = example_pubsub::silo().await.expect("silo starts");
    let out = example_pubsub::play(&silo).await.expect("scenario runs");
    println!("{out:#?}");
    silo.shutdown().await;
    let ok = out.eu_invoices == (5, 1500)
        && out.eu_shipping == [1, 2, 3, 4, 5]
        && out.us_shipping == [10, 11]
        && out.audited.len() == 3;
    if !ok {
        eprintln!("a consumer missed orders");
        std::process::exit(1);
    }
}
