use std::time::{Duration, SystemTime};

use durable::{orchestrator, Context};

/// Stands in for the `rand` crate, so the checker's are the only errors.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[orchestrator]
async fn everything_wrong(_ctx: Context) -> u64 {
    let started = SystemTime::now();
    let dice: u64 = rand::random();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let home = std::env::var("HOME").unwrap_or_default();
    let config = std::fs::read("config.toml").unwrap_or_default();
    let elapsed = started.elapsed().map_or(0, |age| age.as_secs());
    dice + elapsed + home.len() as u64 + config.len() as u64
}

fn main() {
    let _ = everything_wrong;
}
