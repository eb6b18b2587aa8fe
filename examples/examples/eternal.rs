//! An aggregator: an eternal orchestration summing `add` events, continuing
//! as new every few events, its running total read by a client as custom
//! status, and returned when a `close` event comes.
//!
//! Run: `cargo run --release -p durable-examples --example eternal`
//! (the database is `eternal.db` in the current directory, or the path
//! given as the first argument).

use std::time::Duration;

use durable::Runtime;
use durable_examples::eternal::{self, aggregate, Tally, ADD, CLOSE};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "eternal.db".to_owned());
    println!("store: {path}");
    let runtime = eternal::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();

    let till = client.start(aggregate, Tally::default()).await?;
    for (count, amount) in (1..).zip([120_i64, 45, -20, 300, 15, 80, 5, 60]) {
        client.raise_event(till.id(), ADD, amount).await?;
        // Read the running total once the orchestrator has taken the event.
        let tally = loop {
            let status = client.status(till.id()).await?;
            match status.custom_status_as::<Tally>()? {
                Some(tally) if tally.count == count => break tally,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        println!("added {amount:>4}: running total {:>4}", tally.total);
    }
    client.raise_event(till.id(), CLOSE, ()).await?;
    println!("closed: {:?}", till.result().await?);
    runtime.shutdown().await?;
    Ok(())
}
