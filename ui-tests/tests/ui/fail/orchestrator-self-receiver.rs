use durable::{orchestrator, Context};

struct Shop;

impl Shop {
    #[orchestrator]
    async fn checkout(&self, _ctx: Context, amount: u64) -> u64 {
        amount
    }
}

fn main() {
    let _ = Shop;
}
