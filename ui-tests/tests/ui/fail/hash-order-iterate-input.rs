use std::collections::HashMap;

use durable::{activity, orchestrator, Context};

#[activity]
async fn charge(amount: u64) -> u64 {
    amount
}

#[orchestrator]
async fn charge_all(ctx: Context, prices: HashMap<String, u64>) -> u64 {
    let mut total = 0;
    for price in prices.values() {
        total += ctx.call(charge, *price).await.unwrap_or_default();
    }
    total
}

fn main() {
    let _ = charge_all;
}
