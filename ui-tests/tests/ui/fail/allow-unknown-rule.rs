use std::time::SystemTime;

use durable::{orchestrator, Context};

#[orchestrator]
async fn stamp(_ctx: Context) -> SystemTime {
    #[durable::allow(clock, reason = "only logged")]
    let now = SystemTime::now();
    now
}

fn main() {
    let _ = stamp;
}
