//! Fan-out/fan-in: the words of five documents counted by five activity
//! calls running at once, then added up.
//!
//! Run: `cargo run --release -p durable-examples --example fan_out`
//! (the database is `fan_out.db` in the current directory, or the path
//! given as the first argument).

use durable::Runtime;
use durable_examples::fan_out::{self, word_count, Document};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fan_out.db".to_owned());
    println!("store: {path}");
    let runtime = fan_out::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;

    let documents = [
        ("intro", "Orchestrations are replayed from their history."),
        (
            "timers",
            "A durable timer survives a restart and never fires early.",
        ),
        (
            "events",
            "Events raised before anyone waits are kept in order.",
        ),
        (
            "children",
            "A child orchestration is an instance of its own.",
        ),
        ("outro", "That is all."),
    ]
    .map(|(name, text)| Document {
        name: name.to_owned(),
        text: text.to_owned(),
    });
    let count = runtime
        .client()
        .start(word_count, documents.to_vec())
        .await?;
    let count = count.result().await??;
    for (name, words) in &count.per_document {
        println!("{name:>10}: {words:>3} words");
    }
    println!("{:>10}: {:>3} words", "total", count.total);
    runtime.shutdown().await?;
    Ok(())
}
