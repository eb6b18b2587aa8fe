use std::time::SystemTime;

use durable::{orchestrator, Context};

#[orchestrator]
async fn stamp(_ctx: Context) -> SystemTime {
    SystemTime::now()
}

fn main() {
    let _ = stamp;
}
