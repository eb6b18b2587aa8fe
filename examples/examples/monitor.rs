//! A monitor: two jobs checked every 100 ms on a durable timer, each round
//! continuing as new so the history stays one round long. One job finishes
//! on its fourth check; the other never does, and the monitor gives up at
//! its one-second deadline.
//!
//! Run: `cargo run --release -p durable-examples --example monitor`
//! (the database is `monitor.db` in the current directory, or the path
//! given as the first argument).

use std::time::Duration;

use durable::Runtime;
use durable_examples::monitor::{self, watch_job, Job, Watch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "monitor.db".to_owned());
    println!("store: {path}");
    let runtime = monitor::register(Runtime::builder().sqlite(&path))
        .start()
        .await?;
    let client = runtime.client();

    let every = Duration::from_millis(100);
    let give_up_after = Duration::from_secs(1);
    let export = Job {
        name: "export".to_owned(),
        done_on_check: Some(4),
    };
    let stuck = Job {
        name: "stuck-build".to_owned(),
        done_on_check: None,
    };
    let export = client
        .start(watch_job, Watch::new(export, every, give_up_after))
        .await?;
    let stuck = client
        .start(watch_job, Watch::new(stuck, every, give_up_after))
        .await?;

    for job in [export, stuck] {
        let outcome = job.result().await?;
        let events = client.history(job.id()).await?.len();
        println!(
            "{}: {outcome:?} (history: {events} events, the last round's)",
            job.id()
        );
    }
    runtime.shutdown().await?;
    Ok(())
}
