use std::time::Duration;

use durable::{orchestrator, Context};

#[orchestrator]
async fn wait(_ctx: Context) {
    std::thread::sleep(Duration::from_secs(60));
}

fn main() {
    let _ = wait;
}
