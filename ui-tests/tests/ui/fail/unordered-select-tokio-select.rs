use std::time::Duration;

use durable::{activity, orchestrator, Context};

#[activity]
async fn charge(amount: u64) -> u64 {
    amount
}

#[orchestrator]
async fn checkout(ctx: Context, amount: u64) -> Option<u64> {
    tokio::select! {
        charged = ctx.call(charge, amount) => charged.ok(),
        () = ctx.sleep(Duration::from_secs(30)) => None,
    }
}

fn main() {
    let _ = checkout;
}
