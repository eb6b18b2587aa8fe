use std::time::Duration;

use durable::{orchestrator, Context};

#[orchestrator]
async fn wait(_ctx: Context) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

fn main() {
    let _ = wait;
}
