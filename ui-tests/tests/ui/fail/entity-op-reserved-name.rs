use durable::entity;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Bell {
    rung: u64,
}

#[entity]
impl Bell {
    fn signal(&mut self) {
        self.rung += 1;
    }
}

fn main() {}
