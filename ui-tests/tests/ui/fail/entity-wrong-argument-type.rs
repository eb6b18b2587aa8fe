use durable::{entity, orchestrator, Context};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[entity]
impl Counter {
    fn add(&mut self, by: u64) {
        self.n += by;
    }
}

#[orchestrator]
async fn adds(ctx: Context) {
    ctx.entity::<Counter>("k").signal().add("one");
}

fn main() {}
