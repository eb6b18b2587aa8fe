use std::time::Instant;

use durable::{orchestrator, Context};

#[orchestrator]
async fn report(_ctx: Context) -> String {
    format!("started at {:?}", Instant::now())
}

fn main() {
    let _ = report;
}
