use durable::{orchestrator, Context};

struct Order {
    amount: u64,
}

#[orchestrator]
async fn checkout(_ctx: Context, order: Order) -> u64 {
    order.amount
}

fn main() {
    let _ = checkout;
}
