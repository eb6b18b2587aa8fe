//! `ctx.side_effect(|| ..)` runs the closure once and records its value in
//! history; replay reuses the value, so the closure may do anything.

use std::time::SystemTime;

use durable::{orchestrator, Context};

#[orchestrator]
async fn recorded(ctx: Context) -> (SystemTime, String) {
    let wall_clock = ctx.side_effect(SystemTime::now);
    let home = ctx.side_effect(|| std::env::var("HOME").unwrap_or_default());
    (wall_clock, home)
}

fn main() {
    let _ = recorded;
}
