use durable::entity;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[entity]
impl Counter {
    async fn add(&mut self, by: u64) {
        self.n += by;
    }
}

fn main() {}
