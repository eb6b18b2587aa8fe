//! `tokio::select!` with `biased;` polls its branches in order, so replay
//! takes the same one; `durable::select` is the durable race.

use std::time::Duration;

use durable::{activity, orchestrator, Context, Either};

#[activity]
async fn charge(amount: u64) -> u64 {
    amount
}

#[orchestrator]
async fn checkout(ctx: Context, amount: u64) -> Option<u64> {
    let first = tokio::select! {
        biased;
        charged = ctx.call(charge, amount) => charged.ok(),
        () = ctx.sleep(Duration::from_secs(30)) => None,
    };
    let second =
        match durable::select(ctx.call(charge, amount), ctx.sleep(Duration::from_secs(30))).await {
            Either::Left(charged) => charged.ok(),
            Either::Right(()) => None,
        };
    first.zip(second).map(|(a, b)| a + b)
}

fn main() {
    let _ = checkout;
}
