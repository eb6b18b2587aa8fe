//! The context's deterministic stand-ins: time, timers, randomness, ids.

use std::time::Duration;

use durable::{orchestrator, Context};

#[orchestrator]
async fn stand_ins(ctx: Context) -> String {
    let started = ctx.now();
    ctx.sleep(Duration::from_secs(1)).await;
    ctx.sleep_until(started + Duration::from_secs(2)).await;
    let waited = ctx.now().duration_since(started).unwrap_or_default();
    let dice = ctx.random() % 6;
    let id = ctx.uuid();
    format!("{id}: {dice} after {waited:?}")
}

fn main() {
    let _ = stand_ins;
}
