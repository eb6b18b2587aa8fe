use durable::{orchestrator, Context};

#[orchestrator(version = 2)]
async fn checkout(_ctx: Context, order: u64) -> u64 {
    order
}

fn main() {
    let _ = checkout;
}
