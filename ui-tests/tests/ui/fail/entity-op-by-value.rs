use durable::entity;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[entity]
impl Counter {
    fn take(self) -> u64 {
        self.n
    }
}

fn main() {}
