use std::time::Duration;

use durable::{activity, orchestrator, Context};

#[activity]
async fn charge(amount: u64) -> u64 {
    amount
}

#[orchestrator]
async fn checkout(ctx: Context, amount: u64) -> Option<u64> {
    let charged = tokio::time::timeout(Duration::from_secs(30), ctx.call(charge, amount)).await;
    charged.ok()?.ok()
}

fn main() {
    let _ = checkout;
}
