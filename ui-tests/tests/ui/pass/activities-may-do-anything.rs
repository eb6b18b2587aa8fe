//! The same calls inside an `#[activity]` are fine: activities do the real
//! work, and their results are recorded.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use durable::{activity, orchestrator, Context};

#[activity]
async fn look_around() -> String {
    let started = Instant::now();
    let home = std::env::var("HOME").unwrap_or_default();
    let config = std::fs::read_to_string("config.toml").unwrap_or_default();
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let worker = std::thread::spawn(|| 1);
    let mut index = HashMap::new();
    index.insert(home, config.len());
    let _ = worker.join();
    format!(
        "{:?} {:?} {}",
        SystemTime::now(),
        started.elapsed(),
        index.len()
    )
}

#[orchestrator]
async fn caller(ctx: Context) -> String {
    ctx.call(look_around, ()).await.unwrap_or_default()
}

fn main() {
    let _ = caller;
}
