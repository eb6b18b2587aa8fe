//! The main job: two orders through the checkout workflow on a SQLite file.
//!
//! One order is approved by a (simulated) manager and ships; the other is
//! declined by the payment provider and its stock is released. Each step is
//! printed as it happens, then the first order's history.
//!
//! Run: `cargo run --release -p durable-examples --example order`
//! (the database is `orders.db` in the current directory, or the path given
//! as the first argument).

use std::time::Duration;

use durable::{history::Event, Runtime};
use durable_examples::order::{self, checkout, Order};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "orders.db".to_owned());
    println!("store: {path} (SQLite, WAL, synchronous=FULL)");
    let runtime = order::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();

    let approved = Order {
        customer: "ada".to_owned(),
        sku: "widget".to_owned(),
        quantity: 3,
        amount_cents: 4_500,
    };
    let too_big = Order {
        customer: "bob".to_owned(),
        sku: "yacht".to_owned(),
        quantity: 1,
        amount_cents: 90_000_000,
    };
    let first = client.start(checkout, (approved, 10_000)).await?;
    let second = client.start(checkout, (too_big, 10_000)).await?;

    // A manager approves the first order a little later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("manager: approving {}", first.id());
    client.raise_event(first.id(), "approval", true).await?;

    println!("result of {}: {:?}", first.id(), first.result().await?);
    println!("result of {}: {:?}", second.id(), second.result().await?);

    println!("history of {}:", first.id());
    for rec in client.history(first.id()).await? {
        let what = match &rec.event {
            Event::Started { name, input, .. } => format!("started {name} with {}", input.json()),
            Event::ActivityScheduled { seq, name, .. } => format!("#{seq} call {name}"),
            Event::ActivityCompleted { seq, output } => {
                format!("#{seq} returned {}", output.json())
            }
            Event::ActivityFailed { seq, failure } => format!("#{seq} failed: {failure:?}"),
            Event::TimerCreated { seq, .. } => format!("#{seq} timer set"),
            Event::TimerFired { seq } => format!("#{seq} timer fired"),
            Event::TimerCancelled { seq } => format!("#{seq} timer cancelled (it lost the race)"),
            Event::EventRaised { name, data } => format!("event {name} = {}", data.json()),
            Event::Completed { output, .. } => format!("completed: {}", output.json()),
            other => format!("{other:?}"),
        };
        println!("  [{:>2}] turn {:>2}  {what}", rec.index, rec.turn);
    }
    runtime.shutdown().await?;
    Ok(())
}
