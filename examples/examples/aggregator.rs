//! The aggregator pattern: a counter entity fed by 1,000 concurrent
//! signals from 20 senders, applied exactly once each, then read.
//!
//! Run: `cargo run --release -p durable-examples --example aggregator`
//! (the database is `aggregator.db` in the current directory, or the path
//! given as the first argument).

use durable::Runtime;
use durable_examples::aggregator::{self, Readings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "aggregator.db".to_owned());
    println!("store: {path}");
    let runtime = aggregator::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();
    let before = client
        .entity::<Readings>("thermometers")
        .state()
        .await?
        .unwrap_or_default();

    // 20 senders, 50 readings each, all at once.
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..20_u64 {
        let client = client.clone();
        senders.spawn(async move {
            for i in 0..50_u64 {
                let value = (sender * 50 + i) % 97;
                client
                    .entity::<Readings>("thermometers")
                    .signal()
                    .add(value)
                    .await?;
            }
            Ok::<_, durable::Error>(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    println!("1,000 readings acknowledged (each durable once acknowledged)");

    // Applied soon after: wait until the counter holds them all.
    let readings = loop {
        let now = client
            .entity::<Readings>("thermometers")
            .state()
            .await?
            .unwrap_or_default();
        if now.count == before.count + 1_000 {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    println!(
        "thermometers: {} readings, total {}, max {}, mean {}",
        readings.count,
        readings.total,
        readings.max,
        readings.total / readings.count.max(1)
    );
    runtime.shutdown().await?;
    Ok(())
}
