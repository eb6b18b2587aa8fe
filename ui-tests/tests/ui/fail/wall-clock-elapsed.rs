use std::time::SystemTime;

use durable::{orchestrator, Context};

#[orchestrator]
async fn account_age(_ctx: Context, created: SystemTime) -> u64 {
    created.elapsed().map_or(0, |age| age.as_secs())
}

fn main() {
    let _ = account_age;
}
