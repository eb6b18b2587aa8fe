use durable::entity;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Names {
    all: Vec<String>,
}

#[entity]
impl Names {
    fn add(&mut self, name: &str) {
        self.all.push(name.to_owned());
    }
}

fn main() {}
